"""Reading JSON / JSONL rows with errors that name the file and the row, and the split rules the
file sources share."""

from __future__ import annotations

import json
import math
import random
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lorasoup_core.data.task import DataError, Example


@dataclass(frozen=True)
class Row:
    """One record and where it came from, so a bad field is reported as `<file>: row 3 (line 5): ...`."""

    data: Any
    path: Path | str
    where: str  # "row 3", or "row 3 (line 5)" for JSONL

    def get(self, name: str) -> str:
        """The field as text: a string as is, a number written plainly (`3`, `2.5`); a missing or null
        field, a boolean, a list or an object is a DataError naming the file, the row and the field."""
        if not isinstance(self.data, dict):
            raise DataError(f"{self.path}: {self.where}: expected an object, got {type(self.data).__name__}")
        if name not in self.data:
            raise DataError(f"{self.path}: {self.where}: missing field {name!r} (has: {', '.join(sorted(self.data))})")
        if self.data[name] is None:
            raise DataError(f"{self.path}: {self.where}: field {name!r} is null")
        return self._text(name, self.data[name])

    def optional(self, name: str) -> str:
        value = self.data.get(name) if isinstance(self.data, dict) else None
        return "" if value is None else self._text(name, value)

    def _text(self, name: str, value: Any) -> str:
        if isinstance(value, str):
            return value
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            if isinstance(value, float) and not math.isfinite(value):
                raise DataError(f"{self.path}: {self.where}: field {name!r} is {value}; expected a finite number")
            return str(value)
        kind = {bool: "a boolean", list: "a list", dict: "an object"}.get(type(value), type(value).__name__)
        shown = json.dumps(value, default=str)
        shown = shown if len(shown) <= 40 else shown[:37] + "..."
        raise DataError(f"{self.path}: {self.where}: field {name!r} is {kind} ({shown}); expected a string or "
                        "a number (write it as a string to use it as text)")


def read_text(path: Path) -> str:
    raw = path.read_bytes()
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as err:
        line = raw[: err.start].count(b"\n") + 1
        raise DataError(f"{path}: invalid UTF-8 at byte {err.start} (line {line})") from None


def read_rows(path: Path, list_key: str | None = None) -> list[Row]:
    """Rows of a .jsonl file, a JSON list, or a JSON object holding a list under `list_key`."""
    if not path.is_file():
        raise DataError(f"{path}: no such file")
    text = read_text(path)
    rows: list[Row] = []
    if path.suffix == ".jsonl":
        for line_no, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                data = json.loads(line)
            except json.JSONDecodeError as err:
                raise DataError(f"{path}: line {line_no}: invalid JSON ({err.msg})") from None
            rows.append(Row(data, path, f"row {len(rows)} (line {line_no})"))
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
        rows = [Row(d, path, f"row {i}") for i, d in enumerate(data)]
    if not rows:
        raise DataError(f"{path}: no examples")
    return rows


def examples(rows: list[Row], input_field: str = "input", target_field: str = "target") -> list[Example]:
    return [Example(r.get(input_field), r.get(target_field)) for r in rows]


def duplicate_note(examples: list[Example], where: Path | str) -> list[str]:
    """What `split` drops from one file, in words ("19 of 20 rows of f.jsonl were dropped as duplicates of one
    input"), for the error a task left without train examples gives; [] when every input is distinct."""
    counts = Counter(e.input for e in examples)
    dropped = len(examples) - len(counts)
    if not dropped:
        return []
    repeated = sum(1 for n in counts.values() if n > 1)
    inputs = "one input" if repeated == 1 else f"{repeated} inputs"
    return [f"{dropped} of {len(examples)} rows of {where} were dropped as duplicates of {inputs} (a file "
            "without train/test splits keeps each input once, so that no test input is also a train input)"]


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


VALIDATION_NAMES = ("validation", "valid", "dev")
VALIDATION_FRACTION = 0.1  # of the train split, when validation is carved from it (capped, at least 1)


def carved_validation(n_train: int, n_validation: int | None, cap: int) -> int:
    """Validation rows carved from `n_train` train rows: `n_validation` when given, else 10% capped at `cap`
    (at least 1); at least one row always stays for training (40 rows: 4 validation, 36 train)."""
    if n_train < 2:
        return 0
    want = max(1, min(cap, int(n_train * VALIDATION_FRACTION))) if n_validation is None else n_validation
    return min(want, n_train - 1)


def assemble(splits: dict[str, list[Example]], seed: int, n_train: int | None, n_validation: int | None,
             n_test: int | None, default_validation: int = 50) -> tuple[list, list, list]:
    """Official splits (train / validation|valid|dev / test), capped. Without an official validation
    split one is carved from the seed-shuffled train split (`carved_validation`: 10%, at most
    `default_validation`); a lone split is divided by `split`."""
    val_name = next((n for n in VALIDATION_NAMES if n in splits), None)
    if len(splits) == 1:
        pool = next(iter(splits.values()))
        return split(pool, seed, n_train, n_validation, n_test, len(pool) // 2, min(default_validation, len(pool) // 10))
    train = list(splits.get("train", []))
    if val_name is not None:
        val = splits[val_name][:n_validation]
    else:
        random.Random(seed).shuffle(train)
        n_va = carved_validation(len(train), n_validation, default_validation)
        val, train = train[:n_va], train[n_va:]
    test = splits.get("test", [])
    return train[:n_train], val, test[:n_test]
