"""`store ls` / `store clean` only walk a lorasoup store, and S3 problems are prompt, clear errors."""

import json
import os
import socket
import subprocess
import sys
import threading
import time
import uuid

import pytest
from typer.testing import CliRunner

from lorasoup_core.cli.store import app
from lorasoup_core.storage import ArtifactStore, StoreError
from lorasoup_core.storage.backends import BACKENDS

runner = CliRunner()


def test_ls_and_clean_refuse_a_directory_that_is_not_a_store(tmp_path):
    home = tmp_path / "home"
    (home / "thesis" / "chapters").mkdir(parents=True)
    (home / "thesis" / "chapters" / "one.tex").write_text("mine")
    for args in (["ls"], ["clean"], ["clean", "--dry-run"]):
        result = runner.invoke(app, [*args, "--uri", home.as_uri()])
        assert result.exit_code != 0, (args, result.output)
        assert "not a lorasoup artifact store" in result.output and str(home) in result.output, result.output
    assert (home / "thesis" / "chapters" / "one.tex").read_text() == "mine"
    started = time.monotonic()
    result = runner.invoke(app, ["ls", "--uri", "file:///"])
    assert result.exit_code != 0 and "not a lorasoup artifact store" in result.output, result.output
    assert time.monotonic() - started < 5, "the check must not walk the filesystem"


def test_a_new_or_empty_root_is_an_empty_store_and_publish_marks_it(tmp_path):
    assert ArtifactStore((tmp_path / "new").as_uri()).list() == []
    (tmp_path / "empty").mkdir()
    store = ArtifactStore((tmp_path / "empty").as_uri())
    assert store.list() == [] and store.uncommitted() == []
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "f.txt").write_text("x")
    store.publish(tmp_path / "src", "reports/r1")
    result = runner.invoke(app, ["ls", "--store", store.uri, "--json"])
    assert result.exit_code == 0, result.output
    (row,) = json.loads(result.output)
    assert (row["key"], row["files"], row["sha256"]) == ("reports/r1", 1, store.manifest("reports/r1").sha256)
    table = runner.invoke(app, ["ls", "--uri", store.uri])  # --uri: the same option's other name
    assert table.exit_code == 0 and "reports/r1" in table.output and "sha256" in table.output
    assert store.uncommitted() == []  # the marker is not a leftover
    with pytest.raises(StoreError, match="reserved"):
        store.publish(tmp_path / "src", "_lorasoup_store.json")


def test_a_local_store_from_an_older_version_is_still_recognised(tmp_path):
    store = ArtifactStore((tmp_path / "store").as_uri())
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "f.txt").write_text("x")
    store.publish(tmp_path / "src", "reports/r1")
    (tmp_path / "store" / "_lorasoup_store.json").unlink()  # older stores had only .staging/
    assert store.list() == ["reports/r1"]


def test_a_missing_bucket_is_an_error_naming_it(moto_server, s3_bucket):
    missing = f"lorasoup-missing-{uuid.uuid4().hex[:8]}"
    with pytest.raises(StoreError, match=f"bucket '{missing}' does not exist"):
        ArtifactStore(f"s3://{missing}/p").list()
    result = runner.invoke(app, ["ls", "--uri", f"s3://{missing}/p"])
    assert result.exit_code != 0 and f"'{missing}'" in result.output, result.output
    assert ArtifactStore(f"s3://{s3_bucket}/p").list() == []  # an existing, empty bucket is an empty store


@pytest.fixture
def tarpit():
    """An S3 'endpoint' on 127.0.0.1 that accepts connections and never answers."""
    server = socket.create_server(("127.0.0.1", 0))
    held, stop = [], threading.Event()

    def accept():
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                held.append(server.accept()[0])
            except TimeoutError:
                continue
            except OSError:
                return

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.getsockname()[1]}"
    stop.set()
    thread.join()
    for conn in held:
        conn.close()
    server.close()


def test_an_endpoint_that_never_answers_fails_ls_promptly(tarpit):
    env = {**os.environ, "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
           "AWS_DEFAULT_REGION": "us-east-1", "LORASOUP_S3_ENDPOINT_URL": tarpit, "LORASOUP_S3_TIMEOUT": "2"}
    started = time.monotonic()
    try:
        proc = subprocess.run([sys.executable, "-c", "from lorasoup_core.cli import app; app()", "store", "ls",
                               "--uri", "s3://lorasoup-tarpit/p"], env=env, capture_output=True, text=True,
                              timeout=90)
    except subprocess.TimeoutExpired as err:
        pytest.fail(f"store ls still hanging after 90 s; output so far:\n{err.stdout}\n{err.stderr}")
    elapsed = time.monotonic() - started
    output = f"exit {proc.returncode} after {elapsed:.1f} s\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
    assert proc.returncode != 0, output
    assert elapsed < 15, output  # two attempts of 2 s each, plus interpreter start-up
    errors = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(errors) == 1 and tarpit in errors[0] and "Traceback" not in proc.stderr, output


def test_s3_client_timeouts_and_retries_are_bounded(monkeypatch):
    monkeypatch.delenv("LORASOUP_S3_TIMEOUT", raising=False)
    fs, _ = BACKENDS.get("s3")("bucket/p")
    assert fs.config_kwargs["connect_timeout"] == fs.config_kwargs["read_timeout"] == 10
    assert fs.config_kwargs["retries"]["total_max_attempts"] == 2 and fs.retries == 1  # worst case 2 × 10 s
    monkeypatch.setenv("LORASOUP_S3_TIMEOUT", "3.5")
    assert BACKENDS.get("s3")("bucket/p")[0].config_kwargs["read_timeout"] == 3.5
    monkeypatch.setenv("LORASOUP_S3_TIMEOUT", "soon")
    with pytest.raises(ValueError, match="LORASOUP_S3_TIMEOUT"):
        BACKENDS.get("s3")("bucket/p")
    result = runner.invoke(app, ["ls", "--uri", "s3://bucket/p"])
    assert result.exit_code != 0 and "LORASOUP_S3_TIMEOUT" in result.output, result.output


def test_check_reachable_refuses_a_local_root_that_cannot_be_created(tmp_path):
    """The preflight probe of a local store: a root whose nearest existing parent is a file (or not
    writable) is refused naming the store; a root still to be created under a writable directory passes."""
    from lorasoup_core.storage import open_store

    (tmp_path / "a-file").write_text("not a directory")
    with pytest.raises(StoreError, match=r"store file://.*a-file/store: .*a-file is not a writable directory"):
        open_store((tmp_path / "a-file" / "store").as_uri()).check_reachable()
    open_store((tmp_path / "new" / "store").as_uri()).check_reachable()
    assert not (tmp_path / "new").exists()  # a probe creates nothing
