"""Centroid: weights from the cosine between the target's embedding centroid and each adapter's
stored embedding (softmax with a temperature); no search. The cheap baseline a search must beat."""

from __future__ import annotations

import numpy as np
import torch
from pydantic import Field

from lorasoup_core.adapters.embed import centroid as unit_centroid
from lorasoup_core.adapters.embed import embed_texts
from lorasoup_core.compose.base import ComposerOutput, ComposerSettings, Inputs, composer
from lorasoup_core.compose.stack import Candidate, CompositionError
from lorasoup_core.data import Example, Task
from lorasoup_core.models import LoadedModel


def similarities(base: LoadedModel, candidates: list[Candidate], target: Task, shots: list[Example]) -> np.ndarray:
    """Cosine between the target shots' embedding centroid and each candidate's stored embedding (cards only:
    no adapter weights are read)."""
    centre = np.asarray(unit_centroid(embed_texts(base, [target.prompt(e) for e in shots])))
    sims = []
    for c in candidates:
        if c.card is None or not c.card.embedding:
            raise CompositionError(f"adapter {c.name!r} has no stored embedding (its card lacks one); "
                                   "centroid and the embedding filter need it")
        e = np.asarray(c.card.embedding)
        if e.shape != centre.shape:
            raise CompositionError(f"adapter {c.name!r}: embedding size {e.shape[0]} != base model's {centre.shape[0]}")
        sims.append(float(e @ centre / (np.linalg.norm(e) + 1e-12)))
    return np.asarray(sims)


class CentroidSettings(ComposerSettings):
    temperature: float = Field(0.05, gt=0, description="Softmax temperature over cosine similarities.")


@composer("centroid", CentroidSettings)
def centroid(inp: Inputs[CentroidSettings]) -> ComposerOutput:
    """Softmax of the cosines between the shots' embedding centroid and each adapter's; no search."""
    sims = similarities(inp.base, inp.stack.candidates, inp.target, inp.shots)
    s = sims / inp.settings.temperature
    w = np.exp(s - s.max())
    w = w / w.sum()
    factors = inp.stack.exact(torch.tensor(w, dtype=inp.base.dtype, device=inp.base.device))
    return ComposerOutput(w.tolist(), factors, diagnostics={"similarities": sims.tolist()})
