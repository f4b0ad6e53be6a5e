"""Publish cleans up after itself on failure and never publishes what lies outside the directory."""

import os
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from lorasoup_core.cli.store import app
from lorasoup_core.storage import ArtifactStore, StoreError

runner = CliRunner()


def source(tmp_path: Path) -> Path:
    src = tmp_path / "src"
    (src / "data").mkdir(parents=True)
    for i in range(5):
        (src / f"w{i}.bin").write_bytes(os.urandom(4096))
    return src


def staged(store_root: Path) -> list[Path]:
    return list((store_root / ".staging").glob("*")) if (store_root / ".staging").exists() else []


@pytest.fixture(params=["file", "memory"])
def store(request, tmp_path):
    if request.param == "file":
        return ArtifactStore((tmp_path / "store").as_uri())
    return ArtifactStore(f"memory://lorasoup-{tmp_path.name}")


def test_a_dangling_symlink_is_named_and_nothing_is_staged(tmp_path):
    src = source(tmp_path)
    (src / "data" / "examples.jsonl").symlink_to(tmp_path / "gone.jsonl")
    result = runner.invoke(app, ["publish", str(src), "adapters/x/v1", "--uri", (tmp_path / "store").as_uri()])
    assert result.exit_code != 0, result.output
    assert "data/examples.jsonl" in result.output and "dangling" in result.output, result.output
    assert staged(tmp_path / "store") == []
    assert ArtifactStore((tmp_path / "store").as_uri()).list() == []


def test_a_symlink_out_of_the_directory_is_refused(store, tmp_path):
    src = source(tmp_path)
    private = tmp_path / "private" / "examples.jsonl"
    private.parent.mkdir()
    private.write_text('{"secret": 1}\n')
    (src / "examples.jsonl").symlink_to(private)
    with pytest.raises(StoreError, match=r"examples\.jsonl.*outside"):
        store.publish(src, "adapters/x/v1")
    assert not store.exists("adapters/x/v1")
    (src / "examples.jsonl").unlink()
    (src / "data").rmdir()
    (src / "data").symlink_to(private.parent, target_is_directory=True)  # a linked directory, too
    with pytest.raises(StoreError, match=r"'data'.*outside"):
        store.publish(src, "adapters/x/v1")
    assert not store.exists("adapters/x/v1")


def test_a_symlink_inside_the_directory_publishes_its_content(store, tmp_path):
    src = source(tmp_path)
    (src / "alias.bin").symlink_to("w0.bin")
    art = store.publish(src, "adapters/x/v1")
    assert art.files["alias.bin"] == art.files["w0.bin"]
    out = store.download("adapters/x/v1", tmp_path / "out")
    assert (out / "alias.bin").read_bytes() == (src / "w0.bin").read_bytes()


def test_a_failure_while_staging_removes_the_staged_copy(tmp_path, monkeypatch):
    src = source(tmp_path)
    store = ArtifactStore((tmp_path / "store").as_uri())
    calls = []

    def failing_copy(a, b, *args, **kwargs):
        calls.append(a)
        if len(calls) == 3:
            raise OSError(28, "No space left on device", str(b))
        return real_copy(a, b, *args, **kwargs)

    real_copy = shutil.copy2
    monkeypatch.setattr(shutil, "copy2", failing_copy)
    with pytest.raises(StoreError, match="No space left on device"):
        store.publish(src, "adapters/x/v1")
    assert len(calls) == 3 and staged(tmp_path / "store") == [] and store.uncommitted() == []
