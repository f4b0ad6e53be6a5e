"""fsspec filesystems behind URI schemes; one small function each, registered by scheme."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import fsspec

from lorasoup_core.plugins import Registry
from lorasoup_core.settings import get_settings

# scheme -> (root path without scheme) -> (filesystem, root path the filesystem understands)
BACKENDS: Registry[Callable[[str], tuple[Any, str]]] = Registry("storage scheme")


@BACKENDS.register("file")
def local(path: str) -> tuple[Any, str]:
    from pathlib import Path

    root = Path(path).expanduser().resolve()
    return fsspec.filesystem("file", auto_mkdir=True), root.as_posix()


@BACKENDS.register("memory")
def memory(path: str) -> tuple[Any, str]:
    return fsspec.filesystem("memory"), "/" + path.strip("/")


@BACKENDS.register("s3")
def s3(path: str) -> tuple[Any, str]:
    """Any S3-compatible service: the endpoint comes from LORASOUP_S3_ENDPOINT_URL / AWS_ENDPOINT_URL."""
    import s3fs

    endpoint = get_settings().s3_endpoint_url
    client_kwargs = {"endpoint_url": endpoint} if endpoint else {}
    # A fresh instance (skip_instance_cache) so an endpoint change in the environment takes effect.
    fs = s3fs.S3FileSystem(client_kwargs=client_kwargs, skip_instance_cache=True)
    if not path.strip("/"):
        raise ValueError("an s3:// store URI needs a bucket: s3://bucket/prefix")
    return fs, path.strip("/")
