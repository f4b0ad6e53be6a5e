"""CodeAlpaca-style instruction data (`instruction` / `input` / `output`), used for training pools."""

from __future__ import annotations

from lorasoup_core.data.sources.reading import duplicate_note, read_rows, split
from lorasoup_core.data.spec import LISTERS, SOURCES, TaskSpec, data_dir
from lorasoup_core.data.task import Example, Task

TEMPLATE = "### Instruction:\n{input}\n### Response:"
LISTERS["codealpaca"] = lambda path=None: ["codealpaca"]


@SOURCES.register("codealpaca")
def codealpaca(spec: TaskSpec) -> Task:
    """CodeAlpaca instruction -> output rows (LORASOUP_DATA_DIR/codealpaca/code_alpaca_2k.json).

    The instruction is followed by its `input` when not empty; seeded split: 1500 train, 100 validation,
    the rest test."""
    path = data_dir("codealpaca/code_alpaca_2k.json", spec.path)
    examples = []
    for row in read_rows(path):
        instruction, extra = row.get("instruction"), row.optional("input").strip()
        examples.append(Example(instruction + (f"\n{extra}" if extra else ""), row.get("output")))
    train, val, test = split(examples, spec.seed, spec.n_train, spec.n_validation, spec.n_test, 1500, 100)
    return Task(spec.name, train, val, test, template=TEMPLATE, source=str(path),
                notes=duplicate_note(examples, path))
