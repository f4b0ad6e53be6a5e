"""The composer registry: each method is one small module that registers its function together with
the settings class it reads (mergekit's pattern), and returns a typed ComposerOutput."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Generic, Literal, TypeVar

import torch
from pydantic import Field

from lorasoup_core.compose.stack import CompositionError, Stack
from lorasoup_core.config import MethodSettings, validate_settings
from lorasoup_core.data import Example, Task
from lorasoup_core.models import LoadedModel
from lorasoup_core.plugins import Registry

Factors = dict[str, tuple[torch.Tensor, torch.Tensor]]  # module -> (A [R, in], B [out, R]), scaling folded into B
Weights = list[float] | dict[str, list[float]]  # per adapter, or per module per adapter (cat)


class ComposerSettings(MethodSettings):
    """A composer's parameters; each method declares its own subclass beside its function."""


class ObjectiveSettings(ComposerSettings):
    """Settings of the methods that fit the few-shot loss (searched or trained)."""

    max_length: int = Field(256, ge=8, description="Tokens per few-shot example.")
    batch_size: int | None = Field(None, ge=1, description="Few-shot examples per forward (default all); "
                                   "the loss does not depend on it, only memory does.")
    engine_mode: Literal["auto", "dense", "lowrank"] = Field(
        "auto", description="How a composition is applied during the fit: dense (W0 + delta per module), "
        "low-rank (base + x A^T B^T), or auto (the cheaper by flop count for the batch).")


S = TypeVar("S", bound=ComposerSettings)


@dataclass
class Inputs(Generic[S]):
    """What a composer gets: the base, the stacked candidates, the target and its shots, its settings, the
    run's seed (searches, initialisations and random pruning draw from it) and, when the caller has
    them, the candidates' own training data by candidate name (LoRA Soups' CAT trains on their mix)."""

    base: LoadedModel
    stack: Stack
    target: Task
    shots: list[Example]
    settings: S
    seed: int = 0
    train_data: dict[str, Task] = field(default_factory=dict)


@dataclass
class ComposerOutput:
    """What a composer returns: the weights it chose, the factors of the composed adapter, the objective
    per evaluation or step (empty for merges) and diagnostics (timings, similarities, engine modes ...)."""

    weights: Weights
    factors: Factors
    trace: list[float] = field(default_factory=list)
    diagnostics: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ComposerSpec:
    name: str
    fn: Callable[[Inputs[Any]], ComposerOutput]
    settings: type[ComposerSettings]
    needs_train_data: bool = False  # trains on the candidates' own data (Inputs.train_data)


COMPOSERS: Registry[ComposerSpec] = Registry("composer")


def composer(name: str, settings: type[ComposerSettings] = ComposerSettings, *, needs_train_data: bool = False):
    """Register a composer function under `name` with the settings class it reads."""

    def decorator(fn: Callable[[Inputs[Any]], ComposerOutput]) -> Callable[[Inputs[Any]], ComposerOutput]:
        COMPOSERS.register(name)(ComposerSpec(name, fn, settings, needs_train_data))
        return fn

    return decorator


def settings_for(method: str, values: ComposerSettings | Mapping[str, Any] | None = None) -> ComposerSettings:
    """The composer's settings, validated by its own class: an unknown key or a bad value is one error that
    names the method and lists what it accepts."""
    try:
        return validate_settings(method, COMPOSERS.get(method).settings, values)
    except ValueError as err:
        raise CompositionError(str(err)) from None


@dataclass
class Composition:
    """A finished composition: the composer's output with what it was made from."""

    method: str
    names: list[str]
    output: ComposerOutput
    base: LoadedModel
    target: Task
    shots: list[Example]
    settings: ComposerSettings
    seed: int = 0
    versions: list[str | None] = field(default_factory=list)
    few_shot_loss: float | None = None  # the fitted shots' loss under the composition (shots only: not a score)
    train_fingerprints: dict[str, str] = field(default_factory=dict)  # candidate -> its training data used

    @property
    def weights(self) -> Weights:
        return self.output.weights

    @property
    def factors(self) -> Factors:
        return self.output.factors

    @property
    def trace(self) -> list[float]:
        return self.output.trace

    @property
    def diagnostics(self) -> dict[str, Any]:
        return self.output.diagnostics

    def weights_by_adapter(self) -> dict[str, float]:
        """One number per adapter for tables and heat maps (per-module weights are averaged)."""
        w = self.weights
        if isinstance(w, dict):
            return {n: sum(float(v[i]) for v in w.values()) / len(w) for i, n in enumerate(self.names)}
        return {n: float(x) for n, x in zip(self.names, w, strict=True)}
