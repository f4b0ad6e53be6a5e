"""GSM-hard (PAL): `input` / `code` / `target` rows; the model writes `solution()` and the float target is
compared with what it returns. The reference program stays in `Example.meta["code"]`."""

from __future__ import annotations

from lorasoup_core.data.sources.reading import duplicate_note, read_rows, split
from lorasoup_core.data.spec import LISTERS, SOURCES, TaskSpec, data_dir
from lorasoup_core.data.task import DataError, Example, Task

TEMPLATE = ("Question: {input}\nWrite a Python function `solution()` that returns the answer as a number.\n"
            "```python\n")
LISTERS["gsm-hard"] = lambda path=None: ["gsm-hard"]


@SOURCES.register("gsm-hard")
def gsm_hard(spec: TaskSpec) -> Task:
    """GSM-hard rows for PAL evaluation (LORASOUP_DATA_DIR/gsm-hard/sample.jsonl).

    Seeded split: 4 train (the few-shot pool), the rest test."""
    path = data_dir("gsm-hard/sample.jsonl", spec.path)
    examples = []
    for row in read_rows(path):
        target = row.get("target")
        try:
            float(target)
        except ValueError:
            raise DataError(f"{path}: {row.where}: target {target!r} is not a number") from None
        examples.append(Example(row.get("input"), target, meta={"code": row.get("code")}))
    train, val, test = split(examples, spec.seed, spec.n_train, spec.n_validation, spec.n_test, 4, 0)
    return Task(spec.name, train, val, test, template=TEMPLATE, metric="pal", source=str(path),
                notes=duplicate_note(examples, path))
