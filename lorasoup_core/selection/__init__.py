"""Candidate filtering: chainable strategies behind one registry, after hard constraints.

random (LoraHub's protocol), loss (each adapter alone on the few-shot examples), embedding (cosine
to the target's embedding centroid). Constraints: same base model, same adapted modules.
"""

from __future__ import annotations

import random as _random
from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from lorasoup_core.compose import Candidate, ComposeConfig, Inputs, Stack, few_shot_loss
from lorasoup_core.compose.centroid import similarities
from lorasoup_core.config import StrictModel
from lorasoup_core.data import Example, Task
from lorasoup_core.models import LoadedModel
from lorasoup_core.plugins import Registry


class FilterSpec(StrictModel):
    name: str
    k: int = 20
    seed: int = 0


@dataclass
class Selection:
    candidates: list[Candidate]
    scores: dict[str, float] = field(default_factory=dict)
    log: list[str] = field(default_factory=list)


# A filter: (base, candidates, target, shots, spec) -> {name: score}, higher is better
Filter = Callable[[LoadedModel, list[Candidate], Task, list[Example], FilterSpec], dict[str, float]]
FILTERS: Registry[Filter] = Registry("candidate filter")


@FILTERS.register("random")
def random_filter(base, cands, target, shots, spec):
    rng = _random.Random(spec.seed)
    order = rng.sample(range(len(cands)), len(cands))
    return {cands[i].name: float(len(cands) - rank) for rank, i in enumerate(order)}


@FILTERS.register("loss")
def loss_filter(base, cands, target, shots, spec):
    """Minus the few-shot loss of each adapter applied alone."""
    stack = Stack(base, cands)
    out = {}
    for i, c in enumerate(cands):
        w = torch.zeros(len(cands), dtype=base.dtype, device=base.device)
        w[i] = 1
        out[c.name] = -few_shot_loss(base, stack.exact(w), target, shots)
    return out


@FILTERS.register("embedding")
def embedding_filter(base, cands, target, shots, spec):
    stack = Stack(base, cands)
    sims = similarities(Inputs(base, stack, target, shots, ComposeConfig()))
    return {c.name: float(s) for c, s in zip(cands, sims, strict=True)}


def constrain(base: LoadedModel, pool: list[Candidate], log: list[str]) -> list[Candidate]:
    """Keep adapters on this base model that adapt the same modules as the majority."""
    kept = []
    for c in pool:
        if c.card is not None and c.card.base_fingerprint != base.fingerprint:
            log.append(f"dropped {c.name}: trained on {c.card.base_model}, not {base.spec}")
        else:
            kept.append(c)
    targets = [tuple(sorted(c.card.target_modules)) if c.card else () for c in kept]
    if targets:
        common = max(set(targets), key=targets.count)
        for c, t in zip(list(kept), targets, strict=True):
            if t != common:
                kept.remove(c)
                log.append(f"dropped {c.name}: adapts {list(t)}, the pool adapts {list(common)}")
    return kept


def select_candidates(base: LoadedModel, pool: list[Candidate], target: Task, shots: list[Example],
                      chain: list[FilterSpec], k: int | None = None) -> Selection:
    log: list[str] = []
    cands = constrain(base, pool, log)
    scores: dict[str, float] = {}
    for spec in chain:
        scores = FILTERS.get(spec.name)(base, cands, target, shots, spec)
        keep = spec.k if k is None else min(spec.k, k)
        ranked = sorted(cands, key=lambda c: -scores[c.name])[:keep]
        log.append(f"{spec.name}: kept {len(ranked)} of {len(cands)}: " +
                   ", ".join(f"{c.name}={scores[c.name]:.3f}" for c in ranked))
        cands = ranked
    if not cands:
        raise ValueError(f"no candidate adapters left for {target.name!r}: " + "; ".join(log))
    return Selection(cands, {c.name: scores.get(c.name, float("nan")) for c in cands}, log)


__all__ = ["FILTERS", "FilterSpec", "Selection", "select_candidates"]
