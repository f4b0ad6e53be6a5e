"""DATA-MIX (LoRA Soups' baseline): one LoRA trained on a mixture of the whole pool's training data, with
the pool's training settings. It is trained once per (base, mixture, training) and found in the registry
afterwards, so every target and seed of a run evaluates the same adapter."""

from __future__ import annotations

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
from lorasoup_core.pool import ensure_datamix
from lorasoup_core.registry import open_registry


@method("datamix", consumes={Consumes.POOL_DATA}, yields=Yields.ADAPTER)
def datamix(base: LoadedModel, call: MethodCall, env: MethodEnv) -> MethodOutput:
    """One LoRA on the pool's data mixed by pool.datamix_proportions (default equal), seeded by the run's seed."""
    if call.pool is None:
        raise MethodError(f"method {call.name!r} (datamix) needs the pool's data: run it from an experiment config")
    registry = open_registry(env.storage, env.run.tracking_uri)
    ensured = ensure_datamix(call.pool, base, registry, env.run, seed=call.experiment_seed)
    return MethodOutput(version=ensured.version, run_id=ensured.version.run_id)
