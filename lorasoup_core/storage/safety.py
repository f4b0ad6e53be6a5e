"""Local-disk safety for the store: manifest file names, source symlinks, and a download destination
that is created, never overwritten. Nothing here deletes what it did not create."""

from __future__ import annotations

import os
import re
import shutil
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from lorasoup_core.fingerprint import file_digests

_DIGEST_RE = re.compile(r"^[0-9a-f]{64}$")
_DRIVE_RE = re.compile(r"^[A-Za-z]:")


class UnsafePath(ValueError):
    """A path the store refuses; the store turns it into a StoreError naming the artifact."""


def check_file_name(name: object) -> str:
    """A manifest entry must be a plain relative POSIX path: it is joined to the destination, so an
    absolute path, '..', a backslash (a separator on Windows) or a drive would escape it."""
    if not isinstance(name, str) or not name:
        raise UnsafePath(f"unsafe file name {name!r}: not a non-empty string")
    bad = ("\\" in name or "\x00" in name or name.startswith("/") or _DRIVE_RE.match(name)
           or any(part in ("", ".", "..") for part in name.split("/")))
    if bad:
        raise UnsafePath(f"unsafe file name {name!r}: must be a relative path without '..', '.', '//' "
                         "or backslashes")
    return name


def check_files(files: object) -> dict[str, str]:
    """Validate a manifest's whole {name: sha256} listing before anything is written."""
    if not isinstance(files, dict):
        raise UnsafePath(f"malformed file listing: expected an object, got {type(files).__name__}")
    for name, digest in files.items():
        check_file_name(name)
        if not isinstance(digest, str) or not _DIGEST_RE.match(digest):
            raise UnsafePath(f"malformed sha256 {digest!r} for file {name!r}")
    return files


def check_links(root: Path) -> None:
    """Refuse symlinks that dangle or resolve outside ``root``: publishing would fail halfway, or copy
    a file from elsewhere (a private data set, say) into a shared store."""
    base = root.resolve()
    for dirpath, dirnames, filenames in os.walk(root):  # does not follow linked directories
        for name in dirnames + filenames:
            path = Path(dirpath) / name
            if not path.is_symlink():
                continue
            rel = path.relative_to(root).as_posix()
            target = Path(os.path.realpath(path))
            if not target.exists():
                raise UnsafePath(f"{rel!r} is a dangling symlink (to {os.readlink(path)})")
            if not target.is_relative_to(base):
                raise UnsafePath(f"{rel!r} is a symlink to {target}, outside {root}; copy the file in "
                                 "instead")


def _absent_parents(path: Path) -> list[Path]:
    """Ancestors of ``path`` that do not exist yet, deepest first (ours to remove on failure)."""
    out = []
    for p in path.parents:
        if p.exists():
            break
        out.append(p)
    return out


def _refuse(dest: Path, why: str) -> UnsafePath:
    return UnsafePath(f"destination {dest} {why}; nothing was changed (choose a new or empty directory)")


@contextmanager
def staged_destination(dest: str | Path, files: dict[str, str]) -> Iterator[Path]:
    """Yield an empty staging directory; when the block succeeds, its contents become ``dest``.

    ``dest`` must not exist or be an empty directory: an existing file or non-empty directory is
    refused before anything is written. The staging directory sits next to ``dest`` (inside it when
    it already exists: same filesystem, so moving into place is a rename), and everything this
    creates is removed if the block fails."""
    dest = Path(os.path.abspath(Path(dest).expanduser()))  # '.' -> the cwd by name, '..' folded
    existing = os.path.lexists(dest)
    if existing and not dest.is_dir():
        raise _refuse(dest, "exists and is not a directory")
    if existing and any(dest.iterdir()):
        raise _refuse(dest, "is not empty")
    created = [] if existing else _absent_parents(dest)
    parent = dest if existing else dest.parent
    parent.mkdir(parents=True, exist_ok=True)
    stage = parent / f".{dest.name or 'artifact'}.{uuid.uuid4().hex[:12]}.partial"
    stage.mkdir()
    moved: list[Path] = []
    try:
        yield stage
        if existing:
            _move_entries(stage, dest, moved)
        else:
            _rename_into_place(stage, dest, files)
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        for p in moved:
            shutil.rmtree(p) if p.is_dir() and not p.is_symlink() else p.unlink()
        for p in created:
            try:
                p.rmdir()
            except OSError:
                break
        raise
    finally:
        shutil.rmtree(stage, ignore_errors=True)


def _move_entries(stage: Path, dest: Path, moved: list[Path]) -> None:
    # Keep the user's (empty) directory itself, e.g. the cwd: move what we staged into it.
    for entry in sorted(stage.iterdir()):
        target = dest / entry.name
        if os.path.lexists(target):  # appeared meanwhile: never overwrite it
            raise _refuse(dest, f"gained {entry.name!r} while downloading")
        os.rename(entry, target)
        moved.append(target)


def _rename_into_place(stage: Path, dest: Path, files: dict[str, str]) -> None:
    try:
        os.rename(stage, dest)  # atomic; fails rather than replace a non-empty directory
    except OSError:
        # Another process may have downloaded the same artifact here meanwhile (a shared cache).
        if dest.is_dir() and file_digests(dest) == files:
            return
        raise _refuse(dest, "appeared while downloading") from None
