"""Ctrl-C in a library command (`lorasoup pool train`) ends it with exit 130 and one line saying what
stopped, not silently, not click's "Aborted!", never a traceback."""

from __future__ import annotations

import importlib.util
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[3]
LORASOUP = str(Path(sys.executable).parent / "lorasoup")


def _pool_config(root: Path, steps: int) -> Path:
    spec = importlib.util.spec_from_file_location("fault_injection", REPO / "benchmarks" / "fault_injection.py")
    harness = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(harness)
    return harness.make_pool(root, n_tasks=1, steps=steps)


@pytest.mark.slow
def test_ctrl_c_during_pool_train_ends_with_one_line_and_exit_130(tmp_path):
    config = _pool_config(tmp_path, steps=100_000)  # still training when interrupted
    env = {**os.environ, "LORASOUP_HOME": str(tmp_path / "home"), "OMP_NUM_THREADS": "1"}
    env.pop("LORASOUP_FAULT", None)
    # its own process group, SIGINT as in a terminal (a runner in the background passes SIG_IGN on)
    proc = subprocess.Popen([LORASOUP, "pool", "train", "--config", str(config)], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, start_new_session=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    out: dict[str, bytes] = {"stdout": b"", "stderr": b""}

    def read(name: str) -> None:
        while chunk := getattr(proc, name).read1(65536):
            out[name] += chunk

    readers = [threading.Thread(target=read, args=(name,), daemon=True) for name in out]
    for r in readers:
        r.start()

    def shown() -> str:
        return (f"exit {proc.returncode}\nstdout:\n{out['stdout'].decode(errors='replace')[-3000:]}\n"
                f"stderr:\n{out['stderr'].decode(errors='replace')[-3000:]}")

    try:
        deadline = time.monotonic() + 240
        while not re.search(rb"train first_letter:", out["stderr"]):  # the training's progress bar
            assert proc.poll() is None and time.monotonic() < deadline, f"no training seen:\n{shown()}"
            time.sleep(0.2)
        before = len(out["stderr"])
        os.killpg(proc.pid, signal.SIGINT)
        try:
            proc.wait(timeout=90)
        except subprocess.TimeoutExpired:
            pytest.fail(f"still running 90 s after Ctrl-C:\n{shown()}")
        for r in readers:
            r.join(timeout=10)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=30)

    after = out["stderr"][before:].decode(errors="replace").replace("\r", "\n")
    lines = [line for line in after.splitlines() if line.strip() and not line.startswith("train first_letter")]
    assert proc.returncode == 130, shown()
    assert lines == ["interrupted: pool train stopped; what finished is kept, run the same command to resume"], \
        shown()
