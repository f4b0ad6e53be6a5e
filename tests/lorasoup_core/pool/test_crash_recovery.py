"""benchmarks/fault_injection.py on a one-task tiny pool: `lorasoup pool train` killed with SIGKILL at each
named point, then run again, leaves no retrained adapter, no duplicate version, no orphan artifact, no
run left RUNNING, no staging dir, and a champion. The children's output is in the failure message."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

HARNESS = Path(__file__).resolve().parents[3] / "benchmarks" / "fault_injection.py"


def harness():
    spec = importlib.util.spec_from_file_location("fault_injection", HARNESS)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
@pytest.mark.parametrize("point", harness().POINTS)
def test_pool_train_killed_at_a_point_then_rerun(point, tmp_path):
    result = harness().run_point(point, tmp_path, n_tasks=1, steps=3)
    assert result["ok"], json.dumps(result, indent=1)
    assert result["exit_codes"] == [-9, 0] and result["retrained_finished"] == 0
    assert result["killed_runs"] == 1  # the killed run's MLflow run, marked by the rerun
    if point == "mid-train":  # unfinished: the rerun trains it
        assert result["done_before"] == [] and result["trainings"] == 1
    else:
        assert result["done_before"] == ["first_letter"] and result["trainings"] == 0


def test_the_harness_rejects_unknown_points(capsys):
    with pytest.raises(SystemExit):
        harness().main(["--points", "nowhere"])
    assert "unknown points" in capsys.readouterr().err
