"""LoRA Soups' CAT: one learnable coefficient per adapter per LoRA module, trained with Adam on the
few-shot examples (the adapters stay frozen); initialised uniform and seeded."""

from __future__ import annotations

import math

import torch
from tqdm.auto import tqdm

from lorasoup_core.compose.base import COMPOSERS, Inputs
from lorasoup_core.compose.objective import FewShot
from lorasoup_core.compose.stack import CompositionError, patched


@COMPOSERS.register("cat")
def cat(inp: Inputs):
    cfg, stack, base = inp.config, inp.stack, inp.base
    fewshot = FewShot(base, inp.target, inp.shots, cfg.max_length)
    n, k = len(stack), len(stack.modules)
    torch.manual_seed(cfg.seed)
    # softmax of zeros = uniform 1/n; free coefficients start at 1/n too
    logits = torch.zeros(k, n, device=base.device, requires_grad=True) if cfg.cat_normalise == "softmax" else \
        torch.full((k, n), 1.0 / n, device=base.device, requires_grad=True)
    opt = torch.optim.Adam([logits], lr=cfg.cat_lr)

    def coefficients() -> torch.Tensor:
        return torch.softmax(logits, -1) if cfg.cat_normalise == "softmax" else logits

    trace = []
    with patched(base, stack.modules) as slots:
        for step in tqdm(range(cfg.cat_steps), desc=f"cat {inp.target.name}", leave=False):
            for m, ab in stack.exact(coefficients().to(base.dtype)).items():
                slots[m][0] = ab
            loss = fewshot.loss()
            value = loss.detach().item()
            if not math.isfinite(value):
                raise CompositionError(f"cat objective is {value} at step {step} (target {inp.target.name!r})")
            opt.zero_grad()
            loss.backward()
            opt.step()
            trace.append(value)
    w = coefficients().detach()
    weights = {m: w[j].tolist() for j, m in enumerate(stack.modules)}
    return weights, trace, stack.exact(w.to(base.dtype))
