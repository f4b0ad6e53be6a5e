"""How a task is named in configs, and the registry of sources that load it."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from pydantic import Field, ValidationError

from lorasoup_core.config import StrictModel
from lorasoup_core.data.task import DataError, Task
from lorasoup_core.plugins import Registry, UnknownPluginError


class TaskSpec(StrictModel):
    source: str = Field(description="Source name: skills, bbh, gsm8k, gsm-hard, codealpaca, jsonl, json, hf.")
    name: str = Field(description="Task name (a BBH task file stem, a skill, or any name for file sources).")
    path: str | None = Field(None, description="File, directory or hub id; default: the source's place under "
                             "LORASOUP_DATA_DIR.")
    fields: dict[str, str] = Field(default_factory=dict, description="Field names for json/jsonl/hf sources: "
                                   "{'input': ..., 'target': ...}; json also 'list' (the key holding the rows), "
                                   "hf also 'config' (the hub config name).")
    template: str | None = Field(None, description="Prompt template with {input}; default per source.")
    metric: str | None = Field(None, description="Metric name (lorasoup_core.bench.metrics); default per source.")
    seed: int = Field(0, description="Seed for splitting (and for generating skills).")
    n_train: int | None = Field(None, ge=0, description="Train examples (cap for files, count for skills).")
    n_validation: int | None = Field(None, ge=0, description="Validation examples.")
    n_test: int | None = Field(None, ge=0, description="Test examples (cap).")


# A source: TaskSpec -> Task, one module each under sources/; LISTERS[name](path) lists a source's tasks.
Source = Callable[[TaskSpec], Task]
SOURCES: Registry[Source] = Registry("data source")
LISTERS: dict[str, Callable[[str | None], list[str]]] = {}


class UnknownSourceError(DataError, UnknownPluginError):
    """A source name nobody registered (a DataError, and the registry's KeyError); lists the known ones."""


def get_source(name: str) -> Source:
    try:
        return SOURCES.get(name)
    except UnknownPluginError as err:
        raise UnknownSourceError(str(err)) from None


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
        raise DataError(f"{p}: not found (looked under LORASOUP_DATA_DIR={root}); pass `path:` in the task spec "
                        "or point LORASOUP_DATA_DIR at the data directory")
    return p


def parse_spec(spec: TaskSpec | dict | str) -> TaskSpec:
    """A TaskSpec from itself, a dict (a config section) or the shorthand 'source:name'."""
    if isinstance(spec, TaskSpec):
        return spec
    if isinstance(spec, dict):
        try:
            return TaskSpec.model_validate(spec)
        except ValidationError as err:
            problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or '(top level)'}: {e['msg']}" for e in err.errors())
            raise DataError(f"task spec {spec!r}: {problems}") from None
    source, sep, name = spec.partition(":")
    if not sep or not name:
        raise DataError(f"task {spec!r}: expected 'source:name' (e.g. skills:add, bbh:navigate); sources: "
                        f"{', '.join(SOURCES.names())}")
    return TaskSpec(source=source, name=name)


def load_task(spec: TaskSpec | dict | str) -> Task:
    """Load and check a task from any registered source."""
    s = parse_spec(spec)
    task = get_source(s.source)(s)
    if s.template and "{description}" not in s.template:  # a source that knows descriptions filled them in
        task.template = s.template
    if s.metric:
        task.metric = s.metric
    return task.check()


def list_tasks(source: str, path: str | None = None) -> list[str]:
    """Task names a source offers (BBH task files, skills, the .json(l) files of a directory ...)."""
    get_source(source)
    lister = LISTERS.get(source)
    if lister is None:
        raise DataError(f"source {source!r} cannot list its tasks; name a file or hub id with `path:`")
    return lister(path)
