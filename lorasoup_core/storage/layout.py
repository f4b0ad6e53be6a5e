"""The artifact store's on-disk layout: the names of its own files and directories at the root, the rule
an artifact key follows, and how old a file in a listing is.

Shared by the store (``store.py``) and its journal (``journal.py``), and importing nothing of either, so
neither has to import the other for them.
"""

from __future__ import annotations

import re
import time
from datetime import datetime
from typing import Any

MANIFEST = "_lorasoup_manifest.json"  # in each artifact's directory, written last: the commit marker
STORE_MARKER = "_lorasoup_store.json"  # at the root: a directory lorasoup made
STAGING = ".staging"  # at the root (local stores): publishes being assembled
PENDING = ".pending"  # at the root: the journal's records of unfinished writes
_KEY_RE = re.compile(r"^[A-Za-z0-9._@=+\-]+(/[A-Za-z0-9._@=+\-]+)*$")


class StoreError(RuntimeError):
    """A storage problem: bad URI or key, missing artifact, failed integrity check."""


def check_key(key: str) -> str:
    key = key.strip("/")
    if key and (not _KEY_RE.match(key) or any(part in (".", "..") for part in key.split("/"))):
        raise StoreError(f"invalid artifact key {key!r}: use letters, digits and . _ @ = + - separated by /")
    if key.split("/")[0] in (STAGING, STORE_MARKER, PENDING):
        raise StoreError(f"artifact key {key!r} is reserved for the store's own files")
    return key


def modified(info: dict[str, Any]) -> float:
    """A file's last modification (epoch seconds) from an fsspec listing: `mtime` (local), `LastModified`
    (S3), `created` (memory); unknown counts as now (too young to remove)."""
    value = info.get("mtime") or info.get("LastModified") or info.get("created")
    if isinstance(value, datetime):
        return value.timestamp()
    try:
        return float(value)
    except (TypeError, ValueError):
        return time.time()
