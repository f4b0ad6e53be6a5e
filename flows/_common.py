"""Helpers shared by the flows: config resolution and task runners."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from lorasoup_core.experiment import ExperimentConfig, load_experiment, load_pool_file
from lorasoup_core.pool import PoolFile

REPO_ROOT = Path(__file__).resolve().parents[1]


def _path(config: str) -> Path:
    """A YAML path relative to the working directory, else to the repository."""
    path = Path(config)
    if not path.is_file() and (REPO_ROOT / path).is_file():
        path = REPO_ROOT / path
    return path


def resolve_config(config: str | dict[str, Any] | ExperimentConfig) -> ExperimentConfig:
    """An experiment config given as a YAML path or a mapping."""
    if isinstance(config, ExperimentConfig):
        return config
    if isinstance(config, dict):
        return ExperimentConfig.model_validate(config)
    return load_experiment(_path(config))


def resolve_pool_file(config: str | dict[str, Any] | PoolFile) -> PoolFile:
    """A pool file or an experiment config (its pool, trained under its experiment) as a PoolFile."""
    if isinstance(config, PoolFile):  # an ExperimentConfig is one too
        return config.pool_file()
    if isinstance(config, dict):
        return resolve_pool_file(ExperimentConfig.model_validate(config) if "targets" in config
                                 else PoolFile.model_validate(config))
    return load_pool_file(_path(config))


def chunks(items: list[Any], size: int) -> list[list[Any]]:
    return [items[i: i + size] for i in range(0, len(items), size)]


def task_runner(dask_address: str | None = None, max_workers: int | None = None):
    """Threads by default; a Dask cluster (the `dask` extra) when given its address."""
    if dask_address:
        from prefect_dask import DaskTaskRunner

        return DaskTaskRunner(address=dask_address)
    from prefect.task_runners import ThreadPoolTaskRunner

    return ThreadPoolTaskRunner(max_workers=max_workers)


def prefect_links() -> dict[str, str]:
    """Tags that lead from an MLflow run to the Prefect flow run that logged it."""
    from prefect.runtime import flow_run

    links = {"prefect.flow_run_id": flow_run.id or "", "prefect.flow_run_name": flow_run.name or "",
             "prefect.flow_run_url": flow_run.ui_url or ""}
    return {k: v for k, v in links.items() if v}


def link_mlflow_run(run_id: str | None, tracking_uri: str | None, key: str = "mlflow-run") -> None:
    """A link (or, for a local database, the run id and URI) from the Prefect flow run to its MLflow run."""
    from prefect.artifacts import create_link_artifact, create_markdown_artifact

    if not run_id:
        return
    uri = tracking_uri or ""
    if uri.startswith(("http://", "https://")):
        from lorasoup_core import tracking

        exp = tracking.client(tracking_uri).get_run(run_id).info.experiment_id
        create_link_artifact(f"{uri.rstrip('/')}/#/experiments/{exp}/runs/{run_id}", key=key,
                             link_text=f"MLflow run {run_id}", description="The MLflow run of this flow run")
    else:
        create_markdown_artifact(f"MLflow run `{run_id}` in `{uri or 'MLFLOW_TRACKING_URI'}`", key=key,
                                 description="The MLflow run of this flow run")
