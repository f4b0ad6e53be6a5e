"""benchmarks/routing_cost.py routes pools of the sizes asked for through the harness and prints one JSON object."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "routing_cost.py"


def test_prints_merged_and_routed_cost_per_example(tmp_path):
    env = {**os.environ, "LORASOUP_HOME": str(tmp_path / "home"), "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, str(SCRIPT), "--model", "tiny-llama", "--experts", "4,2", "--limit", "4",
                           "--repeats", "1", "--json"], capture_output=True, text=True, timeout=600, env=env)
    shown = f"exit {proc.returncode}\n--- stdout\n{proc.stdout[-3000:]}\n--- stderr\n{proc.stderr[-3000:]}"
    assert proc.returncode == 0, shown
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["merged_s_per_example"] > 0 and out["merged_setup_s"] > 0, shown
    assert [r["experts"] for r in out["routed"]] == [2, 4], shown
    assert all(r["routed_s_per_example"] > 0 and r["ratio_to_merged"] > 0 and r["setup_s"] > 0
               for r in out["routed"]), shown
