"""Composition: stack candidate adapters and compose them for a target task (one module per method)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from lorasoup_core.compose import cat, cat_fewshot, centroid, lorahub, merges  # noqa: F401  (register the composers)
from lorasoup_core.compose.base import (
    COMPOSERS,
    ComposerOutput,
    ComposerSettings,
    ComposerSpec,
    Composition,
    Inputs,
    ObjectiveSettings,
    composer,
    settings_for,
)
from lorasoup_core.compose.engine import Engine, applied
from lorasoup_core.compose.export import export_peft
from lorasoup_core.compose.objective import FewShot
from lorasoup_core.compose.stack import Candidate, CompositionError, Stack
from lorasoup_core.data import Example, Task
from lorasoup_core.models import LoadedModel

__all__ = ["COMPOSERS", "Candidate", "ComposerOutput", "ComposerSettings", "ComposerSpec", "Composition",
           "CompositionError", "Engine", "FewShot", "Inputs", "ObjectiveSettings", "Stack", "applied", "compose",
           "composer", "export_peft", "few_shot_loss", "settings_for"]


def compose(method: str, base: LoadedModel, candidates: list[Candidate], target: Task, shots: list[Example],
            settings: ComposerSettings | Mapping[str, Any] | None = None, *, seed: int = 0,
            train_data: Mapping[str, Task] | None = None) -> Composition:
    """Compose `candidates` for `target` with the named method, fitted on `shots`; `settings` are the
    method's own (validated by its settings class), `seed` drives searches, initialisations and pruning;
    `train_data` maps candidate names to their training tasks (needed by methods that train on them)."""
    spec = COMPOSERS.get(method)
    settings = settings_for(method, settings)
    if not shots:
        raise CompositionError(f"target {target.name!r}: no few-shot examples to fit on")
    stack = Stack(base, candidates)
    output = spec.fn(Inputs(base, stack, target, shots, settings, seed, dict(train_data or {})))
    if not isinstance(output, ComposerOutput):
        raise TypeError(f"composer {method!r} returned {type(output).__name__}, not ComposerOutput")
    broken = [m for m, (a, b) in output.factors.items() if not (torch.isfinite(a).all() and torch.isfinite(b).all())]
    if broken:  # never export (and register) a NaN adapter, whatever the method
        culprits = stack.nonfinite()
        raise CompositionError(
            f"{method} composition for target {target.name!r} has NaN/inf weights in {len(broken)} module(s) "
            f"(first: {broken[0]}); " + (f"candidate(s) with NaN/inf weights: {', '.join(culprits)}; retrain them "
                                         "or leave them out of the pool" if culprits else "the candidates are finite"))
    max_length = settings.max_length if isinstance(settings, ObjectiveSettings) else 256
    return Composition(method, stack.names, output, base, target, shots, settings, seed,
                       versions=[c.version for c in candidates],
                       few_shot_loss=few_shot_loss(base, output.factors, target, shots, max_length),
                       train_fingerprints={n: t.fingerprint for n, t in sorted((train_data or {}).items())})


def few_shot_loss(base: LoadedModel, factors, target: Task, shots: list[Example], max_length: int = 256) -> float:
    """The few-shot loss with `factors` applied (None: the base model alone)."""
    import torch

    fs = FewShot(base, target, shots, max_length)
    with torch.inference_mode(), applied(base, factors or {}):
        return float(fs.loss())
