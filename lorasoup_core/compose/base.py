"""What a composer returns, and the composer registry."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

from lorasoup_core.compose.config import ComposeConfig
from lorasoup_core.compose.stack import Stack
from lorasoup_core.data import Example, Task
from lorasoup_core.models import LoadedModel
from lorasoup_core.plugins import Registry

Factors = dict[str, tuple[torch.Tensor, torch.Tensor]]  # module -> (A [R, in], B [out, R]), scaling folded into B


@dataclass
class Composition:
    method: str
    names: list[str]
    weights: list[float] | dict[str, list[float]]  # per adapter, or per module per adapter (cat)
    trace: list[float]  # objective per evaluation (search) or per step (cat); empty for merges
    factors: Factors
    base: LoadedModel
    target: Task
    shots: list[Example]
    config: ComposeConfig
    versions: list[str | None] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class Inputs:
    base: LoadedModel
    stack: Stack
    target: Task
    shots: list[Example]
    config: ComposeConfig
    extra: dict[str, Any] = field(default_factory=dict)  # diagnostics a composer reports (timings ...)


# A composer: Inputs -> (weights, trace, factors)
Composer = Callable[[Inputs], tuple[Any, list[float], Factors]]
COMPOSERS: Registry[Composer] = Registry("composer")
