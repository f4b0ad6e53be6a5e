"""Merge baselines: weighted sums of the candidates, with PEFT's merge_utils for TIES and DARE."""

from __future__ import annotations

import torch
from peft.utils import merge_utils

from lorasoup_core.compose.base import COMPOSERS, Factors, Inputs
from lorasoup_core.compose.stack import CompositionError


def _weights(inp: Inputs) -> torch.Tensor:
    n = len(inp.stack)
    w = inp.config.weights or [1.0 / n] * n
    if len(w) != n:
        raise CompositionError(f"linear: {len(w)} weights for {n} candidates ({', '.join(inp.stack.names)})")
    return torch.tensor(w, dtype=inp.base.dtype, device=inp.base.device)


def to_lora(delta: torch.Tensor, rank: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Best rank-`rank` factors (A [r, in], B [out, r]) of a dense delta (truncated SVD)."""
    u, s, vh = torch.linalg.svd(delta.float(), full_matrices=False)
    r = min(rank, s.numel())
    return vh[:r].to(delta.dtype).contiguous(), (u[:, :r] * s[:r]).to(delta.dtype).contiguous()


def _deltas(inp: Inputs, m: str) -> list[torch.Tensor]:
    return [b @ a for a, b in zip(inp.stack.A[m], inp.stack.B[m], strict=True)]


def _dense_merge(inp: Inputs, merge) -> Factors:
    rank = inp.config.svd_rank or max(max(r) for r in inp.stack.ranks.values())
    torch.manual_seed(inp.config.seed)  # DARE prunes at random
    w = _weights(inp)
    return {m: to_lora(merge(_deltas(inp, m), w), rank) for m in inp.stack.modules}


@COMPOSERS.register("linear")
def linear(inp: Inputs):
    """The exact weighted sum sum_i w_i s_i B_i A_i, exported losslessly by concatenating ranks."""
    w = _weights(inp)
    return w.tolist(), [], inp.stack.exact(w)


@COMPOSERS.register("uniform")
def uniform(inp: Inputs):
    """The exact average of the candidates (weights 1/n)."""
    n = len(inp.stack)
    w = torch.full((n,), 1.0 / n, dtype=inp.base.dtype, device=inp.base.device)
    return w.tolist(), [], inp.stack.exact(w)


@COMPOSERS.register("svd")
def svd(inp: Inputs):
    """The weighted sum compressed to `svd_rank` by truncated SVD per module."""
    return _weights(inp).tolist(), [], _dense_merge(inp, merge_utils.task_arithmetic)


@COMPOSERS.register("ties")
def ties(inp: Inputs):
    c = inp.config
    return _weights(inp).tolist(), [], _dense_merge(
        inp, lambda t, w: merge_utils.ties(t, w, c.density, c.majority_sign_method))


@COMPOSERS.register("dare_linear")
def dare_linear(inp: Inputs):
    return _weights(inp).tolist(), [], _dense_merge(inp, lambda t, w: merge_utils.dare_linear(t, w, inp.config.density))


@COMPOSERS.register("dare_ties")
def dare_ties(inp: Inputs):
    c = inp.config
    return _weights(inp).tolist(), [], _dense_merge(
        inp, lambda t, w: merge_utils.dare_ties(t, w, c.density, c.majority_sign_method))
