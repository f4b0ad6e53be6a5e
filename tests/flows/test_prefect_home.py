"""A LORASOUP_HOME of its own gets a Prefect home of its own (database, result cache), unless PREFECT_HOME
is set: two homes never share one Prefect database."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
_PRINT_HOME = ("import sys; import importlib; importlib.import_module(sys.argv[1]); "
               "from prefect.settings import get_current_settings; print('HOME', get_current_settings().home)")


def _prefect_home(module: str, **env: str) -> str:
    full = {k: v for k, v in os.environ.items() if k not in ("PREFECT_HOME", "PREFECT_PROFILES_PATH")}
    out = subprocess.run([sys.executable, "-c", _PRINT_HOME, module], cwd=REPO, env={**full, **env},
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    return out.stdout.split("HOME ", 1)[1].strip()


def test_flows_give_prefect_a_home_inside_lorasoup_home(tmp_path):
    assert _prefect_home("flows.train_pool", LORASOUP_HOME=str(tmp_path / "a")) == str(tmp_path / "a" / "prefect")
    explicit = _prefect_home("flows.retrain_pool", LORASOUP_HOME=str(tmp_path / "a"), PREFECT_HOME=str(tmp_path / "p"))
    assert explicit == str(tmp_path / "p")  # an explicit setting wins


def test_use_prefect_home_needs_lorasoup_home_and_no_prefect_yet(tmp_path):
    code = ("import os, sys; from lorasoup_core.settings import use_prefect_home; "
            "print(use_prefect_home(), os.environ.get('PREFECT_HOME')); import prefect; print(use_prefect_home())")
    env = {k: v for k, v in os.environ.items() if k not in ("PREFECT_HOME", "LORASOUP_HOME")}
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0 and out.stdout.split() == ["None", "None", "None"], out.stdout + out.stderr
    fresh = tmp_path / "not-yet"  # a LORASOUP_HOME that does not exist yet: Prefect's database needs its dir
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, env={**env, "LORASOUP_HOME": str(fresh)},
                         capture_output=True, text=True, timeout=300)
    home = str(fresh / "prefect")
    assert out.returncode == 0 and out.stdout.split() == [home, home, "None"], out.stdout + out.stderr
    assert (fresh / "prefect").is_dir()
