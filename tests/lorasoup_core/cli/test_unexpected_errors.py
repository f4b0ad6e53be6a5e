"""An unexpected error in any command is one message and exit 1; the traceback only with --debug."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

LORASOUP = str(Path(sys.executable).parent / "lorasoup")


def _pool_list(tmp_path: Path, *pre: str) -> subprocess.CompletedProcess:
    # an MLflow URI scheme MLflow has no store for: MLflow raises deep inside the registry
    env = {**os.environ, "LORASOUP_HOME": str(tmp_path), "MLFLOW_TRACKING_URI": "bogus://nowhere", "COLUMNS": "200"}
    env.pop("LORASOUP_DEBUG", None)
    return subprocess.run([LORASOUP, *pre, "pool", "list"], capture_output=True, text=True, env=env, timeout=120)


def test_one_message_without_debug_and_the_traceback_with_it(tmp_path):
    plain = _pool_list(tmp_path)
    shown = f"exit {plain.returncode}\nstdout:\n{plain.stdout}\nstderr:\n{plain.stderr}"
    assert plain.returncode == 1, shown
    assert "Traceback" not in plain.stderr and "╭" not in plain.stderr, shown
    assert plain.stderr.startswith("error: ") and "unsupported URI 'bogus://nowhere'" in plain.stderr, shown
    assert "lorasoup --debug" in plain.stderr, shown

    debug = _pool_list(tmp_path, "--debug")
    shown = f"exit {debug.returncode}\nstdout:\n{debug.stdout}\nstderr:\n{debug.stderr}"
    assert debug.returncode == 1 and "Traceback" in debug.stderr, shown
    assert "UnsupportedModelRegistryStoreURIException" in debug.stderr, shown
