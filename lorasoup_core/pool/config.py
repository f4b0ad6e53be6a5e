"""The pool config: upstream tasks and how each task's LoRA is trained.

One model, `PoolConfig`, is the `pool:` section of every YAML that trains adapters: a pool file
(`lorasoup pool train --config configs/pool_skills.yaml`) is model + storage + tracking + pool, and an
experiment file adds its targets, methods and evaluation to the same four sections.
"""

from __future__ import annotations

from typing import Any

from pydantic import Field, ValidationError, model_validator

from lorasoup_core.adapters import TrainingConfig, slug_clash
from lorasoup_core.config import (
    ModelConfig,
    StorageConfig,
    StrictModel,
    TrackingConfig,
)
from lorasoup_core.data import TaskSpec, parse_spec

DEFAULT_EXPERIMENT = "lorasoup-pool"


class PoolConfig(StrictModel):
    """One adapter per task on one base model."""

    tasks: list[TaskSpec | str] = Field(description="Upstream tasks, one adapter each ('skills:add', or a TaskSpec "
                                        "mapping with source/name/path ...).")
    training: TrainingConfig = Field(default_factory=TrainingConfig, description="LoRA training for every task.")
    overrides: dict[str, dict[str, Any]] = Field(
        default_factory=dict, description="Per-task changes to `training`, keyed by task name "
        "(e.g. {add: {steps: 200}}).")
    embed_examples: int = Field(64, ge=0, description="Training inputs embedded per adapter (card embedding, "
                                "used by retrieval filters); 0 skips the embedding.")
    concurrency: int = Field(1, ge=1, description="Adapters trained at once by the pipeline (each worker thread "
                             "holds a model copy).")
    dask_address: str | None = Field(None, description="Dask scheduler address: the pipeline trains on that "
                                     "cluster (`dask` extra).")
    datamix_proportions: dict[str, float] | None = Field(
        None, description="DATA-MIX baseline: share of each pool task in the mixture (default equal).")

    @property
    def task_names(self) -> list[str]:
        return [parse_spec(s).name for s in self.tasks]

    @model_validator(mode="after")
    def _check(self) -> PoolConfig:
        names = self.task_names
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"tasks: {', '.join(dupes)} listed more than once; one adapter per task")
        if clash := slug_clash(names):  # one registry model and work directory for two tasks
            raise ValueError(f"tasks: {clash}")
        for where, keys in (("overrides", self.overrides), ("datamix_proportions", self.datamix_proportions or {})):
            unknown = sorted(set(keys) - set(names))
            if unknown:
                raise ValueError(f"{where} name task(s) not in the pool: {', '.join(unknown)}; "
                                 f"pool: {', '.join(names)}")
        for name in self.overrides:
            self.training_for(name)  # a misspelt key or a bad value fails at load time, naming the task
        return self

    def training_for(self, task_name: str) -> TrainingConfig:
        """`training` with the task's overrides applied (validated; an unknown key is an error)."""
        if task_name not in self.overrides:
            return self.training
        try:
            return TrainingConfig.model_validate({**self.training.model_dump(), **self.overrides[task_name]})
        except ValidationError as err:
            problems = "; ".join(f"overrides.{task_name}.{'.'.join(map(str, e['loc']))}: {e['msg']}"
                                 for e in err.errors())
            raise ValueError(problems) from None


class PoolFile(StrictModel):
    """What `lorasoup pool train --config` reads: a base model, where adapters go, and the pool."""

    model: ModelConfig = Field(default_factory=ModelConfig, description="The base model every adapter is for.")
    storage: StorageConfig = Field(default_factory=StorageConfig, description="Where adapter files are published.")
    tracking: TrackingConfig = Field(default_factory=TrackingConfig,
                                     description="MLflow tracking/registry server and the experiment of training runs.")
    pool: PoolConfig = Field(description="The upstream tasks and their training.")

    @property
    def experiment_name(self) -> str:
        return self.tracking.experiment or DEFAULT_EXPERIMENT

    def pool_file(self) -> PoolFile:
        """Just the pool part (of an experiment too), its training runs logged under this experiment name."""
        tracking = self.tracking.model_copy(update={"experiment": self.experiment_name})
        return PoolFile(model=self.model, storage=self.storage, tracking=tracking, pool=self.pool)
