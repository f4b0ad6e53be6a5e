"""Two writers on one registry and store: they converge on one version, never replace each other's
committed files, open a fresh tracking database together, and `store clean` leaves young leftovers alone."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from lorasoup_core.adapters import CARD_FILE, AdapterCard
from lorasoup_core.registry import AdapterRegistry
from lorasoup_core.storage import MANIFEST, journal, open_store

REPO = Path(__file__).resolve().parents[3]


def _registry(tmp_path) -> AdapterRegistry:
    return AdapterRegistry(tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}",
                           store=open_store((tmp_path / "store").as_uri()))


def _training_copy(src: Path, dest: Path, created_at: str) -> Path:
    """The same adapter (same fingerprints) trained again: other bytes (here: the card's time)."""
    shutil.copytree(src, dest)
    card = AdapterCard.read(dest).model_copy(update={"created_at": created_at})
    card.write(dest)
    return dest


def test_two_writers_of_one_adapter_converge_on_one_version_and_keep_the_files(tmp_path, tiny_pool):
    """A publishes, and before A creates its version B registers the same adapter (other bytes): B must
    reuse A's committed artifact, not delete and replace it under A; A must not add a second version."""
    a_dir = _training_copy(tiny_pool["add"], tmp_path / "a", "2030-01-01T00:00:00+00:00")
    b_dir = _training_copy(tiny_pool["add"], tmp_path / "b", "2030-01-02T00:00:00+00:00")
    reg_a, reg_b = _registry(tmp_path), _registry(tmp_path)
    create = reg_a.client.create_model_version
    b_versions = []

    def b_registers_first(*args, **kwargs):
        if not b_versions:
            b_versions.append(reg_b.register(AdapterCard.read(b_dir), b_dir, decide_champion=True))
        return create(*args, **kwargs)

    reg_a.client.create_model_version = b_registers_first
    a_version = reg_a.register(AdapterCard.read(a_dir), a_dir, decide_champion=True)
    [b_version] = b_versions
    versions = reg_a.list()
    assert [v.ref for v in versions] == [a_version.ref] == [b_version.ref]
    got = reg_a.download(versions[0], tmp_path / "dl")  # verified against the manifest: intact
    assert (got / CARD_FILE).read_bytes() == (a_dir / CARD_FILE).read_bytes()  # A's files, not B's
    assert reg_a.get(f"{a_version.name}@champion").ref == a_version.ref
    assert reg_a.orphans() == []


def test_a_version_created_concurrently_is_deleted_again(tmp_path, tiny_pool):
    """Both writers missed each other's version (the find before creating ran before the other's
    create): the one created second is deleted and the first returned to both."""
    reg = _registry(tmp_path)
    card = AdapterCard.read(tiny_pool["add"])
    first = reg.register(card, tiny_pool["add"])
    real_find = reg.find
    calls = []

    def stale_find(*args):
        calls.append(args)
        return None if len(calls) == 1 else real_find(*args)  # the first look happened before `first`

    reg.find = stale_find
    again = reg.register(card, tiny_pool["add"])
    assert again.ref == first.ref and [v.ref for v in reg.list()] == [first.ref]
    assert reg.store.exists(card.store_key)


_OPEN_DB = """
import sys, time
from pathlib import Path
go = Path(sys.argv[2])
while not go.exists():
    time.sleep(0.01)
from lorasoup_core import tracking
tracking.client(sys.argv[1]).search_experiments()
tracking.experiment_id("shared", sys.argv[1])
print("OK", flush=True)
"""


def test_processes_opening_a_fresh_database_together_all_succeed(tmp_path):
    """MLflow migrates a fresh sqlite database on first open, unlocked: concurrent first opens crashed
    with `duplicate column name` / `table ... already exists`."""
    uri = f"sqlite:///{tmp_path / 'fresh' / 'mlflow.db'}"
    go = tmp_path / "go"
    procs = [subprocess.Popen([sys.executable, "-c", _OPEN_DB, uri, str(go)], cwd=REPO, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True) for _ in range(3)]
    time.sleep(3)  # all three imported and waiting
    go.touch()
    outputs = [p.communicate(timeout=300)[0] for p in procs]
    for p, out in zip(procs, outputs, strict=True):
        assert p.returncode == 0 and "OK" in out, out[-3000:]


# -- store clean --------------------------------------------------------------------------------------
def _upload_without_manifest(store, key: str, src: Path) -> None:
    """A publish in progress (or killed): recorded in the journal, files uploaded, the manifest (the
    commit) not yet written."""
    files = sorted(f.name for f in src.iterdir())
    journal.begin(store, journal.Record(journal.new_id(), key, [*files, MANIFEST]))
    for name in files:
        store.fs.put_file(str(src / name), f"{store.path(key)}/{name}")


@pytest.mark.slow
def test_clean_on_s3_leaves_an_upload_in_progress_alone(tmp_path, tiny_pool, s3_bucket, monkeypatch):
    store = open_store(f"s3://{s3_bucket}/lorasoup")
    store.publish(tiny_pool["double"], "adapters/other/v1")  # marks the store
    key = "adapters/tiny-llama/add/in-progress"
    _upload_without_manifest(store, key, tiny_pool["add"])
    assert store.uncommitted(min_age_s=0) == [key]
    assert store.uncommitted() == [] and store.clean_uncommitted() == []  # default: younger than 60 min
    # the publisher commits: every file is still there
    art = store.publish(tiny_pool["add"], key)
    assert store.download(key, tmp_path / "dl") and art.files
    leftover = "adapters/tiny-llama/add/killed"
    _upload_without_manifest(store, leftover, tiny_pool["add"])
    time.sleep(1.5)
    monkeypatch.setenv("LORASOUP_CLEAN_MIN_AGE", "0.01")  # 0.6 s
    store.fs.invalidate_cache()
    assert store.clean_uncommitted() == [leftover] and store.uncommitted(min_age_s=0) == []
    assert store.list() == ["adapters/other/v1", key]


def test_clean_on_a_local_store_keeps_young_staging_and_removes_old(tmp_path, tiny_pool):
    from typer.testing import CliRunner

    from lorasoup_core.cli import app

    store = open_store((tmp_path / "store").as_uri())
    store.publish(tiny_pool["add"], "adapters/a/v1")
    hours_ago = time.time() - 2 * 3600
    staged = {}
    for name in ("young", "old"):  # two killed local publishes: a record, then a staging directory
        rid = f"{name}{journal.new_id()[:8]}"
        record = journal.begin(store, journal.Record(rid, f"adapters/{name}/v1", ["adapter_model.safetensors"],
                                                     staging=f".staging/{rid}"))
        staged[name] = tmp_path / "store" / ".staging" / rid
        staged[name].mkdir(parents=True)
        (staged[name] / "adapter_model.safetensors").write_bytes(b"x")
        if name == "old":
            for path in (record, staged[name] / "adapter_model.safetensors"):
                os.utime(path, (hours_ago, hours_ago))
    young, old = staged["young"], staged["old"]
    dry = CliRunner().invoke(app, ["store", "clean", "--dry-run", "--uri", store.uri])
    assert dry.exit_code == 0 and f".staging/{old.name}" in dry.output and young.name not in dry.output, dry.output
    assert store.clean_uncommitted() == [f".staging/{old.name}"]
    assert young.is_dir() and not old.exists() and (tmp_path / "store" / "adapters/a/v1" / MANIFEST).is_file()
    assert store.clean_uncommitted(min_age_s=0) == [f".staging/{young.name}"]
    assert not any((tmp_path / "store" / ".pending").iterdir())  # the records went with what they named
