"""The `skills` source: the embedded procedural suite (no files needed)."""

from __future__ import annotations

from lorasoup_core.data.procedural import COMPOSED_TASKS, GENERATORS, UPSTREAM_SKILLS, generate
from lorasoup_core.data.spec import LISTERS, SOURCES, TaskSpec
from lorasoup_core.data.task import DataError, Example, Task

TEMPLATE = "{input}\nAnswer:"
N_TRAIN, N_VALIDATION, N_TEST = 200, 50, 100
LISTERS["skills"] = lambda path=None: UPSTREAM_SKILLS + sorted(COMPOSED_TASKS)


@SOURCES.register("skills")
def skills(spec: TaskSpec) -> Task:
    """The embedded procedural skill suite: upstream skills and composed targets, generated from `seed`.

    Train / validation / test come from separate random streams of (name, seed); each stream skips the
    inputs of the ones before it, so no input is in two splits. Defaults: 200 / 50 / 100 examples."""
    if spec.name not in GENERATORS:
        raise DataError(f"unknown skill {spec.name!r}; known: {', '.join(LISTERS['skills']())}")
    sizes = [N_TRAIN if spec.n_train is None else spec.n_train,
             N_VALIDATION if spec.n_validation is None else spec.n_validation,
             N_TEST if spec.n_test is None else spec.n_test]
    seen: set[str] = set()
    splits: list[list[Example]] = []
    for stream, n in enumerate(sizes):
        rows = generate(spec.name, n, spec.seed, stream, exclude=seen)
        if len(rows) < n:
            raise DataError(f"skills:{spec.name}: only {len(rows)} distinct new inputs for the "
                            f"{('train', 'validation', 'test')[stream]} split, {n} asked; ask for fewer examples")
        seen |= {inp for inp, _ in rows}
        splits.append([Example(inp, ans) for inp, ans in rows])
    return Task(spec.name, *splits, template=TEMPLATE, metric="exact_match", source=f"skills:seed={spec.seed}",
                components=COMPOSED_TASKS.get(spec.name, ()))
