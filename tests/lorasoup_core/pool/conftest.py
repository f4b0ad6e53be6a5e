"""Tiny jsonl tasks (written per test, so a test can change one task's data) and a private registry."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lorasoup_core.registry import AdapterRegistry
from lorasoup_core.storage import open_store

WORDS = ["apple", "river", "stone", "cloud", "tiger", "lemon", "piano", "ocean", "maple", "zebra", "candle", "forest"]
ANSWERS = {"first_letter": lambda w: w[0], "last_letter": lambda w: w[-1], "length": lambda w: str(len(w))}


def write_task(root: Path, name: str, words: list[str] = WORDS) -> Path:
    """A jsonl task directory (train.jsonl + validation.jsonl) mapping each word to a short answer."""
    d = root / name
    d.mkdir(parents=True, exist_ok=True)
    rows = [json.dumps({"input": w, "target": ANSWERS[name](w)}) for w in words]
    (d / "train.jsonl").write_text("\n".join(rows * 2) + "\n")
    (d / "validation.jsonl").write_text("\n".join(rows[:8]) + "\n")
    return d


@pytest.fixture(name="write_task")
def write_task_fixture():
    """The task writer, for tests that change a task's data."""
    return write_task


@pytest.fixture
def task_dirs(tmp_path) -> dict[str, Path]:
    return {name: write_task(tmp_path / "data", name) for name in ANSWERS}


@pytest.fixture
def registry(tmp_path) -> AdapterRegistry:
    return AdapterRegistry(tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}",
                           store=open_store((tmp_path / "store").as_uri()))
