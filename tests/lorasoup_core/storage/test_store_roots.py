"""`store ls` / `store clean` only walk a lorasoup store, and S3 problems are prompt, clear errors."""

import importlib.util
import json
import os
import subprocess
import sys
import time
import uuid

import pytest
from typer.testing import CliRunner

from lorasoup_core.cli.store import app
from lorasoup_core.storage import ArtifactStore, StoreError
from lorasoup_core.storage.backends import BACKENDS
from tests.conftest import REPO_ROOT as REPO

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


def _aged(root, rel: str, text: str = "mine", hours: float = 3) -> None:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    then = time.time() - hours * 3600
    os.utime(path, (then, then))


def test_a_directory_holding_files_is_never_adopted(tmp_path):
    mine = tmp_path / "mine"
    for rel in ("docs/notes.txt", "photo.jpg"):
        _aged(mine, rel)
    (mine / ".staging").mkdir()  # a staging directory alone does not make a store (older versions said so)
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "f.txt").write_text("x")
    store = ArtifactStore(mine.as_uri())
    with pytest.raises(StoreError, match=r"is not a lorasoup artifact store .* is not empty") as err:
        store.publish(tmp_path / "src", "reports/r1")
    assert str(mine) in str(err.value) and "\n" not in str(err.value)
    assert sorted(p.relative_to(mine).as_posix() for p in mine.rglob("*")) == [
        ".staging", "docs", "docs/notes.txt", "photo.jpg"]  # nothing written, nothing removed
    result = runner.invoke(app, ["clean", "--min-age", "0", "--uri", mine.as_uri()])
    assert result.exit_code == 2 and "not a lorasoup artifact store" in result.output, result.output
    assert (mine / "docs" / "notes.txt").read_text() == "mine" and (mine / "photo.jpg").is_file()


def test_clean_removes_only_what_the_store_recorded(tmp_path):
    """Files put into a store's root by anyone else (however old, whatever their names: a key's directory
    with no manifest, a staging directory) are not the store's: clean lists and removes none of them."""
    root = tmp_path / "store"
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "f.txt").write_text("x")
    store = ArtifactStore(root.as_uri())
    store.publish(tmp_path / "src", "reports/r1")
    foreign = ["docs/notes.txt", "photo.jpg", "adapters/base/task/abc/adapter_model.safetensors",
               ".staging/0123456789abcdef/f.txt", "reports/r1/extra.txt"]
    for rel in foreign:
        _aged(root, rel)
    dry = runner.invoke(app, ["clean", "--dry-run", "--min-age", "0", "--uri", store.uri])
    assert dry.exit_code == 0 and dry.output.strip() == "0 leftover(s) found", dry.output
    result = runner.invoke(app, ["clean", "--min-age", "0", "--uri", store.uri])
    assert result.exit_code == 0 and result.output.strip() == "0 leftover(s) removed", result.output
    assert all((root / rel).read_text() == "mine" for rel in foreign)
    assert store.list() == ["reports/r1"] and store.download("reports/r1", tmp_path / "dl")


def test_a_store_at_the_home_never_touches_its_tracking_database(tmp_path, monkeypatch):
    """The store root is LORASOUP_HOME itself, marked by an older version, the database hours old: clean
    leaves the database (and its registered versions) alone."""
    from mlflow.tracking import MlflowClient

    home = tmp_path / "home"
    home.mkdir()
    uri = f"sqlite:///{home / 'mlflow.db'}"
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    client.create_registered_model("lorasoup.tiny.add")
    (home / "_lorasoup_store.json").write_text('{"lorasoup": "artifact store", "layout": 1}')
    _aged(home, "work/trained/x/adapter_config.json")
    then = time.time() - 3 * 3600
    for path in home.rglob("*"):
        os.utime(path, (then, then))
    digest = (home / "mlflow.db").read_bytes()
    result = runner.invoke(app, ["clean", "--min-age", "0", "--uri", home.as_uri()])
    assert result.exit_code == 0 and result.output.strip() == "0 leftover(s) removed", result.output
    assert (home / "mlflow.db").read_bytes() == digest and (home / "work/trained/x/adapter_config.json").is_file()
    assert [m.name for m in MlflowClient(tracking_uri=uri, registry_uri=uri).search_registered_models()] == [
        "lorasoup.tiny.add"]


def test_a_store_made_before_the_marker_is_adopted_only_when_asked(tmp_path):
    store = ArtifactStore((tmp_path / "store").as_uri())
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "f.txt").write_text("x")
    store.publish(tmp_path / "src", "reports/r1")
    (tmp_path / "store" / "_lorasoup_store.json").unlink()  # as stores made before the marker existed
    with pytest.raises(StoreError, match="lorasoup store adopt"):
        store.list()
    result = runner.invoke(app, ["adopt", "--uri", store.uri])
    assert result.exit_code == 0 and "reports/r1" in result.output, result.output
    assert store.list() == ["reports/r1"]
    plain = tmp_path / "plain"
    _aged(plain, "notes.txt")
    result = runner.invoke(app, ["adopt", "--uri", plain.as_uri()])  # no committed artifact: not a store
    assert result.exit_code == 2 and "no committed artifact" in result.output, result.output
    assert not (plain / "_lorasoup_store.json").exists()


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
    spec = importlib.util.spec_from_file_location("fault_injection", REPO / "benchmarks" / "fault_injection.py")
    harness = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(harness)
    with harness.tarpit() as url:
        yield url


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
