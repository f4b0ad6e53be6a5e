"""Downloads never delete or overwrite what they did not create, and never write outside DEST."""

import json
import os
from pathlib import Path

import pytest
from typer.testing import CliRunner

from lorasoup_core.cli.store import app
from lorasoup_core.fingerprint import sha256_bytes
from lorasoup_core.storage import MANIFEST, ArtifactStore, StoreError, fetch

runner = CliRunner()


def published(tmp_path: Path) -> tuple[ArtifactStore, str]:
    src = tmp_path / "src"
    (src / "sub").mkdir(parents=True)
    (src / "adapter_config.json").write_text("{}")
    (src / "sub" / "w.bin").write_bytes(os.urandom(64))
    store = ArtifactStore((tmp_path / "store").as_uri())
    return store, store.publish(src, "adapters/a/v1").uri


def leftovers(parent: Path) -> list[str]:
    return sorted(p.name for p in parent.iterdir() if p.name.startswith("."))


def test_get_refuses_a_non_empty_destination_and_deletes_nothing(tmp_path):
    _, uri = published(tmp_path)
    dest = tmp_path / "work"
    dest.mkdir()
    (dest / "thesis.txt").write_text("three years of work")
    result = runner.invoke(app, ["get", uri, str(dest)])
    assert result.exit_code != 0, result.output
    assert "not empty" in result.output and str(dest) in result.output, result.output
    assert sorted(p.name for p in dest.iterdir()) == ["thesis.txt"]
    assert (dest / "thesis.txt").read_text() == "three years of work"
    assert leftovers(tmp_path) == []
    # A file in the way is refused too, and left alone.
    (tmp_path / "afile").write_text("keep")
    with pytest.raises(StoreError, match="not a directory"):
        fetch(uri, tmp_path / "afile")
    assert (tmp_path / "afile").read_text() == "keep"


def test_get_into_dot_refuses_a_non_empty_cwd(tmp_path, monkeypatch):
    _, uri = published(tmp_path)
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    (cwd / "notes.md").write_text("mine")
    monkeypatch.chdir(cwd)
    result = runner.invoke(app, ["get", uri, "."])
    assert result.exit_code != 0, result.output
    assert "not empty" in result.output, result.output
    assert sorted(p.name for p in cwd.iterdir()) == ["notes.md"]


def test_get_into_an_empty_existing_directory_or_empty_cwd(tmp_path, monkeypatch):
    _, uri = published(tmp_path)
    empty = tmp_path / "empty"
    empty.mkdir()
    result = runner.invoke(app, ["get", uri, str(empty)])
    assert result.exit_code == 0, result.output
    assert (empty / "adapter_config.json").is_file() and (empty / "sub" / "w.bin").is_file()
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    result = runner.invoke(app, ["get", uri, "."])
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in cwd.iterdir()) == ["adapter_config.json", "sub"]
    assert leftovers(tmp_path) == [] and leftovers(cwd) == []


def test_fresh_destination_with_missing_parents_like_the_callers_use(tmp_path):
    # registry.download / compose candidates / eval --adapter fetch into a new directory.
    _, uri = published(tmp_path)
    out = fetch(uri, tmp_path / "a" / "b" / "adapter")
    assert out == tmp_path / "a" / "b" / "adapter"
    assert sorted(p.name for p in out.iterdir()) == ["adapter_config.json", "sub"]
    assert leftovers(out.parent) == []


def test_a_concurrent_download_of_the_same_artifact_is_not_an_error(tmp_path, monkeypatch):
    # Two workers filling the same candidate cache directory: the loser finds the same content there.
    store, uri = published(tmp_path)
    dest = tmp_path / "cache" / "cand"
    real_rename = os.rename

    def racing_rename(src, dst):
        if Path(dst) == dest and not dest.exists():
            ArtifactStore(uri).download("", tmp_path / "other")
            real_rename(tmp_path / "other", dest)
        return real_rename(src, dst)

    monkeypatch.setattr(os, "rename", racing_rename)
    assert fetch(uri, dest) == dest
    assert (dest / "adapter_config.json").is_file() and leftovers(dest.parent) == []


def tamper(store: ArtifactStore, key: str, files: dict[str, str]) -> None:
    path = Path(store.path(key)) / MANIFEST
    manifest = json.loads(path.read_text())
    manifest["files"] = files
    path.write_text(json.dumps(manifest))


BAD_NAMES = ["../../../escape/pwned.sh", "sub/../../../../escape/x", "/etc/passwd", "..\\..\\escape\\x",
             "C:/escape/x", "", "a//b", "./a", "sub/..", "a\x00b"]


@pytest.mark.parametrize("name", BAD_NAMES)
def test_unsafe_manifest_names_are_refused_before_anything_is_written(tmp_path, name):
    # Planted so a naive download would find the "file" and copy it out of the destination.
    root = tmp_path / "s1" / "s2" / "store"
    store = ArtifactStore(root.as_uri())
    src = tmp_path / "src"
    src.mkdir()
    (src / "ok.txt").write_text("ok")
    store.publish(src, "k")
    payload = b"#!/bin/sh\necho pwned\n"
    (tmp_path / "s1" / "escape").mkdir()
    (tmp_path / "s1" / "escape" / "pwned.sh").write_bytes(payload)
    tamper(store, "k", {"ok.txt": sha256_bytes(b"ok"), name: sha256_bytes(payload)})
    dest = tmp_path / "a" / "b" / "out"
    with pytest.raises(StoreError, match="unsafe file name"):
        store.download("k", dest)
    assert not (tmp_path / "escape").exists() and not (tmp_path / "a").exists()


def test_an_absolute_name_with_a_wrong_digest_leaves_no_file(tmp_path):
    store, _ = published(tmp_path)
    evil = tmp_path / "outside" / "evil.txt"
    evil.parent.mkdir()
    (Path(store.path("adapters/a/v1")) / evil.relative_to("/")).parent.mkdir(parents=True)
    (Path(store.path("adapters/a/v1")) / evil.relative_to("/")).write_text("evil")
    tamper(store, "adapters/a/v1", {str(evil): "0" * 64})
    result = runner.invoke(app, ["get", store.uri_for("adapters/a/v1"), str(tmp_path / "out")])
    assert result.exit_code != 0 and "unsafe file name" in result.output, result.output
    assert str(evil) in result.output
    assert not evil.exists() and not (tmp_path / "out").exists() and leftovers(tmp_path) == []


def test_a_failed_digest_check_leaves_nothing_behind(tmp_path):
    store, uri = published(tmp_path)
    (Path(store.path("adapters/a/v1")) / "sub" / "w.bin").write_bytes(b"tampered")
    with pytest.raises(StoreError, match="integrity check failed for .*sub/w.bin"):
        fetch(uri, tmp_path / "new" / "out")
    assert not (tmp_path / "new").exists() and leftovers(tmp_path) == []
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(StoreError, match="integrity check failed"):
        fetch(uri, empty)
    assert list(empty.iterdir()) == []


def test_a_listed_file_missing_from_the_store_is_a_clear_error(tmp_path):
    store, uri = published(tmp_path)
    (Path(store.path("adapters/a/v1")) / "sub" / "w.bin").unlink()
    result = runner.invoke(app, ["get", uri, str(tmp_path / "out")])
    assert result.exit_code != 0 and "sub/w.bin" in result.output, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    assert not (tmp_path / "out").exists() and leftovers(tmp_path) == []
