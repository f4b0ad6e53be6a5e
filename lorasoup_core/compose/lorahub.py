"""LoraHub: a gradient-free search (nevergrad) of one weight per adapter on the few-shot loss."""

from __future__ import annotations

import math

import nevergrad as ng
import numpy as np
import torch
from tqdm.auto import tqdm

from lorasoup_core.compose.base import COMPOSERS, Inputs
from lorasoup_core.compose.objective import FewShot
from lorasoup_core.compose.stack import CompositionError, patched


def make_optimizer(name: str, n: int, bound: float, budget: int, seed: int):
    try:
        cls = ng.optimizers.registry[name]
    except KeyError:
        raise CompositionError(f"unknown nevergrad optimizer {name!r}; e.g. NGOpt, CMA, TwoPointsDE, "
                               "OnePlusOne, PSO") from None
    param = ng.p.Array(init=np.zeros(n)).set_bounds(-bound, bound)
    param.random_state = np.random.RandomState(seed)
    return cls(parametrization=param, budget=budget, num_workers=1)


@COMPOSERS.register("lorahub")
def lorahub(inp: Inputs):
    cfg, stack = inp.config, inp.stack
    formula = stack.lorahub if cfg.formula == "lorahub" else stack.exact
    fewshot = FewShot(inp.base, inp.target, inp.shots, cfg.max_length)
    opt = make_optimizer(cfg.optimizer, len(stack), cfg.bound, cfg.budget, cfg.seed)
    trace: list[float] = []
    best = (math.inf, np.zeros(len(stack)))
    with torch.inference_mode(), patched(inp.base, stack.modules) as slots:
        # Always spend the whole budget: some optimizers (Cobyla) hang process exit otherwise.
        for _ in tqdm(range(cfg.budget), desc=f"lorahub {inp.target.name}", leave=False):
            cand = opt.ask()
            w = np.asarray(cand.value, dtype=np.float64)
            composed = formula(torch.as_tensor(w, dtype=inp.base.dtype, device=inp.base.device))
            for m, ab in composed.items():
                slots[m][0] = ab
            value = float(fewshot.loss()) + cfg.l1 * float(np.abs(w).mean())
            if not math.isfinite(value):
                raise CompositionError(f"lorahub objective is {value} at weights {np.round(w, 3).tolist()} "
                                       f"(target {inp.target.name!r}); check the candidates for NaN weights")
            opt.tell(cand, value)
            trace.append(value)
            if value < best[0]:
                best = (value, w)
    w = best[1]  # the best evaluated point (the recommendation of some optimizers was never evaluated)
    return w.tolist(), trace, formula(torch.as_tensor(w, dtype=inp.base.dtype, device=inp.base.device))
