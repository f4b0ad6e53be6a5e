"""The pool's registered adapters as composition candidates: the newest version of each task on this
base model, downloaded (digests verified) into a local cache keyed by the artifact."""

from __future__ import annotations

from lorasoup_core.adapters import AdapterCard
from lorasoup_core.compose import Candidate
from lorasoup_core.fingerprint import sha256_json
from lorasoup_core.registry import AdapterRegistry, AdapterVersion, RegistryError
from lorasoup_core.settings import get_settings


def pool_versions(registry: AdapterRegistry, base_spec: str, base_fingerprint: str,
                  task_names: list[str] | None = None) -> list[AdapterVersion]:
    """The newest registered version of each pool task (all trained or imported tasks when None)."""
    latest: dict[str, AdapterVersion] = {}
    for v in registry.list(base_model=base_spec):
        if v.base_fingerprint != base_fingerprint or v.origin in ("composed", "tuned"):
            continue
        if task_names is not None and v.task not in task_names:
            continue
        if v.task not in latest or int(v.version) > int(latest[v.task].version):
            latest[v.task] = v
    if task_names is None:
        return [latest[t] for t in sorted(latest)]
    missing = sorted(set(task_names) - set(latest))
    if missing:
        raise RegistryError(f"no registered adapter on {base_spec} for pool task(s): {', '.join(missing)}; "
                            "train the pool first")
    return [latest[t] for t in task_names]


def as_candidates(registry: AdapterRegistry, versions: list[AdapterVersion]) -> list[Candidate]:
    """Local, verified copies of the versions (reused when already downloaded) as Candidates."""
    out = []
    for v in versions:
        dest = get_settings().home / "work" / "candidates" / sha256_json(v.store_uri)[:16]
        if not (dest / "adapter_config.json").is_file():
            dest.parent.mkdir(parents=True, exist_ok=True)
            registry.download(v, dest)
        out.append(Candidate(name=v.task, path=dest, card=AdapterCard.read(dest), version=v.ref))
    return out


def pool_candidates(registry: AdapterRegistry, base_spec: str, base_fingerprint: str,
                    task_names: list[str] | None = None) -> list[Candidate]:
    return as_candidates(registry, pool_versions(registry, base_spec, base_fingerprint, task_names))
