"""Artifact store: directories (adapters, reports) published atomically under a URI root.

An artifact is a key (a relative path) holding files plus a manifest that lists each file's
sha256. The manifest is the commit marker and is written last: readers treat a key without one
as absent, so a publish killed halfway leaves nothing visible. On local disk the whole directory
is also staged and renamed into place in one step. The root holds a store marker, so listing and
cleaning never walk (or delete in) a directory that lorasoup did not make: a root is adopted only while it
is empty. Every write is recorded in the store's journal before it starts (``journal.py``), and cleaning
removes only what such a record names. The store's own file names and the key rule are in ``layout.py``.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from lorasoup_core.fingerprint import file_digests, sha256_file, sha256_json
from lorasoup_core.storage import journal
from lorasoup_core.storage.backends import BACKENDS
from lorasoup_core.storage.layout import MANIFEST, STAGING, STORE_MARKER, StoreError, check_key  # re-exported
from lorasoup_core.storage.safety import UnsafePath, check_files, check_links, staged_destination


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

    # -- the root -----------------------------------------------------------------------------
    @contextmanager
    def _remote(self, doing: str) -> Iterator[None]:
        """S3 failures as one clear line naming the endpoint (timeouts, refused connections, denied
        access: botocore/aiohttp types vary), not a traceback."""
        try:
            yield
        except (StoreError, FileNotFoundError, UnsafePath):
            raise
        except Exception as err:
            if self.scheme != "s3":
                raise
            endpoint = self.fs.client_kwargs.get("endpoint_url") or "the default AWS S3 endpoint"
            raise StoreError(f"S3 request to {endpoint} failed while {doing} {self.uri}: "
                             f"{type(err).__name__}: {err}".replace("\n", " ")) from None

    def _check_bucket(self) -> None:
        """S3 only: one prompt request, so a missing bucket or a dead endpoint is a clear error rather
        than an empty listing or minutes of retries."""
        if self.scheme != "s3":
            return
        bucket = self.root.split("/")[0]
        try:
            with self._remote("checking the bucket of"):
                self.fs.call_s3("head_bucket", Bucket=bucket)
        except FileNotFoundError:
            endpoint = self.fs.client_kwargs.get("endpoint_url") or "the default AWS S3 endpoint"
            raise StoreError(f"S3 bucket {bucket!r} does not exist at {endpoint} (store {self.uri})") from None

    def check_reachable(self) -> None:
        """One prompt probe: an S3 bucket answers, or a local root (or the directory it will be created
        in) is writable. Raises StoreError naming the store."""
        if self.scheme == "s3":
            self._check_bucket()
        elif self.scheme == "file":
            existing = Path(self.root)
            while not existing.exists() and existing != existing.parent:
                existing = existing.parent
            if not (existing.is_dir() and os.access(existing, os.W_OK | os.X_OK)):
                raise StoreError(f"store {self.uri}: {existing} is not a writable directory")

    def _is_store(self) -> bool:
        """True for a lorasoup store, False for a root with nothing in it yet; anything else (say
        file:/// or a home directory) is refused, never walked."""
        self._check_bucket()
        with self._remote("reading"):
            if self.fs.exists(f"{self.root}/{STORE_MARKER}"):
                return True
            if not self.fs.exists(self.root) or not self.fs.ls(self.root):
                return False
            if self.fs.exists(f"{self.root}/{STORE_MARKER}"):  # marked meanwhile by a concurrent first write
                return True
        raise StoreError(f"{self.uri} is not a lorasoup artifact store (no {STORE_MARKER} at its root) and "
                         "is not empty; refusing to use it: check --uri / LORASOUP_STORE, use an empty or new "
                         "directory, or run `lorasoup store adopt` if a lorasoup older than the marker made it")

    def adopt(self) -> list[str]:
        """Mark a root that holds committed artifacts but no marker (a store made before the marker
        existed), at the user's explicit request; returns its keys. A root with none is refused."""
        with self._remote("reading"):
            if self.fs.exists(f"{self.root}/{STORE_MARKER}"):
                return self.list()
            found = self.fs.glob(f"{self.root}/**/{MANIFEST}") if self.fs.exists(self.root) else []
        if not found:
            raise StoreError(f"{self.uri} holds no committed artifact (no {MANIFEST}): not a lorasoup store, "
                             "nothing adopted")
        with self.fs.open(f"{self.root}/{STORE_MARKER}", "wb") as f:
            f.write(json.dumps({"lorasoup": "artifact store", "layout": 1}).encode())
        return self.list()

    def _mark(self) -> None:
        """Adopt the root as a store: only a marked, missing or empty one (`_is_store` refuses the rest),
        so the store never shares a directory with files it did not make."""
        if self._is_store():
            return
        with self.fs.open(f"{self.root}/{STORE_MARKER}", "wb") as f:
            f.write(json.dumps({"lorasoup": "artifact store", "layout": 1}).encode())

    # -- reading ----------------------------------------------------------------------------
    def exists(self, key: str) -> bool:
        with self._remote("reading"):
            return self.fs.exists(f"{self.path(key)}/{MANIFEST}")

    def manifest(self, key: str) -> Artifact:
        path = f"{self.path(key)}/{MANIFEST}"
        try:
            with self._remote("reading"), self.fs.open(path, "rb") as f:
                raw = f.read()
        except FileNotFoundError:
            self._check_bucket()
            raise ArtifactNotFound(f"no committed artifact at {self.uri_for(key)}") from None
        try:
            return Artifact(**json.loads(raw))
        except (ValueError, TypeError) as err:
            raise StoreError(f"malformed manifest at {self.uri_for(key)}: {err}") from None

    def list(self, prefix: str = "") -> list[str]:
        """Keys of committed artifacts below a prefix."""
        base = self.path(prefix)
        if not self._is_store():
            return []
        with self._remote("listing"):
            if not self.fs.exists(base):
                return []
            found = self.fs.glob(f"{base}/**/{MANIFEST}") + self.fs.glob(f"{base}/{MANIFEST}")
        root = self.root.strip("/")
        keys = {p.strip("/")[len(root):].strip("/").rsplit(MANIFEST, 1)[0].strip("/") for p in found}
        return sorted(k for k in keys if not k.startswith(STAGING))

    def download(self, key: str, dest: str | Path, verify: bool = True) -> Path:
        """Copy a committed artifact into ``dest``, checking digests. ``dest`` must be new or an empty
        directory: nothing there is ever deleted or overwritten, and a failed download leaves nothing."""
        art = self.manifest(key)
        src = self.uri_for(key)
        try:
            check_files(art.files)  # every name, before anything is written
            with staged_destination(dest, art.files) as stage:
                for rel, digest in art.files.items():
                    target = stage / rel
                    target.parent.mkdir(parents=True, exist_ok=True)
                    with self._remote("downloading from"):
                        self.fs.get(f"{self.path(key)}/{rel}", str(target))
                    if verify and sha256_file(target) != digest:
                        raise StoreError(f"integrity check failed for {src}/{rel}: sha256 differs from the "
                                         "manifest")
        except (UnsafePath, OSError) as err:  # OSError: a listed file missing, a full disk, ...
            raise StoreError(f"cannot download {src}: {err}") from None
        return Path(os.path.abspath(Path(dest).expanduser()))

    def read_bytes(self, key: str, name: str) -> bytes:
        art = self.manifest(key)
        if name not in art.files:
            raise ArtifactNotFound(f"{self.uri_for(key)} has no file {name!r}; it has {sorted(art.files)}")
        with self._remote("reading"), self.fs.open(f"{self.path(key)}/{name}", "rb") as f:
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
        try:
            check_links(local_dir)
            files = file_digests(local_dir, ignore=(MANIFEST,))
            size = sum((local_dir / rel).stat().st_size for rel in files)
        except (UnsafePath, OSError) as err:
            raise StoreError(f"cannot publish {local_dir}: {err}") from None
        if not files:
            raise StoreError(f"cannot publish {local_dir}: it holds no files")
        art = Artifact(
            uri=self.uri_for(key), key=key, sha256=sha256_json(files), files=files, size=size,
            metadata=dict(metadata or {}), created=datetime.now(UTC).isoformat(),
        )
        if self.exists(key):
            current = self.manifest(key)
            if current.sha256 == art.sha256:
                return current
            raise StoreError(f"{art.uri} is already committed with other content (sha256 {current.sha256[:12]})")
        manifest_bytes = json.dumps(asdict(art), indent=1, sort_keys=True).encode()
        try:
            with self._remote("publishing to"):
                self._publish(local_dir, key, files, manifest_bytes)
        except FileNotFoundError as err:
            self._check_bucket()
            raise StoreError(f"cannot publish {local_dir} to {art.uri}: {err}") from None
        except OSError as err:
            raise StoreError(f"cannot publish {local_dir} to {art.uri}: {err}") from None
        return art

    def _publish(self, local_dir: Path, key: str, files: dict[str, str], manifest_bytes: bytes) -> None:
        self._mark()
        rid = journal.new_id()
        local = self.scheme == "file"
        record = journal.begin(self, journal.Record(rid, key, [*files, MANIFEST],
                                                    staging=f"{STAGING}/{rid}" if local else None))
        if local:
            self._publish_local(local_dir, key, files, manifest_bytes, rid)
        else:
            self._publish_remote(local_dir, key, files, manifest_bytes)
        journal.end(self, record)  # only after a commit or a complete undo: a kill leaves the record

    def _publish_local(self, local_dir: Path, key: str, files: dict[str, str], manifest_bytes: bytes,
                       rid: str) -> None:
        staging = Path(self.root) / STAGING / rid
        staging.mkdir(parents=True)
        try:
            for rel in files:  # exactly the listed files, as a remote publish uploads
                (staging / rel).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(local_dir / rel, staging / rel)
            (staging / MANIFEST).write_bytes(manifest_bytes)
            final = Path(self.path(key))
            final.parent.mkdir(parents=True, exist_ok=True)
            if final.exists() and not self.exists(key):  # never removed here: not recorded as ours
                raise StoreError(f"{final} exists without a committed artifact in it; move it away (or run "
                                 "`lorasoup store clean` if a killed write of this store left it)")
            try:
                os.rename(staging, final)
            except OSError:
                if not self.exists(key):  # else a concurrent publish of the same key won
                    raise
        finally:  # on any failure (and after a lost race) the staged copy goes
            shutil.rmtree(staging, ignore_errors=True)

    def _publish_remote(self, local_dir: Path, key: str, files: dict[str, str], manifest_bytes: bytes) -> None:
        base = self.path(key)
        uploaded = []
        try:
            for rel in files:  # files first; the manifest (a single PUT, atomic on S3) commits them
                self.fs.put_file(str(local_dir / rel), f"{base}/{rel}")
                uploaded.append(f"{base}/{rel}")
            with self.fs.open(f"{base}/{MANIFEST}", "wb") as f:
                f.write(manifest_bytes)
        except BaseException:
            for path in uploaded:  # best effort; `store clean` gets what a killed process leaves
                try:
                    self.fs.rm(path)
                except Exception:
                    pass
            raise

    def delete(self, key: str) -> None:
        """Uncommit first (readers stop seeing it), then remove the artifact's own files (as its manifest
        lists them; a killed delete is finished by `clean`, from its record)."""
        key = check_key(key)
        if not key or not self.exists(key):
            return
        files = [*self.manifest(key).files, MANIFEST]
        record = journal.begin(self, journal.Record(journal.new_id(), key, files, action="delete"))
        base = self.path(key)
        self.fs.rm(f"{base}/{MANIFEST}")
        for rel in files[:-1]:
            with contextlib.suppress(FileNotFoundError):
                self.fs.rm(f"{base}/{rel}")
        if self.scheme == "file":
            journal._prune_empty_dirs(base, stop=self.root)
        journal.end(self, record)

    def uncommitted(self, min_age_s: float | None = None) -> list[str]:
        """Leftovers of killed writes, as the journal records them (a staging directory, or a key's
        uploaded files with no manifest), untouched for `min_age_s` seconds (default LORASOUP_CLEAN_MIN_AGE
        minutes, 60): a younger one may be a publish still uploading. memory:// (one process) has no
        threshold. A file no record names is never listed, whatever it is."""
        return [rec.label for _path, rec, left in self._stale(min_age_s) if left]

    def clean_uncommitted(self, min_age_s: float | None = None) -> list[str]:
        """Remove what `uncommitted` lists: exactly the files the records name (never a committed
        artifact's, never a file the store did not write)."""
        stale = self._stale(min_age_s)
        for path, rec, _left in stale:
            journal.undo(self, path, rec)  # a record with nothing left to remove just goes
        return [rec.label for _path, rec, left in stale if left]

    def _stale(self, min_age_s: float | None) -> list[tuple[str, journal.Record, bool]]:
        """(record path, record, whether anything it names is still there) of records untouched for
        the age threshold."""
        if not self._is_store():
            return []
        min_age, now = self._min_age(min_age_s), time.time()
        with self._remote("listing"):
            found = journal.records(self)
        return sorted(((p, r, left) for p, r, touched, left in found if min_age <= 0 or now - touched >= min_age),
                      key=lambda prl: prl[1].label)

    def _min_age(self, min_age_s: float | None) -> float:
        if self.scheme == "memory":
            return 0.0
        if min_age_s is None:
            from lorasoup_core.settings import get_settings

            return get_settings().clean_min_age_s
        return float(min_age_s)


def open_store(uri: str | None = None) -> ArtifactStore:
    """The store at ``uri``, or the configured one (LORASOUP_STORE, default file://~/.lorasoup/artifacts)."""
    from lorasoup_core.settings import get_settings

    return ArtifactStore(uri or get_settings().store_uri)


def fetch(uri: str, dest: str | Path) -> Path:
    """Download the committed artifact whose own URI is ``uri`` (as recorded in the registry)."""
    return ArtifactStore(uri).download("", dest)
