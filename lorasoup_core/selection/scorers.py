"""Ranking filters: random (LoraHub's protocol), loss (each adapter alone on the few-shot examples),
embedding (cosine to the target's embedding centroid), oracle (the upstream tasks a composed target is
built from, when the target says so: an upper bound for the others)."""

from __future__ import annotations

import random as _random

import numpy as np
import torch

from lorasoup_core.compose import CompositionError, FewShot, Stack, applied
from lorasoup_core.compose.centroid import similarities
from lorasoup_core.selection.base import FILTERS, skip


@FILTERS.register("random")
def random_filter(base, cands, target, shots, spec, log):
    """A seeded random order (scores are ranks): k candidates drawn from the pool, as LoraHub does."""
    rng = _random.Random(spec.seed)
    order = rng.sample(range(len(cands)), len(cands))
    return {cands[i].name: float(len(cands) - rank) for rank, i in enumerate(order)}


@FILTERS.register("loss")
def loss_filter(base, cands, target, shots, spec, log):
    """Minus the few-shot loss of each adapter applied alone (one adapter in memory at a time)."""
    fewshot = FewShot(base, target, shots)
    out = {}
    with torch.inference_mode():
        for c in cands:
            stack = Stack(base, [c])
            with applied(base, stack.exact(torch.ones(1))):
                out[c.name] = -float(fewshot.loss())
    return out


def embedding_problem(c, size: int | None) -> str | None:
    """Why a candidate's stored embedding cannot be compared (None when it can)."""
    if c.card is None or not c.card.embedding:
        return ("no stored embedding (its card lacks one; an adapter imported without examples.jsonl has none)")
    e = np.asarray(c.card.embedding, dtype=float)
    if size is not None and e.shape != (size,):
        return f"its stored embedding has size {e.size}, the base model's hidden size is {size}"
    if not np.isfinite(e).all() or not np.linalg.norm(e) > 0:
        return "its stored embedding is not finite or is all zeros"
    return None


@FILTERS.register("embedding")
def embedding_filter(base, cands, target, shots, spec, log):
    """Cosine between the shots' embedding centroid and each adapter card's stored embedding.

    Adapters without a usable stored embedding (e.g. imported without examples) are skipped with a
    warning naming them, in the log and the `lorasoup.selection` logger; the others are ranked."""
    size = getattr(getattr(base.model, "config", None), "hidden_size", None)
    usable = []
    for c in cands:
        why = embedding_problem(c, size if isinstance(size, int) else None)
        if why is None:
            usable.append(c)
            continue
        skip(log, target, f"embedding: skipped adapter {c.name!r}: {why}")
    if not usable:
        return {}
    sims = similarities(base, usable, target, shots)
    return {c.name: float(s) for c, s in zip(usable, sims, strict=True)}


@FILTERS.register("oracle")
def oracle_filter(base, cands, target, shots, spec, log):
    """The target's own components (`Task.components`, e.g. a composed skill's two skills), and only them."""
    if not target.components:
        raise CompositionError(f"oracle filter: target {target.name!r} does not name the tasks it is built from "
                               "(only composed procedural skills do)")
    names = {c.name for c in cands}
    missing = [t for t in target.components if t not in names]
    if missing:
        log.append(f"oracle: component(s) not in the pool: {', '.join(missing)}")
    return {c.name: 1.0 for c in cands if c.name in target.components}
