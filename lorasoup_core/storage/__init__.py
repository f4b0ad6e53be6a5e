"""Artifact storage over fsspec: file:// (default, under LORASOUP_HOME), s3:// via s3fs, memory://."""

from lorasoup_core.storage.backends import BACKENDS
from lorasoup_core.storage.store import (
    MANIFEST,
    Artifact,
    ArtifactNotFound,
    ArtifactStore,
    StoreError,
    fetch,
    open_store,
)

__all__ = ["BACKENDS", "MANIFEST", "Artifact", "ArtifactNotFound", "ArtifactStore", "StoreError", "fetch",
           "open_store"]
