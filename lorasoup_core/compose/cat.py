"""LoRA Soups' CAT: one learnable coefficient per adapter per LoRA module, trained with Adam on the
few-shot examples (the adapters stay frozen); initialised uniform (1/n), seeded."""

from __future__ import annotations

import math
from typing import Literal

import torch
from pydantic import Field
from tqdm.auto import tqdm

from lorasoup_core.compose.base import ComposerOutput, Inputs, ObjectiveSettings, composer
from lorasoup_core.compose.engine import Engine
from lorasoup_core.compose.objective import FewShot
from lorasoup_core.compose.stack import CompositionError


class CatSettings(ObjectiveSettings):
    steps: int = Field(30, ge=1, description="Adam steps on the per-module coefficients.")
    lr: float = Field(0.05, gt=0, description="Learning rate of the coefficients.")
    normalise: Literal["softmax", "free"] = Field("softmax", description="Coefficients per module "
                                                  "softmax-normalised over adapters, or free.")


@composer("cat", CatSettings)
def cat(inp: Inputs[CatSettings]) -> ComposerOutput:
    """LoRA Soups' CAT: per-module coefficients trained with Adam on the few-shot loss."""
    cfg, stack, base = inp.settings, inp.stack, inp.base
    fewshot = FewShot(base, inp.target, inp.shots, cfg.max_length, cfg.batch_size)
    n, k = len(stack), len(stack.modules)
    torch.manual_seed(inp.seed)
    # softmax of zeros = uniform 1/n; free coefficients start at 1/n too
    init = torch.zeros(k, n) if cfg.normalise == "softmax" else torch.full((k, n), 1.0 / n)
    params = init.to(base.device, torch.float32).requires_grad_(True)
    opt = torch.optim.Adam([params], lr=cfg.lr)

    def coefficients() -> torch.Tensor:
        return torch.softmax(params, -1) if cfg.normalise == "softmax" else params

    trace = []
    engine = Engine(base, stack, "exact", 1, cfg.engine_mode, fewshot.tokens_per_composition)
    with engine:
        for step in tqdm(range(cfg.steps), desc=f"cat {inp.target.name}", leave=False):
            engine.set(coefficients()[None])
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
    return ComposerOutput(weights, stack.exact(w.to(base.dtype)), trace)
