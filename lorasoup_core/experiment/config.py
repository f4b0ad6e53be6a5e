"""The experiment config: one YAML file drives the whole DAG (pool -> compose -> evaluate -> report)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field, field_validator

from lorasoup_core.adapters import TrainingConfig
from lorasoup_core.compose import ComposeConfig
from lorasoup_core.config import ModelConfig, StorageConfig, StrictModel, TrackingConfig, load_config
from lorasoup_core.data import TaskSpec

Baseline = Literal["zero-shot", "icl", "datamix"]


class PoolSection(StrictModel):
    tasks: list[TaskSpec | str] = Field(description="Upstream tasks, one adapter each ('skills:add', a TaskSpec ...).")
    training: TrainingConfig = Field(default_factory=TrainingConfig, description="LoRA training for every task.")
    overrides: dict[str, dict[str, Any]] = Field(
        default_factory=dict, description="Per-task changes to `training`, keyed by task name.")
    concurrency: int = Field(1, ge=1, description="Adapters trained at once (each worker thread holds a model copy).")
    embed_examples: int = Field(64, ge=0, description="Training inputs embedded per adapter for retrieval.")
    dask_address: str | None = Field(None, description="Dask scheduler address: train on that cluster (`dask` extra).")
    datamix_proportions: dict[str, float] | None = Field(
        None, description="DATA-MIX baseline: share of each pool task in the mixture (default equal).")


class SelectionSection(StrictModel):
    filters: list[str] = Field(["embedding"], description="Candidate filters, applied in order: random, loss, embedding.")
    k: int = Field(20, ge=1, description="Candidates kept for composition.")


class TargetSection(StrictModel):
    task: TaskSpec | str = Field(description="The unseen target task ('skills:count_then_add', 'bbh:navigate' ...).")
    shots: int = Field(5, ge=1, description="Few-shot examples the composition is fitted on (never scored).")


class EvalSection(StrictModel):
    limit: int | None = Field(50, ge=1, description="Test examples scored per target (None = all).")
    k_shot: int = Field(3, ge=1, description="Demonstrations in the ICL baseline's prompt.")
    batch_size: int = Field(16, ge=1, description="Generation batch size.")
    baselines: list[Baseline] = Field(["zero-shot", "icl"], description="Baselines evaluated beside the composers.")


class ExperimentConfig(StrictModel):
    """Everything one experiment run needs; params of the MLflow parent run are this, fully resolved."""

    name: str = Field(description="Experiment name: the MLflow experiment and the store prefix for reports.")
    seed: int = Field(0, description="Seed for shot sampling, random filters and searches.")
    model: ModelConfig = Field(default_factory=ModelConfig)
    storage: StorageConfig = Field(default_factory=StorageConfig)
    tracking: TrackingConfig = Field(default_factory=TrackingConfig)
    pool: PoolSection
    targets: list[TargetSection] = Field(description="Target tasks to compose for.")
    selection: SelectionSection = Field(default_factory=SelectionSection)
    methods: list[str] = Field(["lorahub", "cat", "uniform", "centroid"], description="Composers to run.")
    compose: ComposeConfig = Field(default_factory=ComposeConfig)
    eval: EvalSection = Field(default_factory=EvalSection)

    @property
    def experiment_name(self) -> str:
        """The MLflow experiment: `tracking.experiment` when set, else the config's name."""
        return self.tracking.experiment or self.name

    @field_validator("methods")
    @classmethod
    def _known_methods(cls, methods: list[str]) -> list[str]:
        from lorasoup_core.compose import COMPOSERS

        for m in methods:
            COMPOSERS.get(m)  # fails loudly, listing the known composers
        return methods


def load_experiment(path: str | Path) -> ExperimentConfig:
    return load_config(path, ExperimentConfig)
