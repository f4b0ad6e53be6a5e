"""Apply compositions of a candidate Stack to the base model, for a population of weight vectors at once.

The target Linear layers are patched (restored on exit) to read per-module state recomputed by
`Engine.set(weights)`: one contraction per module from the stacked factors, written in place into
preallocated buffers (no state-dict rebuild, no allocation per step under inference mode).

Population: `weights` is [P, n] (or [P, n_modules, n] for per-module weights); the batch seen by the
model is P copies of the examples, and row block p goes through composition p (batched matmuls).

Per module the state is either *dense* (W0 + delta per candidate composition, replacing the base matmul)
or *low-rank* (base output + x A^T B^T). Dense is cheaper when the tokens per composition exceed
out*in/(in+out); `mode="auto"` picks per module from the batch shape.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Literal

import torch
import torch.nn.functional as F

from lorasoup_core.compose.stack import Stack
from lorasoup_core.models import LoadedModel

Formula = Literal["exact", "lorahub"]
Mode = Literal["auto", "dense", "lowrank"]


class _Slot:
    """Per-module composition state read by the patched forward."""

    __slots__ = ("a", "b", "bias", "bufs", "dense", "drop", "in_f", "layer", "out_f", "pop", "ranks", "w", "w0",
                 "wr")

    def __init__(self, layer: torch.nn.Linear, dense: bool) -> None:
        self.layer, self.dense = layer, dense
        self.in_f, self.out_f = layer.in_features, layer.out_features
        self.w0, self.bias = layer.weight, layer.bias
        self.pop = 1
        self.bufs: dict[str, torch.Tensor] | None = None
        self.w = self.a = self.b = self.wr = None  # dense W [P,out,in]; low-rank A [P|1,R,in], B [P|1,out,R]
        self.drop = 0.0  # dropout on the LoRA input (low-rank only; Engine.train turns it on)
        self.ranks: list[int] | None = None  # exact formula: rank per candidate, one dropout mask each

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        p = self.pop
        if self.dense:
            if p == 1:
                return F.linear(x, self.w[0], self.bias)
            xs = x.reshape(p, -1, self.in_f)
            y = torch.bmm(xs, self.w.transpose(1, 2))
            if self.bias is not None:
                y = y + self.bias
            return y.reshape(*x.shape[:-1], self.out_f)
        y = F.linear(x, self.w0, self.bias)
        xs = x.reshape(p, -1, self.in_f)
        if self.drop and self.ranks is not None:  # each candidate draws its own mask, as separate LoRA layers do
            h = torch.cat([torch.matmul(F.dropout(xs, self.drop), a.transpose(-1, -2))
                           for a in self.a.split(self.ranks, -2)], -1)
        else:
            h = torch.matmul(F.dropout(xs, self.drop) if self.drop else xs, self.a.transpose(-1, -2))  # [P,tok,R]
        if self.wr is not None:  # exact formula: weights per rank column, B shared
            h = h * self.wr[:, None, :]
        d = torch.matmul(h, self.b.transpose(-1, -2))
        return y + d.reshape(y.shape)


class Engine:
    """Context manager: `with Engine(base, stack, formula, population) as eng: eng.set(w); model(...)`."""

    def __init__(self, base: LoadedModel, stack: Stack, formula: Formula = "exact", population: int = 1,
                 mode: Mode = "auto", tokens_per_composition: int | None = None, dropout: float = 0.0) -> None:
        if formula == "lorahub":
            stack.check_lorahub()
        self.base, self.stack, self.formula, self.population = base, stack, formula, population
        self.dropout = dropout  # on the LoRA input in training mode (see train); forces low-rank modules
        named = dict(base.model.named_modules())
        self.slots: dict[str, _Slot] = {}
        for m in stack.modules:
            layer = named[m]
            if mode == "auto":
                # dense: composition out*in*R once + tokens*out*in; low-rank: tokens*(out*in + (in+out)*R)
                dense = tokens_per_composition is not None and \
                    tokens_per_composition * (layer.in_features + layer.out_features) > \
                    layer.in_features * layer.out_features
            else:
                dense = mode == "dense"
            self.slots[m] = _Slot(layer, dense and not dropout)  # dense has no separate LoRA input to drop
            self.slots[m].ranks = stack.ranks[m] if formula == "exact" else None
        self._bn: dict[str, torch.Tensor] = {}  # lorahub formula: B per candidate, flattened (see _b_by_candidate)

    def __enter__(self) -> Engine:
        for slot in self.slots.values():
            slot.layer.forward = slot.forward
        return self

    def __exit__(self, *exc) -> None:
        for slot in self.slots.values():
            del slot.layer.forward  # back to nn.Linear.forward; the base weights were never touched

    def train(self, mode: bool = True) -> Engine:
        """Training mode: dropout (the Engine's `dropout`) on the LoRA input; off again with train(False)."""
        for slot in self.slots.values():
            slot.drop = self.dropout if mode else 0.0
        return self

    def set(self, weights: torch.Tensor) -> None:
        """Apply compositions: weights [P, n] (one per adapter) or [P, n_modules, n] (per module).

        Under no-grad the state is written into the slots' buffers in place (`out=`); with grad it is
        built functionally so gradients reach `weights`.
        """
        weights = weights.to(self.base.device, self.base.dtype)
        if weights.dim() == 1:
            weights = weights[None]
        p = weights.shape[0]
        grad = torch.is_grad_enabled() and weights.requires_grad
        for j, (m, slot) in enumerate(self.slots.items()):
            w = weights[:, j].contiguous() if weights.dim() == 3 else weights  # [P, n]
            if grad or slot.pop != p or slot.bufs is None:
                slot.bufs = None if grad else self._alloc(m, slot, p)
            slot.pop = p
            if self.formula == "lorahub":
                self._lorahub(m, slot, w, p)
            else:
                self._exact(m, slot, w, p)

    def _alloc(self, m: str, slot: _Slot, p: int) -> dict[str, torch.Tensor]:
        st, kw = self.stack, {"device": self.base.device, "dtype": self.base.dtype}
        r = st.Acat[m].shape[0] // len(st) if self.formula == "lorahub" else st.Acat[m].shape[0]
        bufs = {"wr": torch.empty(p, r, **kw)} if self.formula == "exact" else {
            "a": torch.empty(p, r, slot.in_f, **kw), "b": torch.empty(p, slot.out_f, r, **kw)}
        if slot.dense:
            bufs["w"] = torch.empty(p, slot.out_f, slot.in_f, **kw)
            if self.formula == "exact":
                bufs["bw"] = torch.empty(p, slot.out_f, r, **kw)
        return bufs

    def _lorahub(self, m: str, slot: _Slot, w: torch.Tensor, p: int) -> None:
        n, bufs = len(self.stack), slot.bufs
        a_n = self.stack.As[m].reshape(n, -1)  # a view: As is a view of the contiguous Acat
        b_n = self._b_by_candidate(m)
        if bufs is None:
            a = (w @ a_n).view(p, -1, slot.in_f)
            b = (w @ b_n).view(p, slot.out_f, -1)
        else:
            a = torch.mm(w, a_n, out=bufs["a"].view(p, -1)).view_as(bufs["a"])
            b = torch.mm(w, b_n, out=bufs["b"].view(p, -1)).view_as(bufs["b"])
        slot.a, slot.b, slot.wr = a, b, None
        if slot.dense:
            self._dense(slot, b, a)

    def _b_by_candidate(self, m: str) -> torch.Tensor:
        """[n, out*r] contiguous copy of the stacked B (made once per module)."""
        if m not in self._bn:
            self._bn[m] = self.stack.Bs[m].contiguous().view(len(self.stack), -1)
        return self._bn[m]

    def _exact(self, m: str, slot: _Slot, w: torch.Tensor, p: int) -> None:
        st, bufs = self.stack, slot.bufs
        wr = w[:, st.owner[m]] if bufs is None else torch.index_select(w, 1, st.owner[m], out=bufs["wr"])
        if slot.dense:
            bcat = st.Bcat[m][None]
            bw = bcat * wr[:, None, :] if bufs is None else torch.mul(bcat, wr[:, None, :], out=bufs["bw"])
            self._dense(slot, bw, st.Acat[m][None].expand(p, -1, -1))
        else:
            slot.a, slot.b, slot.wr = st.Acat[m][None], st.Bcat[m][None], wr

    @staticmethod
    def _dense(slot: _Slot, b: torch.Tensor, a: torch.Tensor) -> None:
        """W[p] = W0 + B[p] @ A[p]: one batched addmm, into the slot's buffer when there is one."""
        w0 = slot.w0[None].expand(b.shape[0], -1, -1)
        slot.w = torch.baddbmm(w0, b, a) if slot.bufs is None else torch.baddbmm(w0, b, a, out=slot.bufs["w"])

    def factors(self, weights: torch.Tensor) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
        """The composition of one weight vector ([n] or [n_modules, n]) as LoRA factors (scaling in B)."""
        weights = weights.to(self.base.device, self.base.dtype)
        return self.stack.lorahub(weights) if self.formula == "lorahub" else self.stack.exact(weights)


@contextlib.contextmanager
def applied(base: LoadedModel, factors: dict[str, tuple[torch.Tensor, torch.Tensor]]) -> Iterator[None]:
    """The base model with fixed LoRA factors (A [R, in], B [out, R], scaling in B) added; restored after."""
    named = dict(base.model.named_modules())
    layers = {m: named[m] for m in factors}
    for m, layer in layers.items():
        a, b = factors[m]

        def forward(x, _layer=layer, _a=a, _b=b):
            return F.linear(x, _layer.weight, _layer.bias) + (x @ _a.T) @ _b.T

        layer.forward = forward
    try:
        yield
    finally:
        for layer in layers.values():
            del layer.forward
