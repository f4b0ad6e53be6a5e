"""Prefect tasks for the adapter pool: each calls lorasoup_core.pool directly.

`ensure_adapter` retries on I/O errors only; a retry after a failed registration reuses the finished
local training (the library resumes it), so a flaky store or registry never trains twice.
"""

from __future__ import annotations

from prefect import task
from prefect.cache_policies import NONE

from lorasoup_core import pool as lib
from lorasoup_core.adapters import TrainingConfig
from lorasoup_core.config import ModelConfig, StorageConfig
from lorasoup_core.data import Task
from lorasoup_core.models.cache import BaseRef
from lorasoup_core.models.cache import resolve_base as _resolve_base
from lorasoup_core.registry import open_registry
from lorasoup_core.tracking import RunContext
from tasks._policies import IO_RETRIES


@task(task_run_name="resolve-base-{model.spec}", cache_policy=NONE)
def resolve_base(model: ModelConfig) -> BaseRef:
    """Load the base model in this worker and name it by its weights' fingerprint."""
    return _resolve_base(model)


@task(task_run_name="plan-pool", cache_policy=NONE, **IO_RETRIES)
def plan_pool(pool: lib.PoolConfig, base: BaseRef, storage: StorageConfig, run: RunContext) -> lib.PoolPlan:
    """Read every task's data (a bad file fails here, naming it) and look up what is registered; first
    tidy up after killed runs (their MLflow runs, staging dirs, undecided champions)."""
    return lib.plan_pool(pool, base.load(), open_registry(storage, run.tracking_uri), run)


@task(task_run_name="ensure-{task.name}", cache_policy=NONE, **IO_RETRIES)
def ensure_adapter(base: BaseRef, task: Task, training: TrainingConfig, storage: StorageConfig, run: RunContext,
                   embed_examples: int = 64) -> lib.EnsuredAdapter:
    """Train (or reuse) one LoRA, then publish and register it from the same process: on a Dask cluster
    the trained files never leave the worker that made them."""
    return lib.ensure_adapter(base.load(), task, training, open_registry(storage, run.tracking_uri), run,
                              embed_examples=embed_examples)
