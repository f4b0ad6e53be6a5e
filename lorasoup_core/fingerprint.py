"""Content fingerprints (sha256) for bytes, files, directories and JSON-able values."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

_CHUNK = 1 << 20


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(_CHUNK), b""):
            h.update(block)
    return h.hexdigest()


def canonical_json(value: Any) -> str:
    """JSON with sorted keys and no whitespace, so equal values give equal text."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)


def sha256_json(value: Any) -> str:
    return sha256_bytes(canonical_json(value).encode("utf-8"))


def file_digests(root: str | Path, ignore: tuple[str, ...] = ()) -> dict[str, str]:
    """Relative POSIX path -> sha256 for every file below ``root`` (sorted, hidden files included)."""
    root = Path(root)
    out: dict[str, str] = {}
    for p in sorted(root.rglob("*")):
        if p.is_file():
            rel = p.relative_to(root).as_posix()
            if rel not in ignore:
                out[rel] = sha256_file(p)
    return out


def sha256_dir(root: str | Path, ignore: tuple[str, ...] = ()) -> str:
    """One digest for a directory tree: the sha256 of its sorted (path, digest) listing."""
    return sha256_json(file_digests(root, ignore))
