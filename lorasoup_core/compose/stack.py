"""Candidates stacked on the device: one tensor per module of concatenated factors (A: [sum r, in],
B: [out, sum r], B pre-scaled by alpha/r), with per-candidate views. `compose.engine` applies
compositions of them by one contraction per module, so a search step never rebuilds or reloads a
state dict.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from lorasoup_core.adapters import AdapterCard, UnsupportedAdapter, read_lora_factors
from lorasoup_core.models import LoadedModel


class CompositionError(ValueError):
    """Inputs a composition cannot use; names the adapter at fault."""


@dataclass
class Candidate:
    name: str
    path: Path
    card: AdapterCard | None = None
    version: str | None = None

    def cache_identity(self) -> list[str | None]:
        """The adapter's content, not where this machine keeps its copy."""
        fps = [self.card.base_fingerprint, self.card.data_fingerprint, self.card.config_fingerprint] \
            if self.card else [str(self.path)]
        return [self.name, self.version, *fps]


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
            try:
                factors, scaling = read_lora_factors(c.path, name=c.name)
            except UnsupportedAdapter as err:
                raise CompositionError(str(err)) from None
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
        # One copy per module: concatenated ranks; per-candidate factors and stacks are views of it.
        self.Acat = {m: torch.cat([f[m][0] for f in per], 0).to(dev, dt) for m in modules}  # [sum r, in]
        self.Bcat = {m: torch.cat([f[m][1] for f in per], 1).to(dev, dt) for m in modules}  # [out, sum r]
        del per
        self.A = {m: list(self.Acat[m].split(self.ranks[m], 0)) for m in modules}
        self.B = {m: list(self.Bcat[m].split(self.ranks[m], 1)) for m in modules}
        n = len(candidates)
        if self.same_rank:  # [n, r, in] and [n, out, r] for one contraction per module
            self.As = {m: self.Acat[m].view(n, -1, self.Acat[m].shape[1]) for m in modules}
            self.Bs = {m: self.Bcat[m].view(self.Bcat[m].shape[0], n, -1).permute(1, 0, 2) for m in modules}
        # owner[m][j]: the candidate whose rank-column j is (to spread weights over concatenated ranks)
        self.owner = {m: torch.repeat_interleave(torch.arange(n, device=dev),
                                                 torch.tensor(self.ranks[m], device=dev)) for m in modules}

    def __len__(self) -> int:
        return len(self.names)

    def nonfinite(self) -> list[str]:
        """Candidates with a NaN or inf in their factors (they make every composition's output NaN)."""
        return [name for i, name in enumerate(self.names)
                if not all(bool(torch.isfinite(x[i]).all()) for x in (*self.A.values(), *self.B.values()))]

    def lorahub(self, w: torch.Tensor) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
        """(sum w_i A_i, sum w_i s_i B_i) per module: LoraHub's formula, cross terms included; `w` is [n] or
        per module [n_modules, n]."""
        self.check_lorahub()
        out = {}
        for j, m in enumerate(self.modules):
            wm = w[j] if w.dim() == 2 else w
            out[m] = (torch.einsum("n,nri->ri", wm, self.As[m]), torch.einsum("n,nor->or", wm, self.Bs[m]))
        return out

    def check_lorahub(self) -> None:
        if not self.same_rank:
            bad = next(m for m in self.modules if len(set(self.ranks[m])) > 1)
            raise CompositionError(f"the lorahub formula needs equal ranks; module {bad} has ranks "
                                   f"{dict(zip(self.names, self.ranks[bad], strict=True))}; use formula 'exact'")

    def exact(self, w: torch.Tensor) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
        """sum_i w_i s_i B_i A_i as one LoRA of rank sum r_i (A concatenated, B weighted and concatenated);
        `w` is [n] or per module [n_modules, n]."""
        out = {}
        for j, m in enumerate(self.modules):
            wm = w[j] if w.dim() == 2 else w
            out[m] = (self.Acat[m], self.Bcat[m] * wm[self.owner[m]].to(self.Bcat[m].dtype))
        return out
