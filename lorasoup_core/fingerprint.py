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


def identity(value: Any) -> Any:
    """What a value contributes to a cache key: `cache_identity()` where a type defines it (None leaves
    the value out, e.g. where results are logged), a task's data fingerprint, a pydantic model's or a
    dataclass's fields; containers element-wise."""
    import dataclasses

    if hasattr(value, "cache_identity"):
        return value.cache_identity()
    if isinstance(getattr(value, "fingerprint", None), str):  # Task: its data, not the object
        return {"fingerprint": value.fingerprint}
    if hasattr(value, "model_dump"):
        return {type(value).__name__: value.model_dump(mode="json")}
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {type(value).__name__: {f.name: identity(getattr(value, f.name)) for f in dataclasses.fields(value)
                                       if f.compare}}
    if isinstance(value, (list, tuple)):
        return [identity(v) for v in value]
    if isinstance(value, dict):
        return {str(k): identity(v) for k, v in value.items()}
    if isinstance(value, Path):
        return str(value)
    return value


def cache_key(*values: Any) -> str:
    """sha256 over the identities of typed values and the lorasoup version (a new release never reuses
    results cached by an older one)."""
    from lorasoup_core import __version__

    kept = [v for v in values if not (hasattr(v, "cache_identity") and v.cache_identity() is None)]
    return sha256_json([__version__, [identity(v) for v in kept]])
