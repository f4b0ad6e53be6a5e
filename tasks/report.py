"""Prefect tasks for tracking and reporting: the parent MLflow run, the results table and plots."""

from __future__ import annotations

from typing import Any

from prefect import task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NONE

from lorasoup_core.experiment import report_steps
from lorasoup_core.experiment.config import ExperimentConfig
from tasks._policies import IO_RETRIES


@task(cache_policy=NONE, **IO_RETRIES)
def start_experiment_run(cfg: ExperimentConfig, config_path: str | None) -> str:
    return report_steps.start_experiment(cfg, config_path)


@task(cache_policy=NONE, **IO_RETRIES)
def tag_data_fingerprints(cfg: ExperimentConfig, run_id: str, fingerprints: dict[str, str]) -> None:
    report_steps.tag_data(cfg, run_id, fingerprints)


@task(cache_policy=NONE, **IO_RETRIES)
def publish_report(cfg: ExperimentConfig, run_id: str, rows: list[dict[str, Any]], weights: dict[str, dict[str, float]],
                   traces: dict[str, list[float]], extra: dict[str, Any]) -> dict[str, str]:
    """MLflow table + plots, the report in the artifact store, and the same table as a Prefect artifact."""
    out = report_steps.report(cfg, run_id, rows, weights, traces, extra)
    key = "".join(c if c.isalnum() else "-" for c in cfg.name.lower())
    create_table_artifact(key=f"{key}-results", table=rows, description=f"{cfg.name}: score per task and method")
    create_markdown_artifact(key=f"{key}-report", markdown=f"# {cfg.name}\n\n{out['table']}\n\nreport: {out['report_uri']}",
                             description=f"{cfg.name}: results table with 95% intervals")
    return out


@task(cache_policy=NONE, **IO_RETRIES)
def finish_experiment_run(cfg: ExperimentConfig, run_id: str, failed: bool = False) -> None:
    report_steps.finish(cfg, run_id, failed)
