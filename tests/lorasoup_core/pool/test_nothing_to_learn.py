"""A pool task with nothing to learn (every target empty, or no train example left) fails when the pool's
data is read, naming the file, before any task trains: it used to train and register as `latest`."""

from __future__ import annotations

import json

import pytest

from lorasoup_core.adapters import TrainingConfig
from lorasoup_core.data import DataError
from lorasoup_core.pool import PoolConfig, ensure_pool
from lorasoup_core.tracking import RunContext


def _file(path, rows):
    path.write_text("".join(json.dumps({"input": x, "target": t}) + "\n" for x, t in rows))
    return path


@pytest.mark.parametrize(("rows", "message"), [
    ([(f"word {i}", "") for i in range(12)], r"task 'blank': all \d+ train examples have an empty target"),
    ([("same", str(i)) for i in range(20)], r"task 'blank' has no train examples; 19 of 20 rows of .*blank\.jsonl "
                                            r"were dropped as duplicates of one input"),
])
def test_refused_before_anything_trains(tmp_path, tiny_llama, task_dirs, registry, rows, message):
    blank = _file(tmp_path / "blank.jsonl", rows)
    pool = PoolConfig(training=TrainingConfig(steps=2, batch_size=4, max_validation=2), embed_examples=0,
                      tasks=[{"source": "jsonl", "name": "length", "path": str(task_dirs["length"])},
                             {"source": "jsonl", "name": "blank", "path": str(blank)}])
    with pytest.raises(DataError, match=message) as err:
        ensure_pool(pool, tiny_llama, registry, RunContext("blank", registry.client.tracking_uri), progress=False)
    assert str(err.value).startswith(f"{blank}: ") and "\n" not in str(err.value)
    assert registry.list() == []  # not even the good task was trained first
