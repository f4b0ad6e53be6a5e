"""Prefect tasks for tracking and reporting: the parent MLflow run, the results table and plots."""

from __future__ import annotations

from prefect import task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NONE

from lorasoup_core.experiment import ExperimentConfig, TargetResult, report
from lorasoup_core.pool import PoolResult
from tasks._policies import IO_RETRIES


@task(cache_policy=NONE, **IO_RETRIES)
def start_experiment_run(cfg: ExperimentConfig, config_path: str | None) -> str:
    return report.start_experiment_run(cfg, config_path)


@task(cache_policy=NONE, **IO_RETRIES)
def tag_data_fingerprints(cfg: ExperimentConfig, run_id: str, pool: PoolResult) -> None:
    report.tag_data_fingerprints(cfg, run_id, pool)


@task(cache_policy=NONE, **IO_RETRIES)
def publish_report(cfg: ExperimentConfig, run_id: str, results: list[TargetResult],
                   pool: PoolResult) -> report.PublishedReport:
    """MLflow table + plots, the report in the artifact store, and the same report as a Prefect artifact."""
    published = report.publish_report(cfg, run_id, results, pool)
    table, artifact = published.text, published.artifact
    key = "".join(c if c.isalnum() else "-" for c in cfg.name.lower())
    create_table_artifact(key=f"{key}-results", table=[r.to_dict() for res in results for r in res.rows],
                          description=f"{cfg.name}: score per task and method")
    create_markdown_artifact(key=f"{key}-report", markdown=f"# {cfg.name}\n\n{table}\n\nreport: {artifact.uri}",
                             description=f"{cfg.name}: results table with 95% intervals")
    return published


@task(cache_policy=NONE, **IO_RETRIES)
def finish_experiment_run(cfg: ExperimentConfig, run_id: str, failed: bool = False) -> None:
    report.finish_experiment_run(cfg, run_id, failed)
