"""fsspec filesystems behind URI schemes; one small function each, registered by scheme."""

from __future__ import annotations

import os
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


def s3_timeout() -> float:
    """Seconds to wait to connect and for each read (LORASOUP_S3_TIMEOUT, default 10)."""
    raw = os.environ.get("LORASOUP_S3_TIMEOUT", "10")
    try:
        value = float(raw)
    except ValueError:
        value = 0.0
    if not value > 0:
        raise ValueError(f"LORASOUP_S3_TIMEOUT={raw!r}: expected a positive number of seconds")
    return value


@BACKENDS.register("s3")
def s3(path: str) -> tuple[Any, str]:
    """Any S3-compatible service: the endpoint comes from LORASOUP_S3_ENDPOINT_URL / AWS_ENDPOINT_URL."""
    import s3fs

    if not path.strip("/"):
        raise ValueError("an s3:// store URI needs a bucket: s3://bucket/prefix")
    endpoint = get_settings().s3_endpoint_url
    client_kwargs = {"endpoint_url": endpoint} if endpoint else {}
    # Bounded waits: botocore's defaults times s3fs's own 5 retries kept a silent endpoint hanging for
    # ~7 minutes. Two attempts in all (botocore's max_attempts would count retries only), and s3fs
    # does not retry on top, so a dead endpoint fails within about 2 x the timeout.
    timeout = s3_timeout()
    config_kwargs = {"connect_timeout": timeout, "read_timeout": timeout,
                     "retries": {"mode": "standard", "total_max_attempts": 2}}
    # A fresh instance (skip_instance_cache) so an endpoint change in the environment takes effect.
    fs = s3fs.S3FileSystem(client_kwargs=client_kwargs, config_kwargs=config_kwargs, skip_instance_cache=True)
    fs.retries = 1
    return fs, path.strip("/")
