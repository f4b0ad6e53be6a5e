"""Merge baselines, each named after the PEFT `add_weighted_adapter` combination type it reproduces.

`linear` / `uniform` are exact weighted sums. `ties`, `dare_linear`, `dare_ties` merge the LoRA factors
A and B separately (PEFT's factor-level combinations, as LoRA Soups ran them); `svd`, `ties_svd`,
`dare_linear_svd`, `dare_ties_svd` merge the dense deltas B @ A and truncate the result by SVD, reporting
the truncation error. TIES and DARE themselves are PEFT's `merge_utils`.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Literal

import torch
from peft.utils import merge_utils
from pydantic import Field

from lorasoup_core.adapters import read_lora_factors
from lorasoup_core.compose.base import ComposerOutput, ComposerSettings, Factors, Inputs, composer
from lorasoup_core.compose.stack import CompositionError, Stack

Merge = Callable[[list[torch.Tensor], torch.Tensor], torch.Tensor]


def _svd_rank():
    return Field(None, ge=1, description="Rank of the exported adapter (truncated SVD of each module's merged "
                 "delta); default the candidates' largest rank.")


class LinearSettings(ComposerSettings):
    weights: list[float] | None = Field(None, description="One weight per candidate (default uniform 1/n).")


class SvdSettings(LinearSettings):
    svd_rank: int | None = _svd_rank()


class DareLinearSettings(ComposerSettings):
    weights: list[float] | None = Field(None, description="One weight per candidate (default 1.0 each, as in "
                                        "LoRA Soups).")
    density: float = Field(0.75, gt=0, le=1, description="Fraction of each candidate tensor's entries kept "
                           "(PEFT `density`); 1.0 prunes nothing.")


class TiesSettings(DareLinearSettings):
    majority_sign_method: Literal["total", "frequency"] = Field(
        "total", description="Sign election per entry: the sign of the sum of the pruned candidate values "
        "(total) or of the count of their signs (frequency).")


class DareLinearSvdSettings(DareLinearSettings):
    svd_rank: int | None = _svd_rank()


class TiesSvdSettings(TiesSettings):
    svd_rank: int | None = _svd_rank()


def refuse_nonfinite(stack: Stack, method: str, target: str) -> None:
    """A candidate with NaN/inf factors, named before any work: else SVD fails with torch's LinAlgError and
    CAT's objective is NaN, neither naming the adapter at fault (import checks factors; a hand-made or
    corrupted candidate directory is not imported)."""
    every = [*stack.Acat.values(), *stack.Bcat.values()]
    if bool(torch.stack([torch.isfinite(t).all() for t in every]).all()):  # one device sync
        return
    raise CompositionError(f"{method} for target {target!r}: candidate(s) with NaN/inf weights: "
                           f"{', '.join(stack.nonfinite())}; retrain them or leave them out of the pool")


def _weights(inp: Inputs, default: float) -> list[float]:
    n = len(inp.stack)
    w = [default] * n if inp.settings.weights is None else list(inp.settings.weights)
    if len(w) != n:
        raise CompositionError(f"{len(w)} weights for {n} candidates ({', '.join(inp.stack.names)})")
    return w


def _model_order(inp: Inputs) -> list[str]:
    """The modules in the model's order, as PEFT visits them: DARE's masks then draw the same random numbers."""
    order = {name: i for i, (name, _) in enumerate(inp.base.model.named_modules())}
    return sorted(inp.stack.modules, key=order.__getitem__)


def _truncate(delta: torch.Tensor, rank: int) -> tuple[torch.Tensor, torch.Tensor, float]:
    """Best rank-`rank` factors (A [r, in], B [out, r]) of `delta` and the relative Frobenius error
    ||delta - B A|| / ||delta|| (from the dropped singular values)."""
    u, s, vh = torch.linalg.svd(delta.float(), full_matrices=False)
    r = min(rank, s.numel())
    total = s.norm()
    err = float(s[r:].norm() / total) if total > 0 else 0.0
    return vh[:r].to(delta.dtype).contiguous(), (u[:, :r] * s[:r]).to(delta.dtype).contiguous(), err


def to_lora(delta: torch.Tensor, rank: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Best rank-`rank` factors (A [r, in], B [out, r]) of a dense delta (truncated SVD)."""
    a, b, _ = _truncate(delta, rank)
    return a, b


def _dense_merge(inp: Inputs, merge: Merge, default_weight: float, kind: str) -> ComposerOutput:
    """PEFT's `*_svd` combinations: merge the deltas s_i B_i A_i, truncate each module to `svd_rank`."""
    stack = inp.stack
    refuse_nonfinite(stack, kind, inp.target.name)
    rank = inp.settings.svd_rank or max(max(r) for r in stack.ranks.values())
    w = _weights(inp, default_weight)
    wt = torch.tensor(w, device=inp.base.device)  # float32, as PEFT builds its weights
    torch.manual_seed(inp.seed)  # DARE prunes at random
    factors: Factors = {}
    errors: dict[str, float] = {}
    for m in _model_order(inp):
        delta = merge([b @ a for a, b in zip(stack.A[m], stack.B[m], strict=True)], wt).to(inp.base.dtype)
        a, b, errors[m] = _truncate(delta, rank)
        factors[m] = (a, b)
    return ComposerOutput(w, factors, diagnostics={
        "peft_combination_type": kind, "svd_rank": rank, "svd_truncation_error": errors,
        "svd_truncation_error_max": max(errors.values())})


def _factor_merge(inp: Inputs, merge: Merge, kind: str) -> ComposerOutput:
    """PEFT's factor-level combinations (`LoraModel._generalized_task_arithmetic_weighted_adapter`).

    Each candidate's weight times its scaling, w_i s_i, is split as sqrt(|w_i s_i|) on B_i and
    sign(w_i s_i) sqrt(|w_i s_i|) on A_i; the A's and the B's are merged separately (TIES elects signs on
    the unweighted raw factors) and PEFT's new adapter has lora_alpha = r, so its delta is B_merged @ A_merged.
    """
    stack = inp.stack
    refuse_nonfinite(stack, kind, inp.target.name)
    bad = next((m for m in stack.modules if len(set(stack.ranks[m])) > 1), None)
    if bad is not None:
        raise CompositionError(f"{kind} merges the LoRA factors and needs equal ranks; module {bad} has ranks "
                               f"{dict(zip(stack.names, stack.ranks[bad], strict=True))}; use {kind}_svd")
    w = _weights(inp, 1.0)
    if len(stack) == 1:
        merge = merge_utils.task_arithmetic  # PEFT combines a single adapter linearly (no pruning)
    # The stack folds s_i into B; sign election needs the raw B_i, so take them (and s_i) from the files.
    raw = [read_lora_factors(c.path) for c in stack.candidates]
    dev, dt = inp.base.device, inp.base.dtype
    torch.manual_seed(inp.seed)  # DARE prunes at random
    factors: Factors = {}
    for m in _model_order(inp):
        ws = [wi * scaling[m] for wi, (_, scaling) in zip(w, raw, strict=True)]
        w_a = torch.tensor([math.sqrt(abs(x)) * (1 if x >= 0 else -1) for x in ws], device=dev)
        w_b = torch.tensor([math.sqrt(abs(x)) for x in ws], device=dev)
        a = merge(list(stack.A[m]), w_a)
        b = merge([f[m][1].to(dev, dt) for f, _ in raw], w_b)
        factors[m] = (a.to(dt).contiguous(), b.to(dt).contiguous())
    return ComposerOutput(w, factors, diagnostics={"peft_combination_type": kind})


def _ties(s: TiesSettings) -> Merge:
    return lambda t, w: merge_utils.ties(t, w, s.density, s.majority_sign_method)


def _dare_linear(s: DareLinearSettings) -> Merge:
    return lambda t, w: merge_utils.dare_linear(t, w, s.density)


def _dare_ties(s: TiesSettings) -> Merge:
    return lambda t, w: merge_utils.dare_ties(t, w, s.density, s.majority_sign_method)


@composer("linear", LinearSettings)
def linear(inp: Inputs[LinearSettings]) -> ComposerOutput:
    """The exact weighted sum sum_i w_i s_i B_i A_i, exported losslessly by concatenating ranks."""
    w = torch.tensor(_weights(inp, 1.0 / len(inp.stack)), dtype=inp.base.dtype, device=inp.base.device)
    return ComposerOutput(w.tolist(), inp.stack.exact(w))


@composer("uniform")
def uniform(inp: Inputs) -> ComposerOutput:
    """The exact average of the candidates (weights 1/n)."""
    n = len(inp.stack)
    w = torch.full((n,), 1.0 / n, dtype=inp.base.dtype, device=inp.base.device)
    return ComposerOutput(w.tolist(), inp.stack.exact(w))


@composer("svd", SvdSettings)
def svd(inp: Inputs[SvdSettings]) -> ComposerOutput:
    """The weighted sum of the deltas truncated to `svd_rank` by SVD per module (PEFT 'svd')."""
    return _dense_merge(inp, merge_utils.task_arithmetic, 1.0 / len(inp.stack), "svd")


@composer("ties", TiesSettings)
def ties(inp: Inputs[TiesSettings]) -> ComposerOutput:
    """TIES on the LoRA factors, A and B separately (PEFT 'ties'); rank r."""
    return _factor_merge(inp, _ties(inp.settings), "ties")


@composer("dare_linear", DareLinearSettings)
def dare_linear(inp: Inputs[DareLinearSettings]) -> ComposerOutput:
    """DARE pruning then a weighted sum on the LoRA factors, A and B separately (PEFT 'dare_linear'); rank r."""
    return _factor_merge(inp, _dare_linear(inp.settings), "dare_linear")


@composer("dare_ties", TiesSettings)
def dare_ties(inp: Inputs[TiesSettings]) -> ComposerOutput:
    """DARE pruning then TIES sign election on the LoRA factors, A and B separately (PEFT 'dare_ties'); rank r."""
    return _factor_merge(inp, _dare_ties(inp.settings), "dare_ties")


@composer("ties_svd", TiesSvdSettings)
def ties_svd(inp: Inputs[TiesSvdSettings]) -> ComposerOutput:
    """TIES on the dense deltas, truncated to `svd_rank` by SVD per module (PEFT 'ties_svd')."""
    return _dense_merge(inp, _ties(inp.settings), 1.0, "ties_svd")


@composer("dare_linear_svd", DareLinearSvdSettings)
def dare_linear_svd(inp: Inputs[DareLinearSvdSettings]) -> ComposerOutput:
    """DARE then a weighted sum on the dense deltas, truncated by SVD per module (PEFT 'dare_linear_svd')."""
    return _dense_merge(inp, _dare_linear(inp.settings), 1.0, "dare_linear_svd")


@composer("dare_ties_svd", TiesSvdSettings)
def dare_ties_svd(inp: Inputs[TiesSvdSettings]) -> ComposerOutput:
    """DARE then TIES on the dense deltas, truncated by SVD per module (PEFT 'dare_ties_svd')."""
    return _dense_merge(inp, _dare_ties(inp.settings), 1.0, "dare_ties_svd")
