"""Which registered experiments depend on adapters that just changed (what the nightly retraining re-runs)."""

from __future__ import annotations

from pathlib import Path

from lorasoup_core import tracking


def dependent_experiments(base_model: str, changed_tasks: list[str], tracking_uri: str | None = None) -> list[str]:
    """Config paths of past experiment runs on this base model whose pool includes a changed task,
    most recent first, each once (runs are found by the tags `report.start_experiment_run` sets)."""
    if not changed_tasks:
        return []
    c = tracking.client(tracking_uri)
    experiments = [e.experiment_id for e in c.search_experiments()]
    if not experiments:
        return []
    runs = c.search_runs(experiments, filter_string=f"tags.`lorasoup.kind` = 'experiment' and "
                         f"tags.`lorasoup.base_model` = '{base_model}'", order_by=["attributes.start_time DESC"],
                         max_results=500)
    paths: list[str] = []
    for run in runs:
        pool = set(run.data.tags.get("lorasoup.pool_tasks", "").split(","))
        path = run.data.tags.get("lorasoup.config_path")
        if path and path not in paths and pool & set(changed_tasks) and Path(path).is_file():
            paths.append(path)
    return paths
