"""A file split by seed keeps each input once; how many rows that dropped travels with the task, so a task
left without train examples says why (the message train_lora gives: tests/lorasoup_core/adapters)."""

from __future__ import annotations

import json

from lorasoup_core.data import load_task


def _write(path, inputs):
    path.write_text("".join(json.dumps({"input": x, "target": str(i)}) + "\n" for i, x in enumerate(inputs)))
    return path


def test_twenty_rows_of_one_input_are_counted(tmp_path):
    path = _write(tmp_path / "same.jsonl", ["same question"] * 20)
    task = load_task({"source": "jsonl", "name": "same", "path": str(path)})
    assert task.train == [] and len(task.test) == 1
    assert task.notes == [f"19 of 20 rows of {path} were dropped as duplicates of one input (a file without "
                          "train/test splits keeps each input once, so that no test input is also a train input)"]


def test_several_repeated_inputs_are_counted(tmp_path):
    path = _write(tmp_path / "some.jsonl", ["a", "a", "b", "b", "b", "c", "d", "e"])
    task = load_task({"source": "jsonl", "name": "some", "path": str(path)})
    assert task.notes[0].startswith(f"3 of 8 rows of {path} were dropped as duplicates of 2 inputs")


def test_distinct_inputs_and_split_files_add_no_note(tmp_path):
    path = _write(tmp_path / "fine.jsonl", [f"q{i}" for i in range(10)])
    assert load_task({"source": "jsonl", "name": "fine", "path": str(path)}).notes == []
    (tmp_path / "dir").mkdir()
    _write(tmp_path / "dir" / "train.jsonl", ["a", "a", "b"])
    _write(tmp_path / "dir" / "test.jsonl", ["c"])
    assert load_task({"source": "jsonl", "name": "dir", "path": str(tmp_path / "dir")}).notes == []
