"""The pool config: a base model, its upstream tasks and how each task's LoRA is trained."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import Field, ValidationError

from lorasoup_core.adapters import TrainingConfig
from lorasoup_core.config import (
    ConfigError,
    ModelConfig,
    StorageConfig,
    StrictModel,
    TrackingConfig,
    load_config,
    read_yaml,
)
from lorasoup_core.data import TaskSpec

DEFAULT_EXPERIMENT = "lorasoup-pool"


class PoolConfig(StrictModel):
    """One adapter per task on one base model; what `lorasoup pool train --config` reads."""

    model: ModelConfig = Field(default_factory=ModelConfig, description="The base model every adapter is for.")
    tasks: list[TaskSpec | str] = Field(description="Upstream tasks, one adapter each ('skills:add', or a TaskSpec "
                                        "mapping with source/name/path ...).")
    training: TrainingConfig = Field(default_factory=TrainingConfig, description="LoRA training for every task.")
    overrides: dict[str, dict[str, Any]] = Field(
        default_factory=dict, description="Per-task changes to `training`, keyed by task name "
        "(e.g. {add: {steps: 200}}).")
    storage: StorageConfig = Field(default_factory=StorageConfig, description="Where adapter files are published.")
    tracking: TrackingConfig = Field(default_factory=TrackingConfig,
                                     description="MLflow tracking/registry server and the experiment of training runs.")
    embed_examples: int = Field(64, ge=0, description="Training inputs embedded per adapter (card embedding, "
                                "used by retrieval filters); 0 skips the embedding.")

    @property
    def experiment_name(self) -> str:
        return self.tracking.experiment or DEFAULT_EXPERIMENT

    def training_for(self, task_name: str) -> TrainingConfig:
        """`training` with the task's overrides applied (validated; an unknown key is an error)."""
        if task_name not in self.overrides:
            return self.training
        try:
            return TrainingConfig.model_validate({**self.training.model_dump(), **self.overrides[task_name]})
        except ValidationError as err:
            problems = "; ".join(f"overrides.{task_name}.{'.'.join(map(str, e['loc']))}: {e['msg']}"
                                 for e in err.errors())
            raise ConfigError(problems) from None


# Experiment-only keys of an experiment config's `pool` section, ignored when it is read as a pool.
_EXPERIMENT_POOL_KEYS = ("concurrency", "dask_address", "datamix_proportions")


def load_pool(path: str | Path) -> PoolConfig:
    """A pool YAML, or an experiment YAML (configs/demo.yaml) whose `pool` section is used."""
    data = read_yaml(path)
    if not isinstance(data.get("pool"), dict):
        return load_config(path, PoolConfig)
    pool = {k: v for k, v in data["pool"].items() if k not in _EXPERIMENT_POOL_KEYS}
    tracking = dict(data.get("tracking") or {})
    if data.get("name"):
        tracking.setdefault("experiment", data["name"])
    merged = {**pool, **{k: data[k] for k in ("model", "storage") if k in data}, "tracking": tracking}
    try:
        return PoolConfig.model_validate(merged)
    except ValidationError as err:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in err.errors())
        raise ConfigError(f"{path}: invalid pool section: {problems}") from None
