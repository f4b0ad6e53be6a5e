"""GSM8K: `question` / `answer` rows whose answer ends with `#### <number>` (the target); the worked
answer stays in `Example.meta["answer"]`."""

from __future__ import annotations

import re

from lorasoup_core.data.sources.reading import Row, assemble, duplicate_note, read_rows, split
from lorasoup_core.data.spec import LISTERS, SOURCES, TaskSpec, data_dir
from lorasoup_core.data.task import DataError, Example, Task

TEMPLATE = "Question: {input}\nSolve step by step and end with '#### <number>'.\nAnswer:"
FINAL = re.compile(r"####\s*(.+?)\s*$")
LISTERS["gsm8k"] = lambda path=None: ["gsm8k"]


def final_answer(answer: str) -> str:
    """The number after the last '####', without thousands separators."""
    m = FINAL.search(answer.strip())
    if not m:
        raise ValueError("no '#### <answer>' line")
    return m.group(1).replace(",", "").strip()


def _example(row: Row) -> Example:
    answer = row.get("answer")
    try:
        target = final_answer(answer)
    except ValueError:
        raise DataError(f"{row.path}: {row.where}: answer has no final '#### <number>' line") from None
    return Example(row.get("question"), target, meta={"answer": answer})


@SOURCES.register("gsm8k")
def gsm8k(spec: TaskSpec) -> Task:
    """GSM8K word problems, target = the final number (LORASOUP_DATA_DIR/gsm8k/{train,test}.jsonl).

    Validation is 10% of the train rows (at most 50, seed-chosen); a single .jsonl `path` is split by seed (8 train, rest test)."""
    root = data_dir("gsm8k", spec.path)
    if root.is_file():
        splits = {"train": [_example(r) for r in read_rows(root)]}
        train, val, test = split(splits["train"], spec.seed, spec.n_train, spec.n_validation, spec.n_test, 8, 0)
    else:
        files = {s: root / f"{s}.jsonl" for s in ("train", "test")}
        splits = {s: [_example(r) for r in read_rows(f)] for s, f in files.items()}
        train, val, test = assemble(splits, spec.seed, spec.n_train, spec.n_validation, spec.n_test)
        return Task(spec.name, train, val, test, template=TEMPLATE, metric="gsm8k", source=str(root),
                    files={"train": str(files["train"]), "validation": str(files["train"]), "test": str(files["test"])})
    return Task(spec.name, train, val, test, template=TEMPLATE, metric="gsm8k", source=str(root),
                notes=duplicate_note(splits["train"], root))
