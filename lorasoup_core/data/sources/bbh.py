"""BIG-Bench Hard in its official layout: a directory of <task>.json ({"examples": [{input, target}]})
and cot-prompts/<task>.txt; or a hub mirror (e.g. lukaemon/bbh, one config per task) through `datasets`.

BBH has no official splits. Following LoraHub, a seeded shuffle gives `n_train` examples (default 5: the
few-shot pool a composition is fitted on), then `n_validation` (default 0), and the rest is the test split.
Inputs that occur twice in a file (causal_judgement has two) are kept once, so no test input is in train.
"""

from __future__ import annotations

from pathlib import Path

from lorasoup_core.data.sources.hf import load_dataset_dict
from lorasoup_core.data.sources.reading import Row, duplicate_note, examples, read_rows, read_text, split
from lorasoup_core.data.spec import LISTERS, SOURCES, TaskSpec, data_dir
from lorasoup_core.data.task import DataError, Task

# The default zero-shot format: the input, then the answer. A template may also name the task's
# description ({description}: the first line of its official prompt file), e.g. the official BBH layout
# without exemplars, "{description}\n\nQ: {input}\nA:" (DESCRIBED_TEMPLATE).
TEMPLATE = "{input}\nAnswer:"
DESCRIBED_TEMPLATE = "{description}\n\nQ: {input}\nA:"
N_TRAIN, N_VALIDATION = 5, 0


def _is_hub_id(path: str | None) -> bool:
    return bool(path) and not Path(path).expanduser().exists() and "/" in path and not path.startswith(("/", "."))


def bbh_tasks(path: str | None = None) -> list[str]:
    """Task names: the <task>.json stems of the directory, or a hub mirror's configs."""
    if _is_hub_id(path):
        import datasets

        try:
            return sorted(datasets.get_dataset_config_names(path))
        except Exception as err:  # offline or unknown repo
            raise DataError(f"{path}: cannot list BBH tasks on the hub ({type(err).__name__}: {err})") from None
    root = data_dir("bbh", path)
    if root.is_file():
        return [root.stem]
    names = sorted(p.stem for p in root.glob("*.json"))
    if not names:
        raise DataError(f"{root}: no BBH <task>.json files")
    return names


LISTERS["bbh"] = bbh_tasks


@SOURCES.register("bbh")
def bbh(spec: TaskSpec) -> Task:
    """BIG-Bench Hard task files (LORASOUP_DATA_DIR/bbh) or a hub mirror; seeded 5-shot train split.

    `path`: the BBH directory, one <task>.json, or a hub id such as lukaemon/bbh."""
    if _is_hub_id(spec.path):
        ds = load_dataset_dict(spec.path, spec.name)
        split_name = "test" if "test" in ds else next(iter(ds))
        where = f"{spec.path}/{spec.name}[{split_name}]"
        rows = [Row(r, where, f"row {i}") for i, r in enumerate(ds[split_name])]
        source = where
    else:
        root = data_dir("bbh", spec.path)
        path = root / f"{spec.name}.json" if root.is_dir() else root
        if not path.is_file():
            raise DataError(f"{root}: no BBH task {spec.name!r}; available: {', '.join(bbh_tasks(str(root)))}")
        rows, source = read_rows(path, "examples"), str(path)
    rows_read = examples(rows)
    train, val, test = split(rows_read, spec.seed, spec.n_train, spec.n_validation, spec.n_test,
                             N_TRAIN, N_VALIDATION)
    template = spec.template or TEMPLATE
    if "{description}" in template:
        template = template.replace("{description}", bbh_description(spec.name, spec.path))
    return Task(spec.name, train, val, test, template=template, metric="bbh", source=source,
                notes=duplicate_note(rows_read, source))


def bbh_description(task: str, path: str | None = None) -> str:
    """The task's one-line description: the first line of its official prompt file."""
    return bbh_cot_prompt(task, path).split("\n", 1)[0].strip()


def bbh_cot_prompt(task: str, path: str | None = None) -> str:
    """The official 3-shot chain-of-thought prompt of a task (cot-prompts/<task>.txt beside the task
    files), without its canary line and the '-----' separator."""
    root = data_dir("bbh", path)
    root = root.parent if root.is_file() else root
    f = root / "cot-prompts" / f"{task}.txt"
    if not f.is_file():
        raise DataError(f"{f}: no CoT prompt for BBH task {task!r}")
    text = read_text(f)
    if "-----" in text:
        text = text.split("-----", 1)[1]
    elif "canary" in text.split("\n", 1)[0].lower():
        text = text.split("\n", 1)[1] if "\n" in text else ""
    return text.strip()
