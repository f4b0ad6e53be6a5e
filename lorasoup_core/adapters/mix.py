"""DATA-MIX: one task made of several tasks' data, for the multi-task baseline."""

from __future__ import annotations

import random

from lorasoup_core.data import Example, Task


def mix_tasks(tasks: list[Task], proportions: list[float] | None = None, name: str = "datamix", seed: int = 0) -> Task:
    """A task whose train split draws from each task by `proportions` (default equal), with as many examples as
    the largest task. Each example carries its own task's prompt (template "{input}"), so one mixed task can
    hold tasks with different templates."""
    if not tasks:
        raise ValueError("mix_tasks needs at least one task")
    props = proportions or [1.0] * len(tasks)
    if len(props) != len(tasks) or any(p < 0 for p in props) or sum(props) <= 0:
        raise ValueError(f"proportions {props} must be {len(tasks)} non-negative numbers with a positive sum")
    rng = random.Random(seed)
    total = max(len(t.train) for t in tasks)
    train, validation = [], []
    for task, p in zip(tasks, props, strict=True):
        k = round(total * p / sum(props))
        picks = [rng.choice(task.train) for _ in range(k)] if task.train else []
        train += [Example(task.prompt(e), e.target) for e in picks]
        validation += [Example(task.prompt(e), e.target) for e in task.validation[:16]]
    rng.shuffle(train)
    return Task(name, train, validation, [], template="{input}", metric=tasks[0].metric,
                source="mix:" + ",".join(f"{t.name}={p:g}" for t, p in zip(tasks, props, strict=True)))
