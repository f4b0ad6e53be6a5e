"""CAT fitted on the target's few-shot examples (not LoRA Soups' protocol; `cat` is): one learnable
coefficient per adapter per LoRA module, trained with Adam on the shots' loss (the adapters stay frozen),
initialised uniform (1/n).

The shots' loss is evaluated before each step, so step i's trace value is the loss of the coefficients
that step starts from; the coefficients exported are those with the lowest evaluated loss (the "best
evaluated" point), not those after the last update, which is never evaluated.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
from pydantic import Field
from tqdm.auto import tqdm

from lorasoup_core import interrupt
from lorasoup_core.compose.base import ComposerOutput, Inputs, ObjectiveSettings, composer
from lorasoup_core.compose.engine import Engine
from lorasoup_core.compose.merges import refuse_nonfinite
from lorasoup_core.compose.objective import FewShot
from lorasoup_core.compose.stack import CompositionError


class CatFewShotSettings(ObjectiveSettings):
    steps: int = Field(30, ge=1, description="Adam steps on the per-module coefficients.")
    lr: float = Field(0.05, gt=0, description="Learning rate of the coefficients.")
    normalise: Literal["softmax", "free"] = Field("softmax", description="Coefficients per module "
                                                  "softmax-normalised over adapters, or free.")


@composer("cat_fewshot", CatFewShotSettings)
def cat_fewshot(inp: Inputs[CatFewShotSettings]) -> ComposerOutput:
    """CAT on the target's shots: per-module coefficients trained with Adam on the few-shot loss; the
    coefficients with the lowest evaluated loss are exported."""
    cfg, stack, base = inp.settings, inp.stack, inp.base
    refuse_nonfinite(stack, "cat_fewshot", inp.target.name)
    fewshot = FewShot(base, inp.target, inp.shots, cfg.max_length, cfg.batch_size)
    n, k = len(stack), len(stack.modules)
    torch.manual_seed(inp.seed)  # kept from the original `cat` (nothing here draws from it)
    # softmax of zeros = uniform 1/n; free coefficients start at 1/n too
    init = torch.zeros(k, n) if cfg.normalise == "softmax" else torch.full((k, n), 1.0 / n)
    params = init.to(base.device, torch.float32).requires_grad_(True)
    opt = torch.optim.Adam([params], lr=cfg.lr)

    def coefficients() -> torch.Tensor:
        return torch.softmax(params, -1) if cfg.normalise == "softmax" else params

    trace: list[float] = []
    best_value, best_step, best = math.inf, 0, coefficients().detach().clone()
    engine = Engine(base, stack, "exact", 1, cfg.engine_mode, fewshot.tokens_per_composition)
    with engine:
        for step in tqdm(range(cfg.steps), desc=f"cat_fewshot {inp.target.name}", leave=False):
            interrupt.check()
            w = coefficients()
            engine.set(w[None])
            loss = fewshot.loss()
            value = loss.detach().item()
            if not math.isfinite(value):
                raise CompositionError(f"cat_fewshot objective is {value} at step {step} (target "
                                       f"{inp.target.name!r}); the candidates are finite, so the loss itself "
                                       "overflowed: lower lr or use dtype float32")
            if value < best_value:  # the loss of the coefficients this step starts from
                best_value, best_step, best = value, step, w.detach().clone()
            opt.zero_grad()
            loss.backward()
            opt.step()
            trace.append(value)
    weights = {m: best[j].tolist() for j, m in enumerate(stack.modules)}
    return ComposerOutput(weights, stack.exact(best.to(base.dtype)), trace,
                          {"best_step": best_step, "best_loss": best_value, "last_loss": trace[-1],
                           "trainable_params": params.numel()})
