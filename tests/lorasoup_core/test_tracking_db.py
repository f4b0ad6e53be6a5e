"""A first command killed (or interrupted) while MLflow creates the home's tracking database leaves a home
the next command works in; a database an older version left half made is moved aside when it holds
nothing, and refused with one line naming it when it holds data."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

LORASOUP = str(Path(sys.executable).parent / "lorasoup")

# SIGKILL inside MLflow's alembic migration, after its first revision (the tables of the initial schema
# exist, the migrations after it do not): where a Ctrl-C or kill -9 of a first command lands most often.
KILL_MID_MIGRATION = """
import os, signal, sys
from alembic.runtime import migration
step = migration.HeadMaintainer.update_to_step
def update_then_die(self, s):
    step(self, s)
    os.kill(os.getpid(), signal.SIGKILL)
migration.HeadMaintainer.update_to_step = update_then_die
if sys.argv[1] == "lorasoup":
    from lorasoup_core.cli import main
    sys.argv = ["lorasoup", "pool", "list"]
    main()
else:  # what an older lorasoup did: MLflow's own first open, in place
    from mlflow.tracking import MlflowClient
    MlflowClient(tracking_uri=sys.argv[1], registry_uri=sys.argv[1]).search_registered_models()
"""


def _env(home: Path, **extra: str) -> dict[str, str]:
    env = {**os.environ, "LORASOUP_HOME": str(home), **extra}
    for var in ("MLFLOW_TRACKING_URI", "LORASOUP_FAULT", "LORASOUP_DEBUG"):
        if var not in extra:
            env.pop(var, None)  # the home's own sqlite database
    return env


def _run(args: list[str], env: dict[str, str]) -> tuple[subprocess.CompletedProcess, str]:
    try:
        proc = subprocess.run(args, env=env, capture_output=True, text=True, timeout=180)
    except subprocess.TimeoutExpired as err:
        pytest.fail(f"{args} still running after 180 s:\n{err.stdout!r}\n{err.stderr!r}")
    return proc, f"{args[1:]} exit {proc.returncode}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"


def _pool_list(home: Path) -> tuple[subprocess.CompletedProcess, str]:
    return _run([LORASOUP, "pool", "list"], _env(home))


def _creating(home: Path) -> list[str]:
    return sorted(p.name for p in home.iterdir() if ".creating-" in p.name) if home.is_dir() else []


def _problems(proc: subprocess.CompletedProcess) -> list[str]:
    """stderr less MLflow's own INFO lines about creating tables."""
    return [line for line in proc.stderr.splitlines() if line.strip() and " INFO mlflow" not in line]


@pytest.mark.parametrize("kill", ["mid-migration", "fault-point"])
def test_a_first_command_killed_while_creating_the_database_leaves_a_home_that_works(tmp_path, kill):
    home = tmp_path / "home"
    home.mkdir()
    (home / ".mlflow.db.creating-notmine").write_text("x")  # not the pattern the opener makes: kept
    if kill == "mid-migration":
        first, shown = _run([sys.executable, "-c", KILL_MID_MIGRATION, "lorasoup"], _env(home))
    else:  # LORASOUP_FAULT: the tracking tables made, the registry's not yet checked, nothing renamed
        first, shown = _run([LORASOUP, "pool", "list"], _env(home, LORASOUP_FAULT="mid-tracking-db"))
    assert first.returncode == -signal.SIGKILL, shown
    assert not (home / "mlflow.db").exists(), shown  # a half-made database is never in place
    assert _creating(home) != [".mlflow.db.creating-notmine"], shown  # the killed creation's file is left

    second, shown = _pool_list(home)
    assert second.returncode == 0 and "no registered adapters match" in second.stdout, shown
    assert _problems(second) == [], shown
    assert _creating(home) == [".mlflow.db.creating-notmine"], shown  # leftovers gone, only those it made
    third, shown = _pool_list(home)
    assert third.returncode == 0, shown


def test_ctrl_c_while_creating_the_database_leaves_nothing_half_made(tmp_path, monkeypatch):
    """KeyboardInterrupt inside MLflow's migration: the temporary database goes, no database is in place."""
    from mlflow.store.db import utils

    from lorasoup_core import tracking

    def interrupted(engine):
        raise KeyboardInterrupt

    monkeypatch.setattr(utils, "_upgrade_db", interrupted)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    with pytest.raises(KeyboardInterrupt):
        tracking.client(uri)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mlflow.db.init.lock"]
    monkeypatch.undo()
    assert tracking.client(uri).search_experiments()  # made whole on the next open: the default experiment


def _half_made_by_an_older_version(home: Path) -> Path:
    home.mkdir(parents=True, exist_ok=True)
    db = home / "mlflow.db"
    proc, shown = _run([sys.executable, "-c", KILL_MID_MIGRATION, f"sqlite:///{db}"], _env(home))
    assert proc.returncode == -signal.SIGKILL and db.is_file(), shown
    return db


def test_a_half_made_database_without_data_is_moved_aside_and_made_afresh(tmp_path):
    home = tmp_path / "home"
    db = _half_made_by_an_older_version(home)
    before = db.read_bytes()

    proc, shown = _pool_list(home)
    assert proc.returncode == 0 and "no registered adapters match" in proc.stdout, shown
    warnings = _problems(proc)
    assert len(warnings) == 1 and warnings[0].startswith("warning: ") and str(db) in warnings[0], shown
    aside = [p for p in home.iterdir() if p.name.startswith("mlflow.db.broken-") and not p.name.endswith("journal")]
    assert len(aside) == 1 and aside[0].name in warnings[0], shown
    assert aside[0].read_bytes()[:100] == before[:100], shown  # the old file itself, kept (never deleted)
    again, shown = _pool_list(home)
    assert again.returncode == 0 and _problems(again) == [], shown  # repaired once, quiet afterwards


def test_a_half_made_database_holding_runs_is_left_alone_with_one_error_naming_it(tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    db = home / "mlflow.db"
    made, shown = _run([sys.executable, "-c", "import sys; from lorasoup_core import tracking; "
                        "print(tracking.start_run('kept', 'a run worth keeping', tracking_uri=sys.argv[1]))",
                        f"sqlite:///{db}"], _env(home))
    assert made.returncode == 0, shown
    run_id = made.stdout.split()[-1]
    with sqlite3.connect(db) as con:  # what a migration killed halfway leaves: no revision, a table missing
        con.execute("DROP TABLE alembic_version")
        con.execute("DROP TABLE webhooks")

    proc, shown = _pool_list(home)
    errors = _problems(proc)
    assert proc.returncode == 1 and len(errors) == 1, shown
    assert errors[0].startswith(f"error: MLflow database {db} ") and "holds runs" in errors[0], shown
    assert "Traceback" not in proc.stderr, shown
    assert [p.name for p in home.iterdir() if "broken" in p.name] == [], shown  # not moved
    with sqlite3.connect(db) as con:
        assert con.execute("SELECT run_uuid FROM runs").fetchall() == [(run_id,)]
