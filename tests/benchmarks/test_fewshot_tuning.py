"""benchmarks/fewshot_tuning.py prints one JSON object with each baseline's choice and cost (tiny model)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from lorasoup_core.methods import settings_for

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "fewshot_tuning.py"


def test_prints_the_choice_and_cost_as_json():
    proc = subprocess.run([sys.executable, str(SCRIPT), "--model", "tiny-llama", "--methods", "lora-fewshot,ia3-fewshot",
                           "--json"], capture_output=True, text=True, timeout=600)
    shown = f"exit {proc.returncode}\n--- stdout\n{proc.stdout[-3000:]}\n--- stderr\n{proc.stderr[-3000:]}"
    assert proc.returncode == 0, shown
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    for name in ("lora-fewshot", "ia3-fewshot"):
        row, grid = out[name], settings_for(name)
        assert row["folds"] == 2 and row["trainable_params"] > 0, shown
        assert row["lr"] in grid.lrs and row["steps"] in grid.steps, shown  # a point of the method's own grid
        assert row["optimizer_steps"] == 2 * len(grid.lrs) * max(grid.steps) + row["steps"], shown
