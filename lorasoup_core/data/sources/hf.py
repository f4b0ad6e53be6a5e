"""Hugging Face `datasets`: a hub id (online, or cached), a local data file, or a local directory of
data files (`datasets.load_dataset` infers train/validation/test from the file names)."""

from __future__ import annotations

import os
from pathlib import Path

from lorasoup_core.data.sources.reading import Row, assemble, duplicate_note, examples
from lorasoup_core.data.spec import SOURCES, TaskSpec
from lorasoup_core.data.task import DataError, Task

# Local file suffix -> the `datasets` packaged builder that reads it.
BUILDERS = {".json": "json", ".jsonl": "json", ".csv": "csv", ".parquet": "parquet", ".txt": "text"}


def load_dataset_dict(path: str, config: str | None = None):
    """`datasets.load_dataset` for a hub id or local files; any failure is one DataError naming `path`."""
    import datasets

    local = Path(path).expanduser()
    looks_local = local.is_absolute() or path.startswith(".") or local.suffix in BUILDERS
    if looks_local and not local.exists():
        raise DataError(f"{path}: no such file or directory")
    try:
        if local.is_file():
            return datasets.load_dataset(BUILDERS.get(local.suffix, "json"), data_files=str(local))
        if local.is_dir():
            return datasets.load_dataset(str(local))
        return datasets.load_dataset(path, config)
    except Exception as err:  # datasets raises many types for missing, offline or malformed data
        hint = " (offline? HF_HUB_OFFLINE is set)" if not local.exists() and _offline() else ""
        raise DataError(f"{path}: cannot load with datasets{hint}: {type(err).__name__}: {err}") from None


def _offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes")


@SOURCES.register("hf")
def hf_dataset(spec: TaskSpec) -> Task:
    """Hugging Face `datasets`: a hub id, a local data file or a directory of them (`path`).

    `fields`: input, target, and `config` (the hub config name)."""
    if not spec.path:
        raise DataError(f"task {spec.name!r}: the hf source needs `path:` (a hub id, a data file or a directory)")
    ds = load_dataset_dict(spec.path, spec.fields.get("config"))
    inp, tgt = spec.fields.get("input", "input"), spec.fields.get("target", "target")
    splits = {}
    for split_name, rows in ds.items():
        where = f"{spec.path}[{split_name}]"
        splits[split_name] = examples([Row(r, where, f"row {i}") for i, r in enumerate(rows)], inp, tgt)
        if not splits[split_name]:
            raise DataError(f"{where}: no examples")
    train, val, test = assemble(splits, spec.seed, spec.n_train, spec.n_validation, spec.n_test)
    notes = [n for s, rows in splits.items() for n in duplicate_note(rows, f"{spec.path}[{s}]")] \
        if len(splits) == 1 else []  # a lone split is split by seed, keeping each input once
    return Task(spec.name, train, val, test, source=spec.path, notes=notes)
