"""The library steps an experiment is made of; the Prefect tasks in `tasks/` wrap these one to one.

Each step takes and returns plain, serialisable values (specs, fingerprints, URIs, dicts) so that a
pipeline can cache, retry and resume it without pickling models.
"""

from __future__ import annotations

import dataclasses
import random
import threading
from pathlib import Path
from typing import Any

from lorasoup_core.config import ModelConfig
from lorasoup_core.data import Example, Task, TaskSpec, load_task
from lorasoup_core.fingerprint import sha256_json
from lorasoup_core.models import LoadedModel, load_model
from lorasoup_core.settings import get_settings

_local = threading.local()
_load_lock = threading.Lock()


def shared_base(model: ModelConfig) -> LoadedModel:
    """The base model for this worker thread, loaded once.

    Training and composition patch the model's modules while they run, so threads never share one;
    each thread of a process keeps its own copy (loading from the converted cache takes about a second).
    """
    cache: dict[tuple[str, str, str], LoadedModel] = _local.__dict__.setdefault("models", {})
    key = (model.spec, model.device, model.dtype)
    if key not in cache:
        with _load_lock:  # the first GGUF conversion must not run twice at once
            cache[key] = load_model(model.spec, device=model.device, dtype=model.dtype)
    return cache[key]


def task_from(spec: TaskSpec | str | dict) -> Task:
    return load_task(spec)


def task_name(spec: TaskSpec | str | dict) -> str:
    if isinstance(spec, str):
        return spec.split(":", 1)[-1]
    if isinstance(spec, dict):
        return spec["name"]
    return spec.name


def pick_shots(task: Task, n: int, seed: int) -> list[Example]:
    """The few-shot examples a composition is fitted on: a seeded draw from the train split."""
    if len(task.train) < n:
        raise ValueError(f"task {task.name!r} has {len(task.train)} train examples; {n} shots requested")
    return random.Random(seed).sample(task.train, n)


def work_dir(*parts: str) -> Path:
    """A local scratch directory under LORASOUP_HOME (downloads, unpublished outputs)."""
    path = get_settings().home.joinpath("work", *parts)
    path.mkdir(parents=True, exist_ok=True)
    return path


def _plain(value: Any) -> Any:
    if hasattr(value, "model_dump"):
        return value.model_dump(mode="json")
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.asdict(value)
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    return value


def fingerprint(*values: Any) -> str:
    """sha256 over configs, examples and plain values: the cache keys of pipeline steps."""
    return sha256_json(_plain(list(values)))
