"""Prefect tasks for the adapter pool: thin wrappers over lorasoup_core.experiment.pool_steps."""

from __future__ import annotations

from typing import Any

from prefect import task
from prefect.cache_policies import NONE

from lorasoup_core.adapters import TrainingConfig
from lorasoup_core.config import ModelConfig
from lorasoup_core.data import Task, TaskSpec
from lorasoup_core.experiment import pool_steps
from lorasoup_core.experiment.steps import task_from
from tasks._policies import IO_RETRIES


@task(task_run_name="load-data-{spec}", cache_policy=NONE)
def load_task_data(spec: TaskSpec | str) -> Task:
    """Read and check one task's data (a bad file fails here, naming the file and row)."""
    return task_from(spec)


@task(task_run_name="fingerprint-{task.name}", cache_policy=NONE)
def fingerprint_task(model: ModelConfig, task: Task, training: TrainingConfig) -> dict[str, str]:
    return pool_steps.fingerprints(model, task, training)


@task(task_run_name="find-{fingerprints[data_fingerprint]:.8}", cache_policy=NONE, **IO_RETRIES)
def find_adapter(storage_uri: str | None, tracking_uri: str | None, fingerprints: dict[str, str]) -> dict[str, Any] | None:
    """The registered version with these fingerprints, if any (training is skipped then)."""
    return pool_steps.find(pool_steps.registry(storage_uri, tracking_uri), fingerprints)


@task(task_run_name="train-{task.name}", cache_policy=NONE, retries=0)
def train_adapter(model: ModelConfig, task: Task, training: TrainingConfig, storage_uri: str | None,
                  tracking_uri: str | None, experiment: str, parent_run_id: str | None,
                  embed_examples: int = 64) -> dict[str, Any]:
    """Train one LoRA, then publish and register it from the same process: on a Dask cluster the trained
    files never leave the worker that made them. Training is never retried (a failure there is a code or
    data error); the registration is a nested task with its own I/O retries."""
    local_dir, run_id = pool_steps.train(model, task, training, experiment=experiment, parent_run_id=parent_run_id,
                                         tracking_uri=tracking_uri, embed_examples=embed_examples)
    return register_adapter(storage_uri, tracking_uri, local_dir, run_id)


@task(task_run_name="register-adapter", cache_policy=NONE, **IO_RETRIES)
def register_adapter(storage_uri: str | None, tracking_uri: str | None, local_dir: str,
                     run_id: str | None) -> dict[str, Any]:
    """Publish to the store and create the registry version as one unit (idempotent, so retry-safe)."""
    return pool_steps.register(pool_steps.registry(storage_uri, tracking_uri), local_dir, run_id)


@task(task_run_name="train-datamix", cache_policy=NONE, retries=0)
def train_datamix(model: ModelConfig, tasks: list[Task], training: TrainingConfig, proportions: dict[str, float] | None,
                  seed: int, experiment: str, parent_run_id: str | None, tracking_uri: str | None) -> tuple[str, str, Task]:
    """The DATA-MIX baseline: one adapter trained on a mixture of the pool's data (reused when unchanged)."""
    from lorasoup_core.adapters import mix_tasks

    props = [proportions.get(t.name, 0.0) for t in tasks] if proportions else None
    mixed = mix_tasks(tasks, props, name="datamix", seed=seed)
    local_dir, run_id = pool_steps.train(model, mixed, training, experiment=experiment, parent_run_id=parent_run_id,
                                         tracking_uri=tracking_uri)
    return local_dir, run_id, mixed
