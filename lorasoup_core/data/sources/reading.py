"""Reading JSON / JSONL rows with errors that name the file and the row."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

from lorasoup_core.data.task import DataError, Example


def read_text(path: Path) -> str:
    raw = path.read_bytes()
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as err:
        line = raw[: err.start].count(b"\n") + 1
        raise DataError(f"{path}: invalid UTF-8 at byte {err.start} (line {line})") from None


def read_rows(path: Path, list_key: str | None = None) -> list[dict[str, Any]]:
    """Rows of a .jsonl file, a JSON list, or a JSON object holding a list under `list_key`."""
    text = read_text(path)
    if path.suffix == ".jsonl":
        rows = []
        for i, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as err:
                raise DataError(f"{path}: line {i}: invalid JSON ({err.msg})") from None
    else:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as err:
            raise DataError(f"{path}: invalid JSON at line {err.lineno} ({err.msg})") from None
        if isinstance(data, dict) and list_key:
            if list_key not in data:
                raise DataError(f"{path}: no {list_key!r} list in the top-level object")
            data = data[list_key]
        if not isinstance(data, list):
            raise DataError(f"{path}: expected a list of rows")
        rows = data
    if not rows:
        raise DataError(f"{path}: no examples")
    return rows


def field(row: Any, name: str, path: Path, i: int) -> str:
    if not isinstance(row, dict):
        raise DataError(f"{path}: row {i}: expected an object, got {type(row).__name__}")
    if name not in row or row[name] is None:
        raise DataError(f"{path}: row {i}: missing field {name!r} (has: {', '.join(sorted(row))})")
    return str(row[name])


def split(examples: list[Example], seed: int, n_train: int | None, n_validation: int | None,
          n_test: int | None, default_train: int, default_validation: int) -> tuple[list, list, list]:
    """Seeded split of a file without official splits: train and validation first, the rest is test.
    Duplicate inputs are kept on one side only, so a test input never appears in train."""
    unique = list({e.input: e for e in examples}.values())
    order = list(range(len(unique)))
    random.Random(seed).shuffle(order)
    shuffled = [unique[i] for i in order]
    n_tr = min(default_train if n_train is None else n_train, max(len(shuffled) - 1, 0))
    n_va = min(default_validation if n_validation is None else n_validation, max(len(shuffled) - n_tr - 1, 0))
    train, val, test = shuffled[:n_tr], shuffled[n_tr: n_tr + n_va], shuffled[n_tr + n_va:]
    return train, val, test[:n_test] if n_test is not None else test
