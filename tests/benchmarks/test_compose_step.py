"""benchmarks/compose_step.py picks candidates with the filter asked for and prints one JSON object (tiny model)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "compose_step.py"


def test_the_arrow_filter_picks_from_a_pool_without_examples(tmp_path):
    """The benchmark's pool is bare PEFT directories (no cards, no examples): only a filter that reads the
    weights can rank it; its prototypes go to a temp cache, not the user's."""
    env = {**os.environ, "LORASOUP_HOME": str(tmp_path / "home"), "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, str(SCRIPT), "--model", "tiny-llama", "--pool", "12", "--candidates", "4",
                           "--budget", "3", "--repeats", "2", "--filter", "arrow", "--json"],
                          capture_output=True, text=True, timeout=600, env=env)
    shown = f"exit {proc.returncode}\n--- stdout\n{proc.stdout[-3000:]}\n--- stderr\n{proc.stderr[-3000:]}"
    assert proc.returncode == 0, shown
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["filter"] == "arrow" and out["pool"] == 12 and out["candidates"] == 4, shown
    assert out["select_s"] > 0 and out["select_cached_s"] > 0, shown
    assert not (tmp_path / "home" / "cache").exists(), shown
