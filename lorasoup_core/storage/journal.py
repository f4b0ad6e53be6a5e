"""The store's journal of unfinished writes: what `store clean` may remove, and nothing else.

Before a publish (or a delete) writes anything, it records what it is about to write in
``.pending/<id>.json`` at the store root: the key, the files under it, and its staging directory (local
stores). The record goes once the write is committed (or undone). A record left behind is a write that
was killed; `clean` removes exactly the files such a record names (never a committed artifact's, never a
file no record names) and then the record. A file the store did not write (someone's notes, the home's
`mlflow.db` when the store root is the home) is never named by a record, so it can never be removed.
"""

from __future__ import annotations

import json
import os
import socket
import time
import uuid
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from lorasoup_core.storage.layout import MANIFEST, PENDING, STAGING, StoreError, check_key, modified

if TYPE_CHECKING:
    from lorasoup_core.storage.store import ArtifactStore


@dataclass
class Record:
    """One unfinished write, as its writer recorded it before writing."""

    id: str
    key: str
    files: list[str]  # relative to the key
    staging: str | None = None  # relative to the store root (local publishes)
    action: str = "publish"  # or "delete"
    host: str = field(default_factory=socket.gethostname)
    pid: int = field(default_factory=os.getpid)
    created: float = field(default_factory=time.time)

    @property
    def label(self) -> str:
        return self.staging or self.key


def new_id() -> str:
    return uuid.uuid4().hex


def begin(store: ArtifactStore, record: Record) -> str:
    """Write the record (one small file: one PUT on S3) before anything it names; returns its path."""
    path = f"{store.root}/{PENDING}/{record.id}.json"
    if store.scheme == "file":
        os.makedirs(f"{store.root}/{PENDING}", exist_ok=True)
    with store.fs.open(path, "wb") as f:
        f.write(json.dumps(asdict(record)).encode())
    return path


def end(store: ArtifactStore, path: str) -> None:
    """The write is committed or undone: its record goes (best effort: a left record is harmless, the next
    clean finds nothing of it to remove)."""
    try:
        store.fs.rm(path)
    except (FileNotFoundError, OSError):
        pass


def records(store: ArtifactStore) -> list[tuple[str, Record, float, bool]]:
    """(path, record, last touched, whether anything it names is still there) of every record; the caller
    applies its age threshold. A record that does not parse, or names a path outside its key or staging
    directory, is skipped (never acted on)."""
    base = f"{store.root}/{PENDING}"
    if not store.fs.exists(base):
        return []
    out = []
    for path, info in sorted(store.fs.find(base, detail=True).items()):
        try:
            with store.fs.open(path, "rb") as f:
                rec = Record(**json.loads(f.read()))
            check_key(rec.key)
            if rec.staging is not None and not _is_staging(rec.staging, rec.id):
                continue
            if any(not _inside(rel) for rel in rec.files):
                continue
        except (ValueError, TypeError, StoreError, OSError):
            continue
        out.append((path, rec, *_touched(store, rec, info)))
    return out


def _is_staging(rel: str, rid: str) -> bool:
    return rel == f"{STAGING}/{rid}"


def _inside(rel: str) -> bool:
    parts = rel.split("/")
    return bool(rel) and not rel.startswith("/") and all(p not in ("", ".", "..") for p in parts)


def _touched(store: ArtifactStore, rec: Record, info: dict[str, Any]) -> tuple[float, bool]:
    """The newest modification among the record and what it names (a write still uploading keeps
    touching its files, so it stays too young to remove), and whether any of it is still there."""
    times, left = [modified(info)], False
    for path in _paths(store, rec):
        try:
            if store.fs.isdir(path):
                found = store.fs.find(path, detail=True).values()
                times += [modified(i) for i in found]
                left = True
            elif store.fs.exists(path):
                times.append(modified(store.fs.info(path)))
                left = True
        except (FileNotFoundError, OSError):
            continue
    return max(times), left


def _paths(store: ArtifactStore, rec: Record) -> list[str]:
    """The absolute paths a record names: its staging directory, and its files under the key unless the
    key is committed (then they are the artifact's)."""
    paths = [f"{store.root}/{rec.staging}"] if rec.staging else []
    if rec.action == "delete" or not store.exists(rec.key):
        paths += [f"{store.path(rec.key)}/{rel}" for rel in rec.files]
    return paths


def undo(store: ArtifactStore, path: str, rec: Record) -> None:
    """Remove what a killed write left, as its record names it, then the record."""
    if rec.action == "delete" and store.fs.exists(f"{store.path(rec.key)}/{MANIFEST}"):
        store.fs.rm(f"{store.path(rec.key)}/{MANIFEST}")  # finish the delete: uncommit first
    for target in _paths(store, rec):
        try:
            store.fs.rm(target, recursive=store.fs.isdir(target))
        except (FileNotFoundError, OSError):
            continue
    if store.scheme == "file":
        _prune_empty_dirs(store.path(rec.key), stop=store.root)
    end(store, path)


def _prune_empty_dirs(path: str, stop: str) -> None:
    """Local stores: the key's directories that the undo left empty (never one holding anything)."""
    for dirpath, _dirs, _files in sorted(os.walk(path), key=lambda w: -len(w[0])):
        try:
            os.rmdir(dirpath)
        except OSError:
            pass
    parent = os.path.dirname(path.rstrip("/"))
    while parent.startswith(stop.rstrip("/") + "/"):
        try:
            os.rmdir(parent)
        except OSError:
            break
        parent = os.path.dirname(parent)
