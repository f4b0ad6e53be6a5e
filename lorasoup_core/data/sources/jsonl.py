"""JSON / JSONL files with configurable field names: one file (split by seed) or a directory of
train / validation / test files."""

from __future__ import annotations

from pathlib import Path

from lorasoup_core.data.sources.reading import VALIDATION_NAMES, assemble, duplicate_note, examples, read_rows
from lorasoup_core.data.spec import LISTERS, SOURCES, TaskSpec, data_dir
from lorasoup_core.data.task import DataError, Example, Task

SPLIT_STEMS = {"train": ("train",), "validation": VALIDATION_NAMES, "test": ("test",)}
SUFFIXES = (".jsonl", ".json")


def _split_files(root: Path) -> dict[str, Path]:
    found = {}
    for split_name, stems in SPLIT_STEMS.items():
        for stem in stems:
            for ext in SUFFIXES:
                if (root / f"{stem}{ext}").is_file() and split_name not in found:
                    found[split_name] = root / f"{stem}{ext}"
    return found


@SOURCES.register("jsonl", "json")
def json_files(spec: TaskSpec) -> Task:
    """JSON / JSONL files with configurable field names (`path`, default LORASOUP_DATA_DIR/<name>).

    `path` is a file (split by seed) or a directory with train/validation/test .json(l) files (or
    <name>.json(l)). `fields`: input, target, and `list` (the key holding the rows when a JSON file is an
    object; default "examples")."""
    path = data_dir(spec.name, spec.path)
    if path.is_dir() and not _split_files(path):
        single = [path / f"{spec.name}{ext}" for ext in SUFFIXES if (path / f"{spec.name}{ext}").is_file()]
        if not single:
            raise DataError(f"{path}: no train/validation/test .json(l) files and no {spec.name}.json(l)")
        path = single[0]
    inp, tgt, key = spec.fields.get("input", "input"), spec.fields.get("target", "target"), spec.fields.get("list", "examples")
    files = {"train": path} if path.is_file() else _split_files(path)
    splits: dict[str, list[Example]] = {s: examples(read_rows(f, key), inp, tgt) for s, f in files.items()}
    train, val, test = assemble(splits, spec.seed, spec.n_train, spec.n_validation, spec.n_test)
    named = {s: str(f) for s, f in files.items()}
    if "validation" not in named and "train" in named:  # carved from the train file
        named["validation"] = named["train"]
    # a lone file is split by seed, which keeps each input once (assemble -> split): say what it dropped
    notes = [n for s, f in files.items() for n in duplicate_note(splits[s], f)] if len(files) == 1 else []
    return Task(spec.name, train, val, test, source=str(path), files=named, notes=notes)


def _list(path: str | None) -> list[str]:
    if not path:
        raise DataError("the json source lists the .json(l) files of a directory; pass --path DIR")
    root = Path(path).expanduser()
    if not root.is_dir():
        raise DataError(f"{root}: not a directory")
    return sorted({p.stem for ext in SUFFIXES for p in root.glob(f"*{ext}")})


LISTERS["jsonl"] = LISTERS["json"] = _list
