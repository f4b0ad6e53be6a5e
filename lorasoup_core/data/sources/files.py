"""Generic sources: JSON / JSONL files with configurable field names, Hugging Face datasets, CodeAlpaca."""

from __future__ import annotations

from pathlib import Path

from lorasoup_core.data.sources.reading import field, read_rows, split
from lorasoup_core.data.spec import SOURCES, TaskSpec, data_dir
from lorasoup_core.data.task import DataError, Example, Task

SPLIT_FILES = {"train": ("train",), "validation": ("validation", "valid", "dev"), "test": ("test",)}


def _examples(rows: list, path: Path, input_field: str, target_field: str) -> list[Example]:
    return [Example(field(r, input_field, path, i), field(r, target_field, path, i)) for i, r in enumerate(rows)]


@SOURCES.register("jsonl", "json")
def json_files(spec: TaskSpec) -> Task:
    """A file (split by seed) or a directory with train/validation/test .json(l) files."""
    path = data_dir(spec.name, spec.path)
    inp, tgt = spec.fields.get("input", "input"), spec.fields.get("target", "target")
    if path.is_file():
        examples = _examples(read_rows(path, spec.fields.get("list", "examples")), path, inp, tgt)
        train, val, test = split(examples, spec.seed, spec.n_train, spec.n_validation, spec.n_test, len(examples) // 2,
                                 min(50, len(examples) // 10))
        return Task(spec.name, train, val, test, source=str(path))
    splits: dict[str, list[Example]] = {}
    for split_name, stems in SPLIT_FILES.items():
        for stem in stems:
            for ext in (".jsonl", ".json"):
                f = path / f"{stem}{ext}"
                if f.is_file():
                    splits[split_name] = _examples(read_rows(f, spec.fields.get("list", "examples")), f, inp, tgt)
    if not splits:
        raise DataError(f"{path}: no train/validation/test .json or .jsonl files")
    task = Task(spec.name, splits.get("train", [])[: spec.n_train], splits.get("validation", [])[: spec.n_validation],
                splits.get("test", [])[: spec.n_test], source=str(path))
    return task


@SOURCES.register("hf")
def hf_dataset(spec: TaskSpec) -> Task:
    """`datasets.load_dataset(path)`: a hub id (online or cached) or local data files."""
    import datasets

    if not spec.path:
        raise DataError(f"task {spec.name!r}: the hf source needs `path:` (a hub id or data files)")
    inp, tgt = spec.fields.get("input", "input"), spec.fields.get("target", "target")
    local = Path(spec.path)
    try:
        if local.is_file():
            ds = datasets.load_dataset("json", data_files=str(local))
        else:
            ds = datasets.load_dataset(spec.path, spec.fields.get("config"))
    except Exception as err:  # datasets raises many types for missing/offline/bad data
        raise DataError(f"{spec.path}: cannot load with datasets ({type(err).__name__}: {err})") from None
    splits = {}
    for name, ds_split in ds.items():
        rows = list(ds_split)
        splits[name] = _examples(rows, Path(f"{spec.path}[{name}]"), inp, tgt)
    if set(splits) == {"train"}:
        train, val, test = split(splits["train"], spec.seed, spec.n_train, spec.n_validation, spec.n_test,
                                 len(splits["train"]) // 2, min(50, len(splits["train"]) // 10))
    else:
        train, val = splits.get("train", []), splits.get("validation", splits.get("valid", []))
        test = splits.get("test", [])
    return Task(spec.name, train, val, test, source=spec.path)


@SOURCES.register("codealpaca")
def codealpaca(spec: TaskSpec) -> Task:
    """CodeAlpaca-style `instruction` / `input` / `output` rows (for training pools)."""
    path = data_dir("codealpaca/code_alpaca_2k.json", spec.path)
    rows = read_rows(path)
    examples = []
    for i, r in enumerate(rows):
        instruction = field(r, "instruction", path, i)
        extra = str(r.get("input") or "").strip()
        examples.append(Example(instruction + (f"\n{extra}" if extra else ""), field(r, "output", path, i)))
    train, val, test = split(examples, spec.seed, spec.n_train, spec.n_validation, spec.n_test, 1500, 100)
    return Task(spec.name, train, val, test, template="### Instruction:\n{input}\n### Response:", source=str(path))
