"""`arrow` and `arrow-gks`: per-token routing over the selected candidates through PEFT's own Arrow layers.

Arrow (Ostapenko et al. 2024, "Towards Modular LLMs by Building and Reusing a Library of LoRAs") needs no
fit: in every adapted layer each token goes to the top-k candidates whose prototype (the top right singular
vector of B·A) its input aligns with, mixed by a softmax over those alignments. GenKnowSub (`arrow-gks`)
first subtracts a general-knowledge LoRA from every expert; here that is the pool's DATA-MIX adapter (one
LoRA on the whole pool's data, trained once and found in the registry afterwards), the general adapter a
team that trained its pool has. The result is a routed adapter (`adapters.routed`): registered with its
lineage like any composition, evaluated unmerged, since the mix changes token by token.
"""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path

from pydantic import Field

from lorasoup_core import tracking
from lorasoup_core.adapters import AdapterCard
from lorasoup_core.adapters.routed import write_routed
from lorasoup_core.compose import Candidate
from lorasoup_core.config import MethodSettings
from lorasoup_core.fingerprint import sha256_json
from lorasoup_core.methods.base import (
    Consumes,
    MethodCall,
    MethodEnv,
    MethodError,
    MethodOutput,
    Yields,
    method,
)
from lorasoup_core.models import LoadedModel


class ArrowSettings(MethodSettings):
    top_k: int = Field(3, ge=1, description="Candidates mixed per token in each layer (PEFT's ArrowConfig default; "
                       "capped at the number of candidates).")
    router_temperature: float = Field(1.0, gt=0, description="Softmax temperature over the top-k alignments.")
    rng_seed: int = Field(0, description="Seed of PEFT's power iteration for the prototypes (reproducible routing).")


def _check_experts(candidates: list[Candidate], label: str) -> tuple[int, float, list[str]]:
    """Every candidate usable as an Arrow expert: finite, non-zero LoRA factors (PEFT's prototype needs a
    direction), and one rank and one set of modules for all (PEFT stacks them). (rank, alpha, modules)."""
    from lorasoup_core.selection.arrow import PrototypeError, prototypes

    if not candidates:
        raise MethodError(f"method {label!r}: no candidates to route over (the selection kept none)")
    shapes = {}
    for c in candidates:
        try:
            shapes[c.name] = {m: tuple(v.shape) for m, v in prototypes(c).items()}
        except (PrototypeError, ValueError) as err:
            raise MethodError(f"method {label!r}: adapter {c.name!r} cannot be an Arrow expert: {err}") from None
    configs = {c.name: json.loads((Path(c.path) / "adapter_config.json").read_text()) for c in candidates}
    first = candidates[0].name
    for c in candidates[1:]:
        if shapes[c.name] != shapes[first] or configs[c.name].get("r") != configs[first].get("r"):
            raise MethodError(f"method {label!r}: adapter {c.name!r} adapts other modules or has another rank than "
                              f"{first!r} (Arrow mixes experts of one shape: select with the `compatible` filter)")
    cfg = configs[first]
    return int(cfg["r"]), float(cfg.get("lora_alpha", cfg["r"])), sorted({m.rsplit(".", 1)[-1] for m in shapes[first]})


def route(base: LoadedModel, call: MethodCall, env: MethodEnv, general: list[tuple[str, Path]]) -> MethodOutput:
    """Write the routed adapter over `call.candidates` (with GenKnowSub's `general` adapters, if any)."""
    settings: ArrowSettings = call.settings  # type: ignore[assignment]
    target, label = call.target, call.name
    if call.export_rank:
        raise MethodError(f"method {label!r}: a routed adapter mixes its candidates per token and cannot be "
                          "exported as one LoRA of capped rank (export_rank); evaluate or serve it through PEFT")
    rank, alpha, modules = _check_experts(call.candidates, label)
    if general:
        _check_experts([Candidate(n, p) for n, p in general] + call.candidates[:1], label)
    tags = {"lorasoup.step": "compose", "lorasoup.task": target.name, "lorasoup.method": label,
            "lorasoup.composer": call.method}
    with tracking.run(env.run.experiment, f"compose {target.name} {label}", parent_run_id=env.run.parent_run_id,
                      tracking_uri=env.run.tracking_uri, tags=tags, store_uri=env.run.store_uri) as run_id:
        tracking.log_params(run_id, {"method": call.method, "candidates": [c.version or c.name for c in call.candidates],
                                     "general": [n for n, _ in general], **settings.model_dump(mode="json")},
                            env.run.tracking_uri)
        start = time.perf_counter()
        work = env.work_dir(call)
        out = Path(tempfile.mkdtemp(dir=work, prefix=f"{run_id or 'run'}-"))  # this run's own directory
        spec = write_routed(out, [(c.name, Path(c.path)) for c in call.candidates], [p for _, p in general],
                            top_k=settings.top_k, router_temperature=settings.router_temperature,
                            rng_seed=settings.rng_seed)
        names, versions = [c.name for c in call.candidates], [c.version for c in call.candidates]
        AdapterCard(
            name=f"{target.name}-{label}", task=target.name, base_model=base.spec, base_model_path=base.hf_path,
            base_model_hub_id=base.hub_id, base_fingerprint=base.fingerprint,
            data_fingerprint=sha256_json([target.fingerprint, [[s.input, s.target] for s in call.shots]]),
            config_fingerprint=sha256_json([call.method, settings.model_dump(mode="json"), names, versions,
                                            [n for n, _ in general]]),
            training=settings.model_dump(mode="json") | {"top_k_used": spec.top_k}, rank=rank, alpha=alpha,
            target_modules=modules, origin="composed", kind="arrow",
            lineage={"method": call.method, "label": label, "candidates": names, "versions": versions,
                     "general": [n for n, _ in general], "top_k": spec.top_k},
        ).write(out)
        seconds = time.perf_counter() - start
        tracking.log_metrics(run_id, {"compose_seconds": seconds, "experts": len(names)},
                             tracking_uri=env.run.tracking_uri)
    return MethodOutput(adapter_dir=out, run_id=run_id, seconds=seconds, trainable_params=0,
                        diagnostics={"experts": len(names), "top_k": spec.top_k})


@method("arrow", ArrowSettings, consumes={Consumes.CANDIDATES, Consumes.SHOTS}, yields=Yields.ADAPTER)
def arrow(base: LoadedModel, call: MethodCall, env: MethodEnv) -> MethodOutput:
    """Arrow routing (PEFT's Arrow layers): each token mixes the top-k candidates its input aligns with."""
    return route(base, call, env, [])


@method("arrow-gks", ArrowSettings, consumes={Consumes.CANDIDATES, Consumes.SHOTS, Consumes.POOL_DATA},
        yields=Yields.ADAPTER)
def arrow_gks(base: LoadedModel, call: MethodCall, env: MethodEnv) -> MethodOutput:
    """Arrow with GenKnowSub: the pool's DATA-MIX adapter subtracted from every candidate before routing."""
    from lorasoup_core.pool import ensure_datamix
    from lorasoup_core.registry import open_registry

    if call.pool is None:
        raise MethodError(f"method {call.name!r} (arrow-gks) needs the pool's data for its general adapter: run it "
                          "from an experiment config")
    registry = open_registry(env.storage, env.run.tracking_uri)
    general = ensure_datamix(call.pool, base, registry, env.run, seed=call.experiment_seed).version
    with tempfile.TemporaryDirectory(prefix="lorasoup-gks-") as tmp:
        path = registry.download(general, Path(tmp) / "general")
        return route(base, call, env, [(f"{general.name}/{general.version}", path)])
