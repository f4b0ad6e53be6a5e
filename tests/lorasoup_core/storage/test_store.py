import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from lorasoup_core.fingerprint import sha256_file
from lorasoup_core.storage import MANIFEST, ArtifactNotFound, ArtifactStore, StoreError, fetch, open_store


def make_dir(root: Path, n_files: int = 3, size: int = 100) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "sub").mkdir(exist_ok=True)
    for i in range(n_files):
        (root / ("sub" if i % 2 else ".") / f"f{i}.bin").write_bytes(os.urandom(size))
    return root


@pytest.fixture(params=["file", "memory", "s3"])
def store(request, tmp_path):
    if request.param == "file":
        return ArtifactStore((tmp_path / "store").as_uri())
    if request.param == "memory":
        return ArtifactStore(f"memory://lorasoup-{tmp_path.name}")
    bucket = request.getfixturevalue("s3_bucket")
    return ArtifactStore(f"s3://{bucket}/prefix")


def test_round_trip_with_fingerprints(store, tmp_path):
    src = make_dir(tmp_path / "src")
    art = store.publish(src, "adapters/add/abc123", metadata={"task": "add"})
    assert art.uri == store.uri_for("adapters/add/abc123")
    assert store.exists("adapters/add/abc123")
    assert store.list() == ["adapters/add/abc123"] and store.list("adapters/add") == ["adapters/add/abc123"]
    assert set(art.files) == {"f0.bin", "sub/f1.bin", "f2.bin"}
    assert art.files["f0.bin"] == sha256_file(src / "f0.bin")
    assert store.manifest("adapters/add/abc123").metadata == {"task": "add"}
    out = fetch(art.uri, tmp_path / "out")  # by the artifact's own URI, as the registry records it
    for rel in art.files:
        assert (out / rel).read_bytes() == (src / rel).read_bytes()
    assert not (out / MANIFEST).exists()
    # Same content again: a no-op returning the committed manifest; other content: refused.
    assert store.publish(src, "adapters/add/abc123").sha256 == art.sha256
    (src / "f0.bin").write_bytes(b"changed")
    with pytest.raises(StoreError, match="already committed with other content"):
        store.publish(src, "adapters/add/abc123")
    store.delete("adapters/add/abc123")
    assert not store.exists("adapters/add/abc123") and store.list() == []


def test_corrupted_file_fails_the_integrity_check(tmp_path):
    store = ArtifactStore((tmp_path / "store").as_uri())
    store.publish(make_dir(tmp_path / "src"), "reports/r1")
    (tmp_path / "store" / "reports" / "r1" / "f0.bin").write_bytes(b"tampered")
    with pytest.raises(StoreError, match="integrity check failed for .*reports/r1/f0.bin"):
        store.download("reports/r1", tmp_path / "out")
    assert not (tmp_path / "out").exists()  # nothing half-downloaded is left behind


def test_bad_uris_and_keys_are_clear_errors(tmp_path):
    with pytest.raises(KeyError, match="unknown storage scheme 'gopher'; known: file, memory, s3"):
        open_store("gopher://x")
    store = ArtifactStore((tmp_path / "s").as_uri())
    for key in ("../escape", "a/../b", "with space", ".staging/x"):
        with pytest.raises(StoreError, match="key"):
            store.publish(make_dir(tmp_path / "src"), key)
    with pytest.raises(ArtifactNotFound, match="no committed artifact at"):
        store.download("missing/key", tmp_path / "out")
    with pytest.raises(StoreError, match="not a directory"):
        store.publish(tmp_path / "nowhere", "x")
    (tmp_path / "empty").mkdir()
    with pytest.raises(StoreError, match="holds no files"):
        store.publish(tmp_path / "empty", "x")


def test_default_store_is_under_lorasoup_home(monkeypatch, tmp_path):
    monkeypatch.setenv("LORASOUP_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("LORASOUP_STORE", raising=False)
    assert open_store().uri == f"file://{(tmp_path / 'home' / 'artifacts').resolve().as_posix()}"


_CHILD = """
import sys
from lorasoup_core.storage import ArtifactStore
ArtifactStore(sys.argv[1]).publish(sys.argv[2], "adapters/big/v1")
print("PUBLISHED", flush=True)
"""


@pytest.mark.parametrize("backend", ["file", "s3"])
def test_publish_killed_in_the_middle_leaves_nothing_visible(backend, tmp_path, request):
    if backend == "file":
        uri = (tmp_path / "store").as_uri()
        # The staging directory appears as soon as copying starts.
        def started(store):
            return bool(list((tmp_path / "store").glob(".staging/*/*")))
        src = make_dir(tmp_path / "src", n_files=400, size=256 * 1024)
    else:
        uri = f"s3://{request.getfixturevalue('s3_bucket')}/p"
        def started(store):
            return bool(store.fs.find(f"{store.root}/adapters/big/v1"))
        src = make_dir(tmp_path / "src", n_files=200, size=64 * 1024)
    store = ArtifactStore(uri)
    child = subprocess.Popen([sys.executable, "-c", _CHILD, uri, str(src)], stdout=subprocess.PIPE,
                             env=os.environ.copy())
    deadline = time.monotonic() + 60
    while not started(store) and time.monotonic() < deadline and child.poll() is None:
        time.sleep(0.002)
    child.send_signal(signal.SIGKILL)
    child.wait()
    assert b"PUBLISHED" not in child.stdout.read(), "the publish finished before it could be killed"
    if backend == "s3":
        store.fs.invalidate_cache()
    assert not store.exists("adapters/big/v1")
    assert store.list() == []
    with pytest.raises(ArtifactNotFound):
        store.download("adapters/big/v1", tmp_path / "out")
    assert store.uncommitted(min_age_s=0), "the interrupted publish should have left staged files to clean"
    assert store.uncommitted() == []  # too young: another writer may still be uploading them
    store.clean_uncommitted(min_age_s=0)
    assert store.uncommitted(min_age_s=0) == []
    art = store.publish(src, "adapters/big/v1")  # a retry succeeds and commits
    assert store.list() == ["adapters/big/v1"] and len(art.files) == len(list(src.rglob("*.bin")))
