"""Centroid: weights from the cosine between the target's embedding centroid and each adapter's
stored embedding (softmax with a temperature); no search. The cheap baseline a search must beat."""

from __future__ import annotations

import numpy as np
import torch

from lorasoup_core.adapters.embed import centroid as unit_centroid
from lorasoup_core.adapters.embed import embed_texts
from lorasoup_core.compose.base import COMPOSERS, Inputs
from lorasoup_core.compose.stack import CompositionError


def similarities(inp: Inputs) -> np.ndarray:
    target = np.asarray(unit_centroid(embed_texts(inp.base, [inp.target.prompt(e) for e in inp.shots])))
    sims = []
    for c in inp.stack.candidates:
        if c.card is None or not c.card.embedding:
            raise CompositionError(f"adapter {c.name!r} has no stored embedding (its card lacks one); "
                                   "centroid and the embedding filter need it")
        e = np.asarray(c.card.embedding)
        if e.shape != target.shape:
            raise CompositionError(f"adapter {c.name!r}: embedding size {e.shape[0]} != base model's {target.shape[0]}")
        sims.append(float(e @ target / (np.linalg.norm(e) + 1e-12)))
    return np.asarray(sims)


@COMPOSERS.register("centroid")
def centroid(inp: Inputs):
    s = similarities(inp) / inp.config.temperature
    w = np.exp(s - s.max())
    w = w / w.sum()
    return w.tolist(), [], inp.stack.exact(torch.tensor(w, dtype=inp.base.dtype, device=inp.base.device))
