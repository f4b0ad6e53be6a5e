"""BIG-Bench Hard in its official layout: a directory of <task>.json ({"examples": [{input, target}]})
and cot-prompts/<task>.txt; or a hub mirror (e.g. lukaemon/bbh) through `datasets` when online."""

from __future__ import annotations

from pathlib import Path

from lorasoup_core.data.sources.reading import field, read_rows, read_text, split
from lorasoup_core.data.spec import LISTERS, SOURCES, TaskSpec, data_dir
from lorasoup_core.data.task import DataError, Example, Task

# LoraHub's zero-shot BBH format: the input, then the answer.
TEMPLATE = "{input}\nAnswer:"


def bbh_tasks(path: str | None = None) -> list[str]:
    root = data_dir("bbh", path)
    return sorted(p.stem for p in root.glob("*.json"))


LISTERS["bbh"] = bbh_tasks


@SOURCES.register("bbh")
def bbh(spec: TaskSpec) -> Task:
    """Seeded split: `n_train` (default 5, the few-shot pool) and `n_validation` (default 0) from the
    examples; the rest is test."""
    if spec.path and not Path(spec.path).exists() and "/" in spec.path:
        return _hub(spec)
    root = data_dir("bbh", spec.path)
    path = root / f"{spec.name}.json" if root.is_dir() else root
    if not path.is_file():
        raise DataError(f"{root}: no BBH task {spec.name!r}; available: {', '.join(bbh_tasks(str(root)))}")
    rows = read_rows(path, "examples")
    examples = [Example(field(r, "input", path, i), field(r, "target", path, i)) for i, r in enumerate(rows)]
    train, val, test = split(examples, spec.seed, spec.n_train, spec.n_validation, spec.n_test, 5, 0)
    return Task(spec.name, train, val, test, template=TEMPLATE, metric="bbh", source=str(path))


def _hub(spec: TaskSpec) -> Task:
    import datasets

    try:
        ds = datasets.load_dataset(spec.path, spec.name, split="test")
    except Exception as err:  # offline, unknown repo or config
        raise DataError(f"{spec.path}: cannot load BBH task {spec.name!r} from the hub ({type(err).__name__})") from None
    where = Path(f"{spec.path}/{spec.name}")
    examples = [Example(field(r, "input", where, i), field(r, "target", where, i)) for i, r in enumerate(ds)]
    train, val, test = split(examples, spec.seed, spec.n_train, spec.n_validation, spec.n_test, 5, 0)
    return Task(spec.name, train, val, test, template=TEMPLATE, metric="bbh", source=str(where))


def bbh_cot_prompt(task: str, path: str | None = None) -> str:
    """The official 3-shot chain-of-thought prompt of a task, without its canary line and separator."""
    root = data_dir("bbh", path)
    f = root / "cot-prompts" / f"{task}.txt"
    if not f.is_file():
        raise DataError(f"{f}: no CoT prompt for BBH task {task!r}")
    text = read_text(f)
    if "-----" in text:
        text = text.split("-----", 1)[1]
    return text.strip()
