"""Adapters on a Hugging Face hub: huggingface.co, a mirror or proxy at HF_ENDPOINT, or a server on this machine.

A hub repo is imported from one pinned commit: its file list and card are read once (`repo_info`), then
each file the import needs is downloaded at that commit into the Hugging Face cache, so a rerun after a
kill finds the finished files there and never mixes two revisions, and a failure names the file. Each
imported version carries its repo and commit as registry tags: a rerun skips repos already registered
at the commit the hub serves now, and an experiment finds a published pool (`lorahub:flan-t5-large`)
among the registered adapters without the network.
"""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from lorasoup_core.config import StorageConfig
    from lorasoup_core.models import LoadedModel
    from lorasoup_core.registry import AdapterRegistry, AdapterVersion

DEFAULT_ENDPOINT = "https://huggingface.co"
README = "README.md"
TAG_REPO, TAG_REVISION = "hub_repo", "hub_revision"  # registry tags of a version imported from a hub
CARD_KEYS = ("license", "base_model", "datasets", "tags", "language", "library_name", "pipeline_tag")


@dataclass(frozen=True)
class HubPool:
    """A published pool: the repos `<author>/<prefix>-<task>`, trained on `base`."""

    author: str
    prefix: str
    base: str

    def holds(self, repo: str) -> bool:
        return repo.startswith(f"{self.author}/{self.prefix}-")


# LoraHub's published pool: ~200 flan-t5-large LoRAs (2023 PEFT repos, adapter_model.bin weights).
HUB_POOLS = {"lorahub:flan-t5-large": HubPool("lorahub", "flan_t5_large", "google/flan-t5-large")}


class HubError(ValueError):
    """A hub request that failed; the message is one line naming the repo (and file)."""


@dataclass
class RepoInfo:
    repo: str
    revision: str  # the commit every file is downloaded at
    files: list[str] = field(default_factory=list)


def offline() -> bool:
    """huggingface_hub's own switch (read now: its module reads it once, at import)."""
    return any(os.environ.get(v, "").lower() in ("1", "true", "yes", "on") for v in ("HF_HUB_OFFLINE",
                                                                                   "TRANSFORMERS_OFFLINE"))


def endpoint() -> tuple[str, str]:
    """(the hub's URL, what set it): HF_ENDPOINT (a mirror or proxy) or huggingface.co."""
    url = os.environ.get("HF_ENDPOINT", "").strip().rstrip("/")
    return (url, "HF_ENDPOINT") if url else (DEFAULT_ENDPOINT, "the default hub")


def is_hub_id(src: str) -> bool:
    return src.count("/") == 1 and not src.startswith((".", "/", "~")) and not Path(src).expanduser().exists()


def _why(err: BaseException) -> str:
    """One line for a hub client's error (their messages span lines and carry request ids)."""
    from huggingface_hub.errors import (
        EntryNotFoundError,
        HfHubHTTPError,
        OfflineModeIsEnabled,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    url, source = endpoint()
    status = getattr(getattr(err, "response", None), "status_code", None)
    if isinstance(err, OfflineModeIsEnabled):
        return "HF_HUB_OFFLINE is set"
    if isinstance(err, RepositoryNotFoundError):
        return f"HTTP {status}: no such repository at {url}"
    if isinstance(err, RevisionNotFoundError):
        return f"HTTP {status}: no such revision at {url}"
    if isinstance(err, EntryNotFoundError):
        return f"HTTP {status}: not in the repository at {url}" if status else "not in the local cache"
    if isinstance(err, HfHubHTTPError):
        return f"HTTP {status} from {url}"
    first = (str(err).strip().splitlines() or [""])[0]
    if "Consistency check failed" in first:  # huggingface_hub's check of the size the hub announced
        return f"truncated transfer: {first.split(': ', 1)[-1].split(' (')[0]}"
    if type(err).__module__.startswith(("httpx", "httpcore")) or isinstance(err, ConnectionError | TimeoutError):
        return f"cannot reach {url} ({source}): {type(err).__name__}: {first[:200]}"
    return f"{type(err).__name__}: {first[:300]}"


def list_pool(name: str) -> list[str]:
    """The repos of a published pool, sorted. Raises HubError."""
    from huggingface_hub import HfApi

    pool = HUB_POOLS[name]
    try:  # the hub's search is a substring match: keep only <author>/<prefix>-<task>
        found = HfApi(endpoint=endpoint()[0]).list_models(author=pool.author, search=pool.prefix)
        repos = sorted(m.id for m in found if pool.holds(m.id))
    except Exception as err:  # network or hub errors: one line, the other sources still import
        raise HubError(f"{name}: cannot list the hub pool ({_why(err)})") from None
    if not repos:  # e.g. a mirror that does not serve listings: say so rather than import nothing
        raise HubError(f"{name}: the hub at {endpoint()[0]} lists no repository {pool.author}/{pool.prefix}-*")
    return repos


def repo_info(repo: str, wanted: tuple[str, ...]) -> RepoInfo:
    """The repo's current commit and which of the `wanted` files it has. Raises HubError."""
    from huggingface_hub import HfApi

    try:
        info = HfApi(endpoint=endpoint()[0]).model_info(repo)
    except Exception as err:
        raise HubError(f"{repo}: cannot read the hub repository ({_why(err)})") from None
    names = {s.rfilename for s in info.siblings or []}
    if not info.sha:
        raise HubError(f"{repo}: the hub at {endpoint()[0]} named no commit for it")
    return RepoInfo(repo, info.sha, [f for f in wanted if f in names])


def download(info: RepoInfo) -> tuple[Path, Path]:
    """(the snapshot directory at `info.revision`, the cache repo its files link into). Files already in
    the cache at that commit are not fetched again. Raises HubError naming the file."""
    from huggingface_hub import hf_hub_download

    snapshot = None
    for name in info.files:
        try:
            path = Path(hf_hub_download(info.repo, name, revision=info.revision, endpoint=endpoint()[0]))
        except Exception as err:
            raise HubError(f"{info.repo}: cannot download {name} ({_why(err)})") from None
        snapshot = path.parent
    if snapshot is None:
        raise HubError(f"{info.repo}: the repository has none of the files of a PEFT adapter")
    cache_repo = snapshot.parent.parent
    # what `main` resolved to, as huggingface_hub records it itself, so the cache answers offline too
    (cache_repo / "refs").mkdir(exist_ok=True)
    (cache_repo / "refs" / "main").write_text(info.revision)
    return snapshot, cache_repo


def cached(repo: str, patterns: list[str]) -> tuple[Path, Path, str]:
    """Offline: (snapshot, cache repo, commit) of a repo already in the Hugging Face cache. Raises HubError."""
    from huggingface_hub import snapshot_download

    try:
        snapshot = Path(snapshot_download(repo, allow_patterns=patterns, local_files_only=True))
    except Exception:
        raise HubError(f"{repo}: cannot download the hub adapter (not in the local Hugging Face cache and "
                       "HF_HUB_OFFLINE is set)") from None
    return snapshot, snapshot.parent.parent, snapshot.name


def card_metadata(adapter_dir: Path) -> dict[str, Any]:
    """The README card's metadata (its YAML header) that says where the adapter comes from; {} without one."""
    from huggingface_hub.repocard import metadata_load

    path = adapter_dir / README
    if not path.is_file():
        return {}
    try:
        meta = metadata_load(path) or {}
    except Exception:  # a card that is not YAML says nothing we keep
        return {}
    out = {k: meta[k] for k in CARD_KEYS if k in meta}
    return json.loads(json.dumps(out, default=str))  # JSON-safe (YAML dates ...) for the adapter card


# -- registry: what was imported from which commit ----------------------------------------------------------
def registered(registry: AdapterRegistry, base: LoadedModel) -> dict[tuple[str, str], AdapterVersion]:
    """{(repo, commit): version} of the versions on `base` imported from a hub."""
    out = {}
    for v in registry.list(base_model=base.spec, origin="imported"):
        if v.base_fingerprint == base.fingerprint and v.tags.get(TAG_REPO):
            out.setdefault((v.tags[TAG_REPO], v.tags.get(TAG_REVISION, "")), v)
    return out


def tag(registry: AdapterRegistry, version: AdapterVersion, repo: str, revision: str) -> None:
    for key, value in ((TAG_REPO, repo), (TAG_REVISION, revision)):
        registry.client.set_model_version_tag(version.name, version.version, key, value)
        version.tags[key] = value


def pool_versions(registry: AdapterRegistry, base_spec: str, name: str) -> list[AdapterVersion]:
    """The registered versions on `base_spec` imported from the published pool `name`."""
    pool = HUB_POOLS[name]
    return [v for v in registry.list(base_model=base_spec, origin="imported") if pool.holds(v.tags.get(TAG_REPO, ""))]


# -- experiment configs that name a published pool -----------------------------------------------------------
def pool_task_names(task_names: list[str], hub_pools: list[str], model_spec: str, storage: StorageConfig,
                    tracking_uri: str | None) -> list[str]:
    """Candidates by task: a trained pool's `task_names`, then the adapters on `model_spec` registered from
    each published pool of `hub_pools` (what the compose steps pass to `pool_candidates`)."""
    names = list(task_names)
    if hub_pools:
        from lorasoup_core.registry import open_registry

        registry = open_registry(storage, tracking_uri)
        for pool in hub_pools:
            names += sorted({v.task for v in pool_versions(registry, model_spec, pool)} - set(names))
    return names


def check_pool_names(names: list[str]) -> list[str]:
    unknown = [n for n in names if n not in HUB_POOLS]
    if unknown:
        raise ValueError(f"unknown hub pool {unknown[0]!r}; known: {', '.join(HUB_POOLS)}")
    return names


def unreachable(pool: HubPool, timeout: float) -> str | None:
    """Why the hub cannot list `pool` now (offline, or no answer within `timeout`), or None."""
    if offline():
        return "HF_HUB_OFFLINE is set"
    url, source = endpoint()
    query = urllib.parse.urlencode({"author": pool.author, "search": pool.prefix, "limit": 1})
    try:
        with urllib.request.urlopen(f"{url}/api/models?{query}", timeout=timeout):
            return None
    except urllib.error.HTTPError as err:
        return None if err.code < 500 else f"the hub at {url} ({source}) answered HTTP {err.code}"
    except (OSError, ValueError) as err:
        return (f"the hub at {url} ({source}) did not answer within {timeout:g} s "
                f"({type(err).__name__}: {getattr(err, 'reason', err)})")


def _model_cached(spec: str) -> bool:
    from huggingface_hub import try_to_load_from_cache

    return isinstance(try_to_load_from_cache(spec, "config.json"), str)


def config_problems(hub_pools: list[str], spec: str, storage: StorageConfig, tracking_uri: str | None,
                    timeout: float | None = None) -> list[str]:
    """One line per published pool of `hub_pools` that cannot be had: none of its adapters is registered for
    the base model `spec` and the hub does not answer; and the base model itself when it is a hub id that is
    neither cached nor downloadable. A tracking server that does not answer is left to the services check
    (asking its registry would wait out the client's retries)."""
    names = list(hub_pools)
    if not names:
        return []
    from lorasoup_core.registry import open_registry
    from lorasoup_core.services import PROBE_TIMEOUT_S, service_problems
    from lorasoup_core.settings import get_settings

    timeout = PROBE_TIMEOUT_S if timeout is None else timeout
    uri = tracking_uri or get_settings().tracking_uri
    fresh = uri.startswith("sqlite:///") and not Path(uri.removeprefix("sqlite:///")).expanduser().exists()
    if not fresh and service_problems(None, uri, timeout):
        return []
    registry = None if fresh else open_registry(storage, tracking_uri)  # no database: nothing yet
    missing = [n for n in names if registry is None or not pool_versions(registry, spec, n)]
    model_missing = is_hub_id(spec) and not _model_cached(spec)
    down = unreachable(HUB_POOLS[names[0]], timeout) if missing or model_missing else None
    if not down:
        return []
    problems = [f"hub_pool {name}: none of its adapters is imported for {spec} and {down}; run `lorasoup pool "
                f"import {name} --model {spec}` where the hub answers (or set HF_ENDPOINT to a mirror), with the "
                "same store and tracking server" for name in missing]
    if model_missing:
        problems.append(f"model.spec {spec}: not in the local Hugging Face cache and {down}")
    return problems
