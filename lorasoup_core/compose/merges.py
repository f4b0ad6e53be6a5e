"""Merge baselines: weighted sums of the candidates, with PEFT's merge_utils for TIES and DARE."""

from __future__ import annotations

from typing import Literal

import torch
from peft.utils import merge_utils
from pydantic import Field

from lorasoup_core.compose.base import ComposerOutput, ComposerSettings, Factors, Inputs, composer
from lorasoup_core.compose.stack import CompositionError


class LinearSettings(ComposerSettings):
    weights: list[float] | None = Field(None, description="One weight per candidate (default uniform 1/n).")


class SvdSettings(LinearSettings):
    svd_rank: int | None = Field(None, ge=1, description="Rank of the exported adapter (truncated SVD per "
                                 "module); default the candidates' largest rank.")


class DareSettings(SvdSettings):
    density: float = Field(0.5, gt=0, le=1, description="Fraction of delta entries kept.")


class TiesSettings(DareSettings):
    majority_sign_method: Literal["total", "frequency"] = Field("total", description="Sign election.")


def _weights(inp: Inputs[LinearSettings]) -> torch.Tensor:
    n = len(inp.stack)
    w = inp.settings.weights or [1.0 / n] * n
    if len(w) != n:
        raise CompositionError(f"{len(w)} weights for {n} candidates ({', '.join(inp.stack.names)})")
    return torch.tensor(w, dtype=inp.base.dtype, device=inp.base.device)


def to_lora(delta: torch.Tensor, rank: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Best rank-`rank` factors (A [r, in], B [out, r]) of a dense delta (truncated SVD)."""
    u, s, vh = torch.linalg.svd(delta.float(), full_matrices=False)
    r = min(rank, s.numel())
    return vh[:r].to(delta.dtype).contiguous(), (u[:, :r] * s[:r]).to(delta.dtype).contiguous()


def _deltas(inp: Inputs, m: str) -> list[torch.Tensor]:
    return [b @ a for a, b in zip(inp.stack.A[m], inp.stack.B[m], strict=True)]


def _dense_merge(inp: Inputs[SvdSettings], merge) -> ComposerOutput:
    rank = inp.settings.svd_rank or max(max(r) for r in inp.stack.ranks.values())
    torch.manual_seed(inp.seed)  # DARE prunes at random
    w = _weights(inp)
    factors: Factors = {m: to_lora(merge(_deltas(inp, m), w), rank) for m in inp.stack.modules}
    return ComposerOutput(w.tolist(), factors)


@composer("linear", LinearSettings)
def linear(inp: Inputs[LinearSettings]) -> ComposerOutput:
    """The exact weighted sum sum_i w_i s_i B_i A_i, exported losslessly by concatenating ranks."""
    w = _weights(inp)
    return ComposerOutput(w.tolist(), inp.stack.exact(w))


@composer("uniform")
def uniform(inp: Inputs) -> ComposerOutput:
    """The exact average of the candidates (weights 1/n)."""
    n = len(inp.stack)
    w = torch.full((n,), 1.0 / n, dtype=inp.base.dtype, device=inp.base.device)
    return ComposerOutput(w.tolist(), inp.stack.exact(w))


@composer("svd", SvdSettings)
def svd(inp: Inputs[SvdSettings]) -> ComposerOutput:
    """The weighted sum compressed to `svd_rank` by truncated SVD per module."""
    return _dense_merge(inp, merge_utils.task_arithmetic)


@composer("ties", TiesSettings)
def ties(inp: Inputs[TiesSettings]) -> ComposerOutput:
    """TIES (PEFT merge_utils) on the dense deltas, truncated by SVD."""
    s = inp.settings
    return _dense_merge(inp, lambda t, w: merge_utils.ties(t, w, s.density, s.majority_sign_method))


@composer("dare_linear", DareSettings)
def dare_linear(inp: Inputs[DareSettings]) -> ComposerOutput:
    """DARE pruning, then a weighted sum (PEFT merge_utils) on the dense deltas, truncated by SVD."""
    return _dense_merge(inp, lambda t, w: merge_utils.dare_linear(t, w, inp.settings.density))


@composer("dare_ties", TiesSettings)
def dare_ties(inp: Inputs[TiesSettings]) -> ComposerOutput:
    """DARE pruning, then TIES sign election (PEFT merge_utils) on the dense deltas, truncated by SVD."""
    s = inp.settings
    return _dense_merge(inp, lambda t, w: merge_utils.dare_ties(t, w, s.density, s.majority_sign_method))
