"""Candidates stacked on the device, and the base model patched to apply a composition.

The candidates' factors live in one tensor per module (A: [n, r, in], B: [n, out, r], B pre-scaled by
alpha/r); a composition is recomputed by one contraction per module into buffers the patched Linear
layers read, so a search step never rebuilds or reloads a state dict.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import torch

from lorasoup_core.adapters import AdapterCard, read_lora_factors
from lorasoup_core.models import LoadedModel


class CompositionError(ValueError):
    """Inputs a composition cannot use; names the adapter at fault."""


@dataclass
class Candidate:
    name: str
    path: Path
    card: AdapterCard | None = None
    version: str | None = None


class Stack:
    def __init__(self, base: LoadedModel, candidates: list[Candidate]) -> None:
        if not candidates:
            raise CompositionError("the candidate pool is empty: nothing to compose")
        self.names = [c.name for c in candidates]
        self.candidates = candidates
        per: list[dict] = []
        for c in candidates:
            if c.card is not None and c.card.base_fingerprint != base.fingerprint:
                raise CompositionError(f"adapter {c.name!r} was trained on {c.card.base_model!r}, not on the base "
                                       f"model {base.spec!r} (fingerprints differ)")
            factors, scaling = read_lora_factors(c.path)
            per.append({m: (a, b * scaling[m]) for m, (a, b) in factors.items()})
        modules = sorted(per[0])
        modules_of_model = dict(base.model.named_modules())
        for c, f in zip(candidates, per, strict=True):
            if sorted(f) != modules:
                raise CompositionError(f"adapter {c.name!r} adapts other modules than {candidates[0].name!r}")
            for m, (a, b) in f.items():
                layer = modules_of_model.get(m)
                if not isinstance(layer, torch.nn.Linear) or a.shape[1] != layer.in_features \
                        or b.shape[0] != layer.out_features:
                    raise CompositionError(f"adapter {c.name!r}: module {m} does not match the base model's layer")
        self.modules = modules
        self.ranks = {m: [f[m][0].shape[0] for f in per] for m in modules}
        dev, dt = base.device, base.dtype
        self.same_rank = all(len(set(r)) == 1 for r in self.ranks.values())
        self.A = {m: [f[m][0].to(dev, dt) for f in per] for m in modules}
        self.B = {m: [f[m][1].to(dev, dt) for f in per] for m in modules}
        if self.same_rank:  # stacked for one contraction per module
            self.As = {m: torch.stack(self.A[m]) for m in modules}
            self.Bs = {m: torch.stack(self.B[m]) for m in modules}
        self.Acat = {m: torch.cat(self.A[m], 0) for m in modules}  # [sum r, in]

    def __len__(self) -> int:
        return len(self.names)

    def lorahub(self, w: torch.Tensor) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
        """(sum w_i A_i, sum w_i s_i B_i) per module: LoraHub's formula, cross terms included."""
        if not self.same_rank:
            bad = next(m for m in self.modules if len(set(self.ranks[m])) > 1)
            raise CompositionError(f"the lorahub formula needs equal ranks; module {bad} has ranks "
                                   f"{dict(zip(self.names, self.ranks[bad], strict=True))}; use formula 'exact'")
        return {m: (torch.einsum("n,nri->ri", w, self.As[m]), torch.einsum("n,nor->or", w, self.Bs[m]))
                for m in self.modules}

    def exact(self, w: torch.Tensor) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
        """sum_i w_i s_i B_i A_i as one LoRA of rank sum r_i (A concatenated, B weighted and concatenated);
        `w` is [n] or per module [n_modules, n]."""
        out = {}
        for j, m in enumerate(self.modules):
            wm = w[j] if w.dim() == 2 else w
            out[m] = (self.Acat[m], torch.cat([wm[i] * b for i, b in enumerate(self.B[m])], 1))
        return out


@contextlib.contextmanager
def patched(base: LoadedModel, modules: list[str]) -> Iterator[dict[str, list]]:
    """Patch the named Linear layers to add x A^T B^T from a slot the caller fills; restores them after."""
    slots: dict[str, list] = {m: [None] for m in modules}
    named = dict(base.model.named_modules())
    for m in modules:
        layer = named[m]
        slot = slots[m]

        def forward(x, _orig=layer.forward, _slot=slot):
            y = _orig(x)
            if _slot[0] is None:
                return y
            a, b = _slot[0]
            return y + (x @ a.T) @ b.T

        layer.forward = forward
    try:
        yield slots
    finally:
        for m in modules:
            del named[m].forward  # back to the class's own forward
