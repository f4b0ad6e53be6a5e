"""Artifact store: directories (adapters, reports) published atomically under a URI root.

An artifact is a key (a relative path) holding files plus a manifest that lists each file's
sha256. The manifest is the commit marker and is written last: readers treat a key without one
as absent, so a publish killed halfway leaves nothing visible. On local disk the whole directory
is also staged and renamed into place in one step.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
import uuid
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from lorasoup_core.fingerprint import file_digests, sha256_file, sha256_json
from lorasoup_core.storage.backends import BACKENDS

MANIFEST = "_lorasoup_manifest.json"
STAGING = ".staging"
_KEY_RE = re.compile(r"^[A-Za-z0-9._@=+\-]+(/[A-Za-z0-9._@=+\-]+)*$")


class StoreError(RuntimeError):
    """A storage problem: bad URI or key, missing artifact, failed integrity check."""


class ArtifactNotFound(StoreError):
    pass


@dataclass
class Artifact:
    """The manifest of a committed artifact."""

    uri: str
    key: str
    sha256: str  # digest of the sorted {path: sha256} listing
    files: dict[str, str]
    size: int
    metadata: dict[str, Any] = field(default_factory=dict)
    created: str = ""


def split_uri(uri: str) -> tuple[str, str]:
    """'s3://b/p' -> ('s3', 'b/p'); a bare path is a local file path."""
    if "://" not in uri:
        return "file", uri
    scheme, _, rest = uri.partition("://")
    return scheme, rest


def check_key(key: str) -> str:
    key = key.strip("/")
    if key and (not _KEY_RE.match(key) or any(part in (".", "..") for part in key.split("/"))):
        raise StoreError(f"invalid artifact key {key!r}: use letters, digits and . _ @ = + - separated by /")
    if key.split("/")[0] == STAGING:
        raise StoreError(f"artifact key {key!r} is inside the reserved staging area")
    return key


class ArtifactStore:
    """A root URI (file://, s3://, memory://) holding committed artifacts under keys."""

    def __init__(self, uri: str) -> None:
        scheme, rest = split_uri(uri)
        backend = BACKENDS.get(scheme)
        self.scheme = scheme
        self.fs, self.root = backend(rest)
        self.uri = f"{scheme}://{self.root.lstrip('/') if scheme != 'file' else self.root}"
        if scheme == "memory":
            self.uri = f"memory://{self.root}"

    # -- addressing -------------------------------------------------------------------------
    def path(self, key: str) -> str:
        key = check_key(key)
        return f"{self.root}/{key}" if key else self.root

    def uri_for(self, key: str) -> str:
        key = check_key(key)
        return f"{self.uri}/{key}" if key else self.uri

    # -- reading ----------------------------------------------------------------------------
    def exists(self, key: str) -> bool:
        return self.fs.exists(f"{self.path(key)}/{MANIFEST}")

    def manifest(self, key: str) -> Artifact:
        path = f"{self.path(key)}/{MANIFEST}"
        try:
            with self.fs.open(path, "rb") as f:
                return Artifact(**json.loads(f.read()))
        except FileNotFoundError:
            raise ArtifactNotFound(f"no committed artifact at {self.uri_for(key)}") from None

    def list(self, prefix: str = "") -> list[str]:
        """Keys of committed artifacts below a prefix."""
        base = self.path(prefix)
        if not self.fs.exists(base):
            return []
        found = self.fs.glob(f"{base}/**/{MANIFEST}") + self.fs.glob(f"{base}/{MANIFEST}")
        root = self.root.strip("/")
        keys = {p.strip("/")[len(root):].strip("/").rsplit(MANIFEST, 1)[0].strip("/") for p in found}
        return sorted(k for k in keys if not k.startswith(STAGING))

    def download(self, key: str, dest: str | Path, verify: bool = True) -> Path:
        """Copy a committed artifact into ``dest`` (created; must not hold other files), checking digests."""
        art = self.manifest(key)
        dest = Path(dest)
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(dir=dest.parent, prefix=f".{dest.name}-"))
        try:
            for rel, digest in art.files.items():
                target = tmp / rel
                target.parent.mkdir(parents=True, exist_ok=True)
                self.fs.get(f"{self.path(key)}/{rel}", str(target))
                if verify and sha256_file(target) != digest:
                    raise StoreError(f"integrity check failed for {self.uri_for(key)}/{rel}: sha256 differs "
                                     "from the manifest")
            if dest.exists():
                shutil.rmtree(dest)
            os.replace(tmp, dest)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        return dest

    def read_bytes(self, key: str, name: str) -> bytes:
        art = self.manifest(key)
        if name not in art.files:
            raise ArtifactNotFound(f"{self.uri_for(key)} has no file {name!r}; it has {sorted(art.files)}")
        with self.fs.open(f"{self.path(key)}/{name}", "rb") as f:
            return f.read()

    # -- writing ----------------------------------------------------------------------------
    def publish(self, local_dir: str | Path, key: str, metadata: dict[str, Any] | None = None) -> Artifact:
        """Publish a directory atomically. Publishing the same content again is a no-op; different
        content under a committed key is an error (keys are immutable: put a version in the key)."""
        local_dir = Path(local_dir)
        key = check_key(key)
        if not key:
            raise StoreError("publish needs a non-empty key")
        if not local_dir.is_dir():
            raise StoreError(f"cannot publish {local_dir}: not a directory")
        files = file_digests(local_dir, ignore=(MANIFEST,))
        if not files:
            raise StoreError(f"cannot publish {local_dir}: it holds no files")
        art = Artifact(
            uri=self.uri_for(key), key=key, sha256=sha256_json(files), files=files,
            size=sum((local_dir / rel).stat().st_size for rel in files), metadata=dict(metadata or {}),
            created=datetime.now(UTC).isoformat(),
        )
        if self.exists(key):
            current = self.manifest(key)
            if current.sha256 == art.sha256:
                return current
            raise StoreError(f"{art.uri} is already committed with other content (sha256 {current.sha256[:12]})")
        manifest_bytes = json.dumps(asdict(art), indent=1, sort_keys=True).encode()
        if self.scheme == "file":
            self._publish_local(local_dir, key, manifest_bytes)
        else:
            self._publish_remote(local_dir, key, files, manifest_bytes)
        return art

    def _publish_local(self, local_dir: Path, key: str, manifest_bytes: bytes) -> None:
        staging = Path(self.root) / STAGING / uuid.uuid4().hex
        staging.parent.mkdir(parents=True, exist_ok=True)
        shutil.copytree(local_dir, staging, ignore=shutil.ignore_patterns(MANIFEST))
        (staging / MANIFEST).write_bytes(manifest_bytes)
        final = Path(self.path(key))
        final.parent.mkdir(parents=True, exist_ok=True)
        if final.exists():  # an uncommitted leftover (no manifest): nobody can be reading it
            shutil.rmtree(final)
        try:
            os.rename(staging, final)
        except OSError:
            shutil.rmtree(staging, ignore_errors=True)
            if not self.exists(key):
                raise

    def _publish_remote(self, local_dir: Path, key: str, files: dict[str, str], manifest_bytes: bytes) -> None:
        base = self.path(key)
        for rel in files:  # files first; the manifest (a single PUT, atomic on S3) commits them
            self.fs.put_file(str(local_dir / rel), f"{base}/{rel}")
        with self.fs.open(f"{base}/{MANIFEST}", "wb") as f:
            f.write(manifest_bytes)

    def delete(self, key: str) -> None:
        """Uncommit first (readers stop seeing it), then remove the files."""
        base = self.path(check_key(key) or "?")
        if self.fs.exists(f"{base}/{MANIFEST}"):
            self.fs.rm(f"{base}/{MANIFEST}")
        if self.fs.exists(base):
            self.fs.rm(base, recursive=True)

    def uncommitted(self) -> list[str]:
        """Leftovers of interrupted publishes: staging directories and files under keys with no manifest."""
        if not self.fs.exists(self.root):
            return []
        committed = set(self.list())
        root = self.root.strip("/")
        out = set()
        for p in self.fs.find(self.root):
            rel = p.strip("/")[len(root):].strip("/")
            if rel.startswith(STAGING + "/"):
                out.add("/".join(rel.split("/")[:2]))
            elif not any(rel == k or rel.startswith(k + "/") for k in committed):
                out.add(rel.rsplit("/", 1)[0] if "/" in rel else rel)
        return sorted(out)

    def clean_uncommitted(self) -> list[str]:
        leftovers = self.uncommitted()
        for rel in leftovers:
            self.fs.rm(f"{self.root}/{rel}", recursive=True)
        return leftovers


def open_store(uri: str | None = None) -> ArtifactStore:
    """The store at ``uri``, or the configured one (LORASOUP_STORE, default file://~/.lorasoup/artifacts)."""
    from lorasoup_core.settings import get_settings

    return ArtifactStore(uri or get_settings().store_uri)


def fetch(uri: str, dest: str | Path) -> Path:
    """Download the committed artifact whose own URI is ``uri`` (as recorded in the registry)."""
    return ArtifactStore(uri).download("", dest)
