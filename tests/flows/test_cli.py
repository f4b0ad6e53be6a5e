"""`lorasoup run` and `lorasoup retrain` (flows/cli.py) as a user types them."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path


def _lorasoup(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run([str(Path(sys.executable).parent / "lorasoup"), *args], capture_output=True, text=True,
                          env=env, timeout=300)


def test_run_and_retrain_reject_a_bad_config_before_prefect_starts(tmp_path):
    """A missing or invalid config is one message and exit 2; Prefect (its API, its database) is never started."""
    from concurrent.futures import ThreadPoolExecutor

    env = {**os.environ, "PREFECT_HOME": str(tmp_path / "prefect-home")}
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\nmodel: {spec: tiny-llama}\npool: {tasks: [skills:add]}\n"
                   "targets: [{task: skills:count_then_add}]\nmethods: [nope]\n")
    demo = str(Path(__file__).parents[2] / "configs/demo.yaml")
    cases = {  # command line -> what stderr must say
        ("run", "--config", str(tmp_path / "none.yaml")): "config file not found",
        ("retrain", "--config", str(tmp_path / "none.yaml")): "config file not found",
        ("run", "--config", str(bad)): "unknown method 'nope'",
        ("retrain", "--config", str(bad)): "unknown method 'nope'",
        ("run", "--config", demo, "--set", "eval.limitt=3"): "eval.limitt: Extra inputs are not permitted",
        ("run", "--config", str(bad), "--variant", "docker"): "--variant docker needs --remote",
    }
    with ThreadPoolExecutor(2) as pool:  # independent processes, mostly imports: two at a time
        done = dict(zip(cases, pool.map(lambda args: _lorasoup(*args, env=env), cases), strict=True))
    for args, proc in done.items():
        shown = f"{' '.join(args)}\nexit {proc.returncode}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
        assert proc.returncode == 2 and cases[args] in proc.stderr, shown
        assert "Traceback" not in proc.stderr, shown
    assert not (tmp_path / "prefect-home").exists()
