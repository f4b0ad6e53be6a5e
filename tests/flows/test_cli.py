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
    env = {**os.environ, "PREFECT_HOME": str(tmp_path / "prefect-home")}
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\nmodel: {spec: tiny-llama}\npool: {tasks: [skills:add]}\n"
                   "targets: [{task: skills:count_then_add}]\nmethods: [nope]\n")
    for command in ("run", "retrain"):
        missing = _lorasoup(command, "--config", str(tmp_path / "none.yaml"), env=env)
        shown = f"stdout:\n{missing.stdout}\nstderr:\n{missing.stderr}"
        assert missing.returncode == 2 and "config file not found" in missing.stderr, shown
        invalid = _lorasoup(command, "--config", str(bad), env=env)
        shown = f"stdout:\n{invalid.stdout}\nstderr:\n{invalid.stderr}"
        assert invalid.returncode == 2 and "unknown composer 'nope'" in invalid.stderr, shown
        assert "Traceback" not in missing.stderr + invalid.stderr, shown
    typo = _lorasoup("run", "--config", str(Path(__file__).parents[2] / "configs/demo.yaml"), "--set",
                     "eval.limitt=3", env=env)
    shown = f"stdout:\n{typo.stdout}\nstderr:\n{typo.stderr}"
    assert typo.returncode == 2 and "eval.limitt: Extra inputs are not permitted" in typo.stderr, shown
    variant = _lorasoup("run", "--config", str(bad), "--variant", "docker", env=env)
    assert variant.returncode == 2 and "--variant docker needs --remote" in variant.stderr, variant.stderr
    assert not (tmp_path / "prefect-home").exists()
