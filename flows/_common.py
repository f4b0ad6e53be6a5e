"""Helpers shared by the flows: config resolution and task runners."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from lorasoup_core.experiment import ExperimentConfig, load_experiment
from lorasoup_core.pool import PoolFile, load_pool_file

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
