"""Report steps: the experiment's parent MLflow run, the results table, plots and the published report."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

from lorasoup_core import tracking
from lorasoup_core.experiment.config import ExperimentConfig
from lorasoup_core.experiment.steps import fingerprint, task_name
from lorasoup_core.reporting import (
    ResultRow,
    markdown_table,
    plot_objective_traces,
    plot_scores,
    plot_weights,
)
from lorasoup_core.storage import open_store


def start_experiment(cfg: ExperimentConfig, config_path: str | None) -> str:
    """The parent run: params are the fully resolved config; tags name the pool and the config file."""
    tags = {
        "lorasoup.kind": "experiment",
        "lorasoup.config_fingerprint": fingerprint(cfg),
        "lorasoup.pool_tasks": ",".join(task_name(s) for s in cfg.pool.tasks),
        "lorasoup.base_model": cfg.model.spec,
    }
    if config_path:
        tags["lorasoup.config_path"] = str(Path(config_path).resolve())
    run_id = tracking.start_run(cfg.experiment_name, cfg.name, tags=tags, tracking_uri=cfg.tracking.tracking_uri)
    tracking.log_params(run_id, cfg.model_dump(mode="json"), cfg.tracking.tracking_uri)
    return run_id


def tag_data(cfg: ExperimentConfig, run_id: str, fingerprints: dict[str, str]) -> None:
    tracking.set_tags(run_id, {f"data_fingerprint.{k}": v for k, v in fingerprints.items()}, cfg.tracking.tracking_uri)


def report(cfg: ExperimentConfig, run_id: str, rows: list[dict[str, Any]], weights: dict[str, dict[str, float]],
           traces: dict[str, list[float]], extra: dict[str, Any]) -> dict[str, str]:
    """Log the table and plots to MLflow and publish the same report to the artifact store."""
    import matplotlib.pyplot as plt

    result_rows = [ResultRow(**r) for r in rows]
    table = tracking.log_results(run_id, result_rows, weights=weights, traces=traces,
                                 tracking_uri=cfg.tracking.tracking_uri)
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        (out / "results.md").write_text(table + "\n")
        (out / "results.json").write_text(json.dumps({"rows": rows, "weights": weights, "traces": traces, **extra},
                                                     indent=2, default=str))
        figs = {"scores.png": plot_scores(result_rows)}
        if weights:
            figs["weights.png"] = plot_weights(weights)
        if traces:
            figs["objective_traces.png"] = plot_objective_traces(traces)
        for name, fig in figs.items():
            fig.savefig(out / name, dpi=120, bbox_inches="tight")
            plt.close(fig)
        artifact = open_store(cfg.storage.uri).publish(out, f"reports/{cfg.name}/{run_id}",
                                                       metadata={"run_id": run_id, "experiment": cfg.experiment_name})
    return {"table": table, "report_uri": artifact.uri}


def finish(cfg: ExperimentConfig, run_id: str, failed: bool = False) -> None:
    tracking.end_run(run_id, "FAILED" if failed else "FINISHED", cfg.tracking.tracking_uri)


__all__ = ["finish", "markdown_table", "report", "start_experiment", "tag_data"]
