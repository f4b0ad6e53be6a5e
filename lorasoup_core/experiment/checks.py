"""Checks of an experiment config's parts that need more than its own fields: the tasks it names exist,
the device and dtype are well formed, and (for runs whose steps run here) every task's data loads."""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING

from lorasoup_core.config import ConfigError, ModelConfig
from lorasoup_core.data import DataError, TaskSpec, list_tasks, load_task, parse_spec
from lorasoup_core.data.spec import get_source

if TYPE_CHECKING:
    from lorasoup_core.experiment.config import ExperimentConfig


# Sources whose `name` picks one of the tasks their lister names (file sources take any name).
_NAMED_SOURCES = ("skills", "bbh")
_DEVICE = re.compile(r"auto|cpu|mps|cuda(:\d+)?")


def _on_hub(spec: TaskSpec) -> bool:
    """A hub dataset id (e.g. lukaemon/bbh): not looked up while validating, which must work offline."""
    path = spec.path
    return spec.source == "hf" or (bool(path) and not Path(path).expanduser().exists() and "/" in path
                                   and not path.startswith(("/", ".", "~")))


def check_task_name(spec: TaskSpec | dict | str) -> TaskSpec:
    """A task spec whose source is known and, for skills and BBH, whose task exists (BBH: when its data is
    on this machine; a GPU worker may hold data this one lacks, see `check_task_data`)."""
    s = parse_spec(spec)
    get_source(s.source)  # unknown source: lists the known ones
    if s.source not in _NAMED_SOURCES or _on_hub(s):
        return s
    try:
        known = list_tasks(s.source, s.path)
    except DataError:
        return s
    if s.name not in known:
        raise ValueError(f"unknown {s.source} task {s.name!r}; known: {', '.join(known)}")
    return s


def check_device_and_dtype(model: ModelConfig) -> ModelConfig:
    """The form only: a config is portable, so a GPU it names is looked for where the model loads."""
    if not _DEVICE.fullmatch(model.device):
        raise ValueError(f"device {model.device!r}: expected auto, cpu, cuda, cuda:N (e.g. cuda:1) or mps")
    import torch

    from lorasoup_core.models.base import resolve_dtype

    resolve_dtype(model.dtype, torch.device("cpu"))  # unknown dtype: a ValueError listing the known ones
    return model


def check_task_data(cfg: ExperimentConfig, pool: bool = True) -> None:
    """Load every target (and, with `pool`, every pool task) as this machine would: for runs whose steps
    run here, so missing data or a bad task is found before any training. Hub datasets are left out."""
    specs = [(f"targets.{i}.task", t.task) for i, t in enumerate(cfg.targets)]
    specs += [(f"pool.tasks.{i}", t) for i, t in enumerate(cfg.pool.tasks)] if pool else []
    oracle = any("oracle" in cfg.selection_of(m).filters for m in cfg.selecting())
    problems = []
    for where, spec in specs:
        if _on_hub(parse_spec(spec)):
            continue
        try:
            task = load_task(spec)
        except (ValueError, OSError) as err:  # DataError is a ValueError
            problems.append(f"  {where}: {err}")
            continue
        if oracle and where.startswith("targets") and not task.components:
            problems.append(f"  {where}: the oracle filter needs a target built from pool tasks (a composed "
                            f"skill); {task.name!r} names none")
    if pool:  # hook: a published pool (`hub_pool`) is registered, or the hub answers
        from lorasoup_core.pool.hub import config_problems

        problems += [f"  {p}" for p in config_problems(cfg.hub_pool, cfg.model.spec, cfg.storage,
                                                       cfg.tracking.tracking_uri)]
    if problems:
        raise ConfigError("\n".join([f"config {cfg.name!r}: task data ({len(problems)} problem(s))", *problems]))
