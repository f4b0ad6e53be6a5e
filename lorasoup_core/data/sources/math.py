"""GSM8K (`question` / `answer`, final answer after ####) and GSM-hard (`input` / `code` / `target`)."""

from __future__ import annotations

import re

from lorasoup_core.data.sources.reading import field, read_rows, split
from lorasoup_core.data.spec import SOURCES, TaskSpec, data_dir
from lorasoup_core.data.task import DataError, Example, Task

GSM_TEMPLATE = "Question: {input}\nSolve step by step and end with '#### <number>'.\nAnswer:"
PAL_TEMPLATE = ("Question: {input}\nWrite a Python function `solution()` that returns the answer as a number.\n"
                "```python\n")


def final_answer(answer: str) -> str:
    m = re.search(r"####\s*(.+)\s*$", answer.strip())
    if not m:
        raise ValueError("no '#### <answer>' line")
    return m.group(1).replace(",", "").strip()


@SOURCES.register("gsm8k")
def gsm8k(spec: TaskSpec) -> Task:
    root = data_dir("gsm8k", spec.path)
    out = {}
    for split_name in ("train", "test"):
        f = root / f"{split_name}.jsonl" if root.is_dir() else root
        rows = read_rows(f)
        exs = []
        for i, r in enumerate(rows):
            try:
                target = final_answer(field(r, "answer", f, i))
            except ValueError:
                raise DataError(f"{f}: row {i}: answer has no final '#### <number>' line") from None
            exs.append(Example(field(r, "question", f, i), target))
        out[split_name] = exs
        if not root.is_dir():
            break
    if root.is_dir():
        train = out["train"][: spec.n_train if spec.n_train is not None else None]
        n_val = 50 if spec.n_validation is None else spec.n_validation
        val, train = train[:n_val], train[n_val:]
        test = out["test"][: spec.n_test] if spec.n_test is not None else out["test"]
    else:
        train, val, test = split(out["train"], spec.seed, spec.n_train, spec.n_validation, spec.n_test, 8, 0)
    return Task(spec.name, train, val, test, template=GSM_TEMPLATE, metric="gsm8k", source=str(root))


@SOURCES.register("gsm-hard")
def gsm_hard(spec: TaskSpec) -> Task:
    """PAL-style: the model writes `solution()`; the target is the float answer."""
    path = data_dir("gsm-hard/sample.jsonl", spec.path)
    rows = read_rows(path)
    examples = []
    for i, r in enumerate(rows):
        target = field(r, "target", path, i)
        try:
            float(target)
        except ValueError:
            raise DataError(f"{path}: row {i}: target {target!r} is not a number") from None
        field(r, "code", path, i)
        examples.append(Example(field(r, "input", path, i), target))
    train, val, test = split(examples, spec.seed, spec.n_train, spec.n_validation, spec.n_test, 4, 0)
    return Task(spec.name, train, val, test, template=PAL_TEMPLATE, metric="pal", source=str(path))
