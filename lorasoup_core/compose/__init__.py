"""Composition: stack candidate adapters and compose them for a target task (one module per method)."""

from __future__ import annotations

from lorasoup_core.compose import cat, centroid, lorahub, merges  # noqa: F401  (register the composers)
from lorasoup_core.compose.base import COMPOSERS, Composition, Inputs
from lorasoup_core.compose.config import ComposeConfig
from lorasoup_core.compose.engine import Engine, applied
from lorasoup_core.compose.export import export_peft
from lorasoup_core.compose.objective import FewShot
from lorasoup_core.compose.stack import Candidate, CompositionError, Stack
from lorasoup_core.data import Example, Task
from lorasoup_core.models import LoadedModel

__all__ = ["COMPOSERS", "Candidate", "ComposeConfig", "Composition", "CompositionError", "Engine", "FewShot",
           "Inputs", "Stack", "applied", "compose", "export_peft", "few_shot_loss"]


def compose(method: str, base: LoadedModel, candidates: list[Candidate], target: Task, shots: list[Example],
            config: ComposeConfig | None = None) -> Composition:
    """Compose `candidates` for `target` with the named method, fitted on `shots`."""
    config = config or ComposeConfig()
    composer = COMPOSERS.get(method)
    if not shots:
        raise CompositionError(f"target {target.name!r}: no few-shot examples to fit on")
    stack = Stack(base, candidates)
    inp = Inputs(base, stack, target, shots, config)
    weights, trace, factors = composer(inp)
    comp = Composition(method, stack.names, weights, trace, factors, base, target, shots, config,
                       versions=[c.version for c in candidates], extra=dict(inp.extra))
    comp.extra["few_shot_loss"] = few_shot_loss(base, factors, target, shots, config.max_length)
    return comp


def few_shot_loss(base: LoadedModel, factors, target: Task, shots: list[Example], max_length: int = 256) -> float:
    """The few-shot loss with `factors` applied (None: the base model alone)."""
    import torch

    fs = FewShot(base, target, shots, max_length)
    with torch.inference_mode(), applied(base, factors or {}):
        return float(fs.loss())
