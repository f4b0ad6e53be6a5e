"""Every composer of `lorasoup_core.compose` as a method: it consumes the selected candidates and the
target's shots (and, for those that train on them, the candidates' own data) and yields an adapter."""

from __future__ import annotations

from functools import partial

from lorasoup_core.compose import COMPOSERS
from lorasoup_core.compose.target import compose_for_target
from lorasoup_core.methods.base import (
    METHODS,
    Consumes,
    MethodCall,
    MethodEnv,
    MethodOutput,
    MethodSpec,
    Yields,
)
from lorasoup_core.models import LoadedModel


def compose_method(composer: str, base: LoadedModel, call: MethodCall, env: MethodEnv) -> MethodOutput:
    composed = compose_for_target(base, call.candidates, call.target, call.shots, composer, call.settings, env.run,
                                  seed=call.seed, train_data=call.candidate_data, label=call.name,
                                  export_rank=call.export_rank, base_ref=call.base_ref)
    return MethodOutput(adapter_dir=composed.adapter_dir, run_id=composed.run_id, weights=composed.weights,
                        trace=composed.trace, seconds=composed.seconds, few_shot_loss=composed.few_shot_loss,
                        trainable_params=composed.diagnostics.get("trainable_params"),
                        diagnostics=composed.diagnostics)


def _composer_method(name: str) -> MethodSpec | None:
    if name not in COMPOSERS:
        return None
    spec = COMPOSERS.get(name)
    consumes = {Consumes.CANDIDATES, Consumes.SHOTS} | ({Consumes.CANDIDATE_DATA} if spec.needs_train_data else set())
    doc = " ".join((spec.fn.__doc__ or "").strip().split("\n\n")[0].split())
    return MethodSpec(name, partial(compose_method, name), spec.settings, frozenset(consumes), Yields.ADAPTER,
                      doc or f"the {name} composer")


METHODS.add_source(_composer_method, COMPOSERS.names)
