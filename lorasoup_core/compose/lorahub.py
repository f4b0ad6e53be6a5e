"""LoraHub: a gradient-free search (nevergrad) of one weight per adapter on the few-shot loss.

Defaults follow LoraHub's code: init 0, bounds +-1.5, budget 40, objective = mean per-example
cross-entropy + 0.05 * mean |w|. With `population` k the optimizer is asked for k points at a time
(num_workers=k) and all k are scored in one batched forward.
"""

from __future__ import annotations

import math
import time
from typing import Literal

import nevergrad as ng
import numpy as np
import torch
from pydantic import Field
from tqdm.auto import tqdm

from lorasoup_core.compose.base import ComposerOutput, Inputs, ObjectiveSettings, composer
from lorasoup_core.compose.engine import Engine
from lorasoup_core.compose.objective import FewShot
from lorasoup_core.compose.stack import CompositionError


def make_optimizer(name: str, n: int, bound: float, budget: int, seed: int, workers: int = 1):
    try:
        cls = ng.optimizers.registry[name]
    except KeyError:
        raise CompositionError(f"unknown nevergrad optimizer {name!r}; e.g. NGOpt, CMA, TwoPointsDE, "
                               "OnePlusOne, PSO, Cobyla") from None
    param = ng.p.Array(init=np.zeros(n)).set_bounds(-bound, bound)
    param.random_state = np.random.RandomState(seed)
    return cls(parametrization=param, budget=budget, num_workers=workers)


class LorahubSettings(ObjectiveSettings):
    budget: int = Field(40, ge=1, description="Objective evaluations of the search.")
    optimizer: str = Field("NGOpt", description="nevergrad optimizer name (NGOpt, CMA, TwoPointsDE ...).")
    # Default `exact`: with the original's cross terms a 40-evaluation search on an 11-adapter tiny pool
    # did not find the target's own adapter (NGOpt, CMA, TwoPointsDE); with `exact` NGOpt and CMA did.
    formula: Literal["lorahub", "exact"] = Field(
        "exact", description="exact: sum w_i s_i B_i A_i; lorahub: (sum w B)(sum w A) as the original code, "
        "with its cross terms.")
    population: int = Field(1, ge=1, description="Weight vectors asked of the optimizer at once and "
                            "evaluated in one batched forward (each on its own copy of the examples).")
    bound: float = Field(1.5, gt=0, description="Weights searched in [-bound, bound].")
    l1: float = Field(0.05, ge=0, description="objective += l1 * mean |w|.")


@composer("lorahub", LorahubSettings)
def lorahub(inp: Inputs[LorahubSettings]) -> ComposerOutput:
    """LoraHub: gradient-free search (nevergrad) of one weight per adapter on the few-shot loss."""
    cfg, stack, base = inp.settings, inp.stack, inp.base
    fewshot = FewShot(base, inp.target, inp.shots, cfg.max_length, cfg.batch_size)
    workers = min(cfg.population, cfg.budget)
    opt = make_optimizer(cfg.optimizer, len(stack), cfg.bound, cfg.budget, inp.seed, workers)
    trace: list[float] = []
    seconds: list[float] = []  # wall time per evaluation (a batch's time / its size), ask/tell included
    objective_seconds: list[float] = []  # the same without the optimizer's ask/tell
    best = (math.inf, np.zeros(len(stack)))
    engine = Engine(base, stack, cfg.formula, workers, cfg.engine_mode, fewshot.tokens_per_composition)
    bar = tqdm(total=cfg.budget, desc=f"lorahub {inp.target.name}", leave=False)
    with torch.inference_mode(), engine:
        # Always spend the whole budget: some optimizers (Cobyla) hang process exit otherwise.
        while len(trace) < cfg.budget:
            start = time.perf_counter()
            asked = [opt.ask() for _ in range(min(workers, cfg.budget - len(trace)))]
            w = np.stack([np.asarray(c.value, dtype=np.float64) for c in asked])
            t0 = time.perf_counter()
            engine.set(torch.as_tensor(w))
            values = fewshot.losses(len(asked)).cpu().numpy() + cfg.l1 * np.abs(w).mean(1)
            objective_seconds.extend([(time.perf_counter() - t0) / len(asked)] * len(asked))
            for c, wi, v in zip(asked, w, values, strict=True):
                if not math.isfinite(v):
                    raise CompositionError(f"lorahub objective is {v} at weights {np.round(wi, 3).tolist()} "
                                           f"(target {inp.target.name!r}); check the candidates for NaN weights")
                opt.tell(c, float(v))
                trace.append(float(v))
                if v < best[0]:
                    best = (float(v), wi)
            seconds.extend([(time.perf_counter() - start) / len(asked)] * len(asked))
            bar.update(len(asked))
    bar.close()
    w = best[1]  # the best evaluated point (the recommendation of some optimizers was never evaluated)
    return ComposerOutput(w.tolist(), engine.factors(torch.as_tensor(w)), trace, diagnostics={
        "eval_seconds": seconds, "objective_seconds": objective_seconds,
        "engine": {m: "dense" if s.dense else "lowrank" for m, s in engine.slots.items()}})
