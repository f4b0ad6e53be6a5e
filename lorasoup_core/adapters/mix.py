"""DATA-MIX: one task made of several tasks' data, for the multi-task baseline.

A ``Task`` has one template, but the mixed tasks may each have their own; so every mixed example
carries its task's prompt already applied (``input = task.prompt(ex)``) and the mixed task's
template is ``"{input}"``. Training on the mix therefore sees exactly the prompts each task's own
adapter would see.
"""

from __future__ import annotations

import random

from lorasoup_core.data import Example, Task

VALIDATION_PER_TASK = 32  # at most this many validation examples from each task


def _draw(rng: random.Random, examples: list[Example], k: int) -> list[Example]:
    """k examples: whole shuffled passes, then a partial one (no repeats until every example is used)."""
    out: list[Example] = []
    while len(out) < k:
        batch = list(examples)
        rng.shuffle(batch)
        out += batch[: k - len(out)]
    return out


def mix_tasks(tasks: list[Task], proportions: list[float] | None = None, name: str = "datamix", seed: int = 0,
              size: int | None = None) -> Task:
    """A task whose train split draws from each task by `proportions` (default equal).

    The train split has `size` examples (default: as many as the largest task's train split); task i
    contributes round(size * p_i / sum(p)). Validation is a seeded subsample of each task's validation
    split (up to VALIDATION_PER_TASK each, tasks with proportion 0 left out); test is empty (evaluate
    on the original tasks). The metric is the first task's.
    """
    if not tasks:
        raise ValueError("mix_tasks needs at least one task")
    props = list(proportions) if proportions is not None else [1.0] * len(tasks)
    if len(props) != len(tasks) or any(p < 0 for p in props) or sum(props) <= 0:
        raise ValueError(f"proportions {props} must be {len(tasks)} non-negative numbers with a positive sum "
                         f"(tasks: {', '.join(t.name for t in tasks)})")
    for task, p in zip(tasks, props, strict=True):
        if p > 0 and not task.train:
            raise ValueError(f"mix_tasks: task {task.name!r} has proportion {p:g} but no train examples")
    rng = random.Random(seed)
    total = size if size is not None else max(len(t.train) for t in tasks)
    train: list[Example] = []
    validation: list[Example] = []
    for task, p in zip(tasks, props, strict=True):
        if p == 0:
            continue
        picks = _draw(rng, task.train, round(total * p / sum(props)))
        train += [Example(task.prompt(e), e.target) for e in picks]
        val = rng.sample(task.validation, min(VALIDATION_PER_TASK, len(task.validation)))
        validation += [Example(task.prompt(e), e.target) for e in val]
    rng.shuffle(train)
    return Task(name, train, validation, [], template="{input}", metric=tasks[0].metric,
                source="mix:" + ",".join(f"{t.name}={p:g}" for t, p in zip(tasks, props, strict=True)))
