"""How a task is named in configs, and the registry of sources that load it."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from pydantic import Field

from lorasoup_core.config import StrictModel
from lorasoup_core.data.task import DataError, Task
from lorasoup_core.plugins import Registry


class TaskSpec(StrictModel):
    source: str = Field(description="Source name: skills, bbh, gsm8k, gsm-hard, codealpaca, jsonl, json, hf.")
    name: str = Field(description="Task name (a BBH task file stem, a skill, or any name for file sources).")
    path: str | None = Field(None, description="File, directory or hub id; default: the source's place under "
                             "LORASOUP_DATA_DIR.")
    fields: dict[str, str] = Field(default_factory=dict, description="Field names for file sources: "
                                   "{'input': ..., 'target': ...}.")
    template: str | None = Field(None, description="Prompt template with {input}; default per source.")
    metric: str | None = Field(None, description="Metric name (lorasoup_core.bench.metrics); default per source.")
    seed: int = Field(0, description="Seed for splitting (and for generating skills).")
    n_train: int | None = Field(None, ge=0, description="Train examples (cap for files, count for skills).")
    n_validation: int | None = Field(None, ge=0, description="Validation examples.")
    n_test: int | None = Field(None, ge=0, description="Test examples (cap).")


# A source: TaskSpec -> Task; `names(path)` lists the tasks a source offers.
Source = Callable[[TaskSpec], Task]
SOURCES: Registry[Source] = Registry("data source")
LISTERS: dict[str, Callable[[str | None], list[str]]] = {}


def data_dir(sub: str, path: str | None) -> Path:
    """The explicit path, else LORASOUP_DATA_DIR/<sub>; a clear error when neither exists."""
    if path:
        p = Path(path).expanduser()
        if not p.exists():
            raise DataError(f"{p}: no such file or directory")
        return p
    root = os.environ.get("LORASOUP_DATA_DIR")
    if not root:
        raise DataError(f"no path given for {sub!r} data and LORASOUP_DATA_DIR is not set; pass `path:` in the "
                        "task spec or set LORASOUP_DATA_DIR to a directory holding bbh/, gsm8k/ ...")
    p = Path(root).expanduser() / sub
    if not p.exists():
        raise DataError(f"{p}: not found (LORASOUP_DATA_DIR={root}); pass `path:` in the task spec")
    return p


def parse_spec(spec: TaskSpec | dict | str) -> TaskSpec:
    if isinstance(spec, TaskSpec):
        return spec
    if isinstance(spec, dict):
        return TaskSpec.model_validate(spec)
    source, sep, name = spec.partition(":")
    if not sep or not name:
        raise DataError(f"task {spec!r}: expected 'source:name' (e.g. skills:add, bbh:navigate); sources: "
                        f"{', '.join(SOURCES.names())}")
    return TaskSpec(source=source, name=name)


def load_task(spec: TaskSpec | dict | str) -> Task:
    """Load and check a task from any registered source."""
    s = parse_spec(spec)
    task = SOURCES.get(s.source)(s)
    if s.template:
        task.template = s.template
    if s.metric:
        task.metric = s.metric
    return task.check()


def list_tasks(source: str, path: str | None = None) -> list[str]:
    SOURCES.get(source)
    lister = LISTERS.get(source)
    if lister is None:
        raise DataError(f"source {source!r} cannot list its tasks; name a file with `path:`")
    return lister(path)
