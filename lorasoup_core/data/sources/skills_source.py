"""The `skills` source: the embedded procedural suite (no files needed)."""

from __future__ import annotations

from lorasoup_core.data.skills import COMPOSED_TASKS, GENERATORS, UPSTREAM_SKILLS, generate
from lorasoup_core.data.spec import LISTERS, SOURCES, TaskSpec
from lorasoup_core.data.task import DataError, Example, Task

TEMPLATE = "{input}\nAnswer:"
LISTERS["skills"] = lambda path=None: UPSTREAM_SKILLS + sorted(COMPOSED_TASKS)


@SOURCES.register("skills")
def skills(spec: TaskSpec) -> Task:
    """Train / validation / test from separate random streams; test inputs never repeat train ones."""
    if spec.name not in GENERATORS:
        raise DataError(f"unknown skill {spec.name!r}; known: {', '.join(LISTERS['skills']())}")
    n_train = 200 if spec.n_train is None else spec.n_train
    n_val = 50 if spec.n_validation is None else spec.n_validation
    n_test = 100 if spec.n_test is None else spec.n_test
    train = generate(spec.name, n_train, spec.seed, 0)
    val = generate(spec.name, n_val, spec.seed, 1, exclude={i for i, _ in train})
    test = generate(spec.name, n_test, spec.seed, 2, exclude={i for i, _ in train} | {i for i, _ in val})

    def ex(rows):
        return [Example(i, a) for i, a in rows]

    return Task(spec.name, ex(train), ex(val), ex(test), template=TEMPLATE, metric="exact_match",
                source=f"skills:seed={spec.seed}")
