"""Two teammates on one home, store and tracking database: each adapter is trained and registered once,
staging directories are process-unique, and what a killed process left is cleaned up by the next run."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from lorasoup_core.adapters import CARD_FILE, TrainingConfig
from lorasoup_core.data import load_task
from lorasoup_core.pool import ensure as ensure_mod
from lorasoup_core.pool import ensure_adapter
from lorasoup_core.registry import AdapterRegistry
from lorasoup_core.tracking import RunContext

REPO = Path(__file__).resolve().parents[3]
TRAINING = TrainingConfig(steps=3, lr=1e-2, batch_size=8, max_validation=4)


def _harness():
    import importlib.util

    spec = importlib.util.spec_from_file_location("fault_injection", REPO / "benchmarks" / "fault_injection.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def test_two_pool_trains_at_once_on_a_fresh_home_train_each_adapter_once(tmp_path):
    """Two `lorasoup pool train` started together: both succeed (the fresh MLflow database is migrated
    once), every adapter is trained once (the second waits, then finds it), one version each, files intact."""
    result = _harness().run_point("concurrent", tmp_path, n_tasks=2, steps=3)
    assert result["ok"], json.dumps(result, indent=1)
    assert result["exit_codes"] == [0, 0] and result["trainings"] == 2 and result["duplicates"] == 0


@pytest.mark.slow
def test_two_pool_trains_at_once_on_a_tracking_server_and_s3_train_each_adapter_once(tmp_path, mlflow_server,
                                                                                      s3_bucket):
    """The same race on a team's set-up: a real `mlflow server` and an S3 store (moto). The file lock
    lives in the shared home; registration re-checks the server's registry."""
    result = _harness().run_point("concurrent", tmp_path, n_tasks=2, steps=3, store=f"s3://{s3_bucket}/lorasoup",
                                  tracking=mlflow_server)
    assert result["ok"], json.dumps(result, indent=1)
    assert result["exit_codes"] == [0, 0] and result["trainings"] == 2 and result["duplicates"] == 0
    assert result["broken"] == 0 and result["orphans"] == 0


def _task(task_dirs, name="length"):
    return load_task({"source": "jsonl", "name": name, "path": str(task_dirs[name])})


def test_a_training_finished_by_another_process_is_never_deleted(tmp_path, tiny_llama, task_dirs, registry,
                                                                 monkeypatch):
    """Trainings write into process-unique staging dirs renamed into place; when another process (here
    simulated inside train_lora) completed the same work dir first, its files stay and are registered."""
    real = ensure_mod.train_lora
    staged = []

    def racing_train(base, task, training, out_dir, **kwargs):
        staged.append(Path(out_dir))
        other = ensure_mod._work_dir(base, task, training)
        real(base, task, training, other.with_name("other"), **kwargs)  # the other process's training
        (other.with_name("other") / "other.txt").write_text("theirs")
        os.rename(other.with_name("other"), other)
        return real(base, task, training, out_dir, **kwargs)

    monkeypatch.setattr(ensure_mod, "train_lora", racing_train)
    ensured = ensure_adapter(tiny_llama, _task(task_dirs), TRAINING, registry,
                             RunContext("pool-race", registry.client.tracking_uri), embed_examples=0, progress=False)
    [stage] = staged
    assert f"@{socket.gethostname()}@{os.getpid()}:" in stage.name and ".partial-" in stage.name
    assert not stage.exists()  # the losing copy is gone
    out = ensure_mod._work_dir(tiny_llama, _task(task_dirs), TRAINING)
    assert (out / "other.txt").read_text() == "theirs" and (out / CARD_FILE).is_file()
    [version] = registry.list()
    assert ensured.version.ref == version.ref
    assert (registry.download(version, tmp_path / "dl") / "other.txt").read_text() == "theirs"


def test_stale_staging_dirs_of_dead_processes_are_removed(tmp_path, monkeypatch):
    from lorasoup_core.settings import process_token

    monkeypatch.setenv("LORASOUP_HOME", str(tmp_path / "home"))
    work = tmp_path / "home" / "work" / "trained" / "abc"
    work.mkdir(parents=True)
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    host = socket.gethostname()
    mine = work / f"t-1-2.partial-aaa@{host}@{process_token()}"
    gone = work / f"t-1-2.partial-bbb@{host}@{dead.pid}:12.00"
    reused_pid = work / f"t-1-2.partial-ccc@{host}@{os.getpid()}:1.00"  # this pid, an earlier process
    elsewhere = work / f"t-1-2.partial-ddd@another-host@{dead.pid}:12.00"
    legacy = work / "t-1-2.partial-eee"
    finished = work / "t-1-2"
    for d in (mine, gone, reused_pid, elsewhere, legacy, finished):
        d.mkdir()
        (d / "f").write_text("x")
    removed = ensure_mod.clean_stale_work()
    assert sorted(p.name for p in removed) == sorted([gone.name, reused_pid.name])
    assert mine.is_dir() and elsewhere.is_dir() and legacy.is_dir() and finished.is_dir()
    monkeypatch.setenv("LORASOUP_CLEAN_MIN_AGE", "0")  # an owner-less leftover goes once old enough
    assert ensure_mod.clean_stale_work() == [legacy]


_KILLED_RUN = """
import os, signal, sys
from lorasoup_core import tracking
print(tracking.start_run("pool-stale", "train x", tracking_uri=sys.argv[1]), flush=True)
os.kill(os.getpid(), signal.SIGKILL)
"""


def test_runs_of_killed_processes_are_marked_killed_by_the_next_plan(tmp_path, tiny_llama, task_dirs, registry):
    uri = registry.client.tracking_uri
    child = subprocess.run([sys.executable, "-c", _KILLED_RUN, uri], capture_output=True, text=True, cwd=REPO)
    assert child.returncode == -9, child.stdout + child.stderr
    stale = child.stdout.strip()
    from lorasoup_core import tracking

    live = tracking.start_run("pool-stale", "this process", tracking_uri=uri)
    assert registry.client.get_run(stale).info.status == "RUNNING"
    pool = ensure_mod.PoolConfig(training=TRAINING, embed_examples=0,
                                 tasks=[{"source": "jsonl", "name": "length", "path": str(task_dirs["length"])}])
    ensure_mod.plan_pool(pool, tiny_llama, registry, RunContext("pool-stale", uri))
    assert registry.client.get_run(stale).info.status == "KILLED"
    assert registry.client.get_run(live).info.status == "RUNNING"


def test_a_champion_decision_cut_short_is_made_by_the_rerun(tiny_llama, task_dirs, registry, monkeypatch):
    """A run dies after creating the version but before moving `champion`: the rerun (which finds the
    version and trains nothing) moves it."""
    task = _task(task_dirs)
    run = RunContext("pool-champion", registry.client.tracking_uri)

    def dies(self, version, *args, **kwargs):
        raise KeyboardInterrupt("killed before the champion update")

    monkeypatch.setattr(AdapterRegistry, "set_champion_if_better", dies)
    with pytest.raises(KeyboardInterrupt):
        ensure_adapter(tiny_llama, task, TRAINING, registry, run, embed_examples=0, progress=False)
    monkeypatch.undo()
    [version] = registry.list()
    assert "champion" not in version.aliases
    again = ensure_adapter(tiny_llama, task, TRAINING, registry, run, embed_examples=0, progress=False)
    assert not again.trained and again.version.ref == version.ref
    assert registry.get(f"{version.name}@champion").ref == version.ref


def test_an_artifact_published_by_a_killed_run_is_registered_not_retrained(tmp_path, tiny_llama, task_dirs,
                                                                          registry, monkeypatch):
    """Killed between publishing and creating the version (and the local work dir lost): the committed
    artifact is an orphan the registry names, and the rerun registers it without training."""
    from lorasoup_core.adapters import AdapterCard, train_lora

    task = _task(task_dirs)
    trained = train_lora(tiny_llama, task, TRAINING, tmp_path / "trained", progress=False, embed_examples=0)
    registry.store.publish(tmp_path / "trained", trained.store_key, metadata={"card": trained.name})
    assert registry.orphans() == [trained.store_key]

    def no_training(*args, **kwargs):
        raise AssertionError("a published adapter was trained again")

    monkeypatch.setattr(ensure_mod, "train_lora", no_training)
    ensured = ensure_adapter(tiny_llama, task, TRAINING, registry, RunContext("pool-adopt", registry.client.tracking_uri),
                             embed_examples=0, progress=False)
    assert ensured.adopted and ensured.trained
    assert registry.orphans() == [] and [v.ref for v in registry.list()] == [ensured.version.ref]
    assert "champion" in ensured.version.aliases
    assert AdapterCard.read(registry.download(ensured.version, tmp_path / "dl")).created_at == trained.created_at
