"""LoraHub (arXiv 2307.13269): a gradient-free search (nevergrad) of one weight per adapter on the
few-shot loss.

The defaults are the original code's (sail-sg/lorahub `lorahub/algorithm.py`): the composed LoRA is
(sum w_i B_i)(sum w_i A_i) (cross terms included); the objective is HF's token-mean cross-entropy of
the batch divided by the number of examples, + 0.05 * mean |w|; the weights are
`ng.p.Array(init=0, lower=-1.5, upper=1.5)` (sigma = range / 6) searched by NGOpt with budget 40 and one
worker; the result is the optimizer's recommendation; inputs up to 2048 tokens. lorasoup's own
options are named and off by default: `formula: exact` (sum_i w_i s_i B_i A_i, no cross terms),
`loss: per_example`, `result: best_evaluated`, `population` k (k weight vectors scored in one
batched forward, for optimizers whose algorithm does not change with k), and `module_groups` G (one weight
per adapter per block of layers, n * G searched on the same objective).
"""

from __future__ import annotations

import difflib
import math
import re
import time
from typing import Literal

import nevergrad as ng
import numpy as np
import torch
from nevergrad.optimization.base import Optimizer
from pydantic import Field, field_validator
from tqdm.auto import tqdm

from lorasoup_core import interrupt
from lorasoup_core.compose.base import ComposerOutput, Inputs, ObjectiveSettings, composer
from lorasoup_core.compose.engine import Engine
from lorasoup_core.compose.objective import FewShot, LossScale
from lorasoup_core.compose.stack import CompositionError, Stack
from lorasoup_core.data import Example, Task
from lorasoup_core.models import LoadedModel


def parametrization(n: int, bound: float, seed: int) -> ng.p.Array:
    """The original's search space: init 0 and bounds as Array arguments (sigma = range / 6, not the
    sigma 1 of `Array(init).set_bounds(...)`), seeded."""
    param = ng.p.Array(init=[0.0] * n, lower=[-bound] * n, upper=[bound] * n)
    param.random_state = np.random.RandomState(seed)
    return param


def _algorithm(opt) -> str:
    """The algorithm a (meta-)optimizer actually runs (NGOpt picks one from budget, dimension, workers)."""
    return getattr(opt, "optim", opt).name  # e.g. NGOpt -> "Cobyla" with one worker at budget 40


def unknown_optimizer(name: str) -> str | None:
    """Why `name` is no nevergrad optimizer (with the closest names: the registry holds ~500), or None."""
    if name in ng.optimizers.registry:
        return None
    lower = {n.lower(): n for n in ng.optimizers.registry}
    close = [lower[n] for n in difflib.get_close_matches(name.lower(), list(lower), n=4)]
    hint = f"did you mean {', '.join(close)}? " if close else ""
    return (f"unknown nevergrad optimizer {name!r}; {hint}e.g. NGOpt, CMA, TwoPointsDE, OnePlusOne, PSO, Cobyla "
            "(all: nevergrad.optimizers.registry)")


def make_optimizer(name: str, n: int, bound: float, budget: int, seed: int, workers: int = 1):
    """The named nevergrad optimizer over the original parametrization. Asking for `workers` points at once
    must not silently switch algorithms (NGOpt does: COBYLA with one worker, MetaModel with four)."""
    problem = unknown_optimizer(name)
    if problem:
        raise CompositionError(problem)
    cls = ng.optimizers.registry[name]
    opt = cls(parametrization=parametrization(n, bound, seed), budget=budget, num_workers=workers)
    if workers > 1:
        alone = _algorithm(cls(parametrization=parametrization(n, bound, seed), budget=budget, num_workers=1))
        if _algorithm(opt) != alone:
            raise CompositionError(
                f"population {workers} would make optimizer {name!r} run {_algorithm(opt)} instead of {alone}: "
                "name an optimizer whose algorithm does not depend on it (CMA, TwoPointsDE, PSO ...) "
                "or set population 1")
    return opt


def stop_search(opt: Optimizer) -> None:
    """Stop the background threads of recast optimizers (NGOpt's COBYLA at budget 40, BFGS ...), also inside
    meta-optimizers: one left waiting for a `tell` that never comes keeps the process from exiting."""
    seen: set[int] = set()
    todo = [opt]
    while todo:
        o = todo.pop()
        if id(o) in seen:
            continue
        seen.add(id(o))
        thread = getattr(o, "_messaging_thread", None)
        if thread is not None:
            thread.stop()  # harmless when the search already ended
        for v in vars(o).values():
            items = v if isinstance(v, list | tuple) else v.values() if isinstance(v, dict) else [v]
            todo.extend(x for x in items if isinstance(x, Optimizer))


def _not_finite(stack: Stack, target: str, w: np.ndarray, value: float) -> CompositionError:
    """A NaN/inf objective, naming the candidates at fault: a broken adapter is the usual cause."""
    per_adapter = np.asarray(w).reshape(-1, len(stack)).mean(0)  # per-module weights: each adapter's mean
    weights = ", ".join(f"{n}={x:.3f}" for n, x in zip(stack.names, per_adapter, strict=True))
    broken = stack.nonfinite()
    cause = (f"candidate(s) with NaN/inf weights: {', '.join(broken)}; retrain them or leave them out of the pool"
             if broken else "no candidate has NaN/inf weights, so the loss itself overflowed (try dtype float32 "
             "or a smaller bound)")
    return CompositionError(f"lorahub objective is {value} for target {target!r} at weights {{{weights}}}: {cause}")


class LorahubSettings(ObjectiveSettings):
    budget: int = Field(40, ge=1, description="Objective evaluations of the search.")
    optimizer: str = Field("NGOpt", description="nevergrad optimizer name (NGOpt, CMA, TwoPointsDE ...).")
    max_length: int = Field(2048, ge=8, description="Tokens per few-shot example (the original's 2048); "
                            "longer prompts lose their start, counted in the log.")
    formula: Literal["lorahub", "exact"] = Field(
        "lorahub", description="lorahub: (sum w B)(sum w A) as the original code, with its cross terms; "
        "exact (lorasoup): sum w_i s_i B_i A_i.")
    loss: LossScale = Field("lorahub", description="lorahub: HF's token-mean CE per batch, summed over batches, "
                            "/ number of examples (the original); per_example (lorasoup): mean over examples "
                            "of each example's token-mean CE.")
    result: Literal["recommendation", "best_evaluated"] = Field(
        "recommendation", description="recommendation: the optimizer's recommendation (the original); "
        "best_evaluated (lorasoup): the evaluated point with the lowest objective.")
    population: int = Field(1, ge=1, description="lorasoup: weight vectors asked of the optimizer at once and "
                            "evaluated in one batched forward (each on its own copy of the examples); refused "
                            "when it would change the optimizer's algorithm.")
    bound: float = Field(1.5, gt=0, description="Weights searched in [-bound, bound].")
    module_groups: int = Field(1, ge=1, description="lorasoup: 1 = one weight per adapter (the paper); G > 1 = "
                               "one weight per adapter per group of layers (the layers split into G contiguous "
                               "blocks by depth), all n * G searched together on the same objective.")
    l1: float = Field(0.05, ge=0, description="objective += l1 * mean |w|.")

    @field_validator("optimizer")
    @classmethod
    def _known_optimizer(cls, name: str) -> str:
        problem = unknown_optimizer(name)  # at config load, not after the pool is trained
        if problem:
            raise ValueError(problem)
        return name


def layer_groups(modules: list[str], groups: int) -> list[int]:
    """The group of each module: its layer's block when the layers (the first number in a module's name) are
    split into `groups` contiguous blocks by depth. Too many groups for the layers is refused."""
    def layer(m: str) -> int:
        found = re.search(r"\.(\d+)\.", f".{m}.")
        return int(found.group(1)) if found else -1

    layers = sorted({layer(m) for m in modules})
    if groups > len(layers):
        raise CompositionError(f"module_groups {groups} is more than the {len(layers)} layer(s) the candidates adapt")
    block = {lay: i for i, part in enumerate(np.array_split(np.arange(len(layers)), groups)) for lay in
             (layers[j] for j in part)}
    return [block[layer(m)] for m in modules]


class Objective:
    """LoraHub's objective over a candidate stack: `with Objective(...) as f: f(w)` for w [P, n] (or [P, n * G]
    with `module_groups` G: group-major, G blocks of n) returns the P objective values (few-shot loss on the
    settings' scale + l1 * mean |w|), all P in one forward."""

    def __init__(self, base: LoadedModel, stack: Stack, target: Task, shots: list[Example],
                 settings: LorahubSettings, population: int = 1) -> None:
        self.settings, self.n = settings, len(stack)
        groups = settings.module_groups
        self.group_of = torch.as_tensor(layer_groups(stack.modules, groups)) if groups > 1 else None
        self.fewshot = FewShot(base, target, shots, settings.max_length, settings.batch_size)
        self.engine = Engine(base, stack, settings.formula, population, settings.engine_mode,
                             self.fewshot.tokens_per_composition)
        self._inference = torch.inference_mode()

    def __enter__(self) -> Objective:
        self._inference.__enter__()
        self.engine.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        self.engine.__exit__(*exc)
        self._inference.__exit__(*exc)

    def per_module(self, w: np.ndarray | torch.Tensor) -> torch.Tensor:
        """[P, n] as it is, or [P, n * G] spread to [P, n_modules, n] (each module its group's weights)."""
        w = torch.as_tensor(np.asarray(w, dtype=np.float64))
        if self.group_of is None:
            return w
        return w.view(w.shape[0], -1, self.n)[:, self.group_of]

    def __call__(self, w: np.ndarray) -> np.ndarray:
        w = np.atleast_2d(np.asarray(w, dtype=np.float64))
        self.engine.set(self.per_module(w))
        loss = self.fewshot.losses(w.shape[0], self.settings.loss).cpu().numpy()
        return loss + self.settings.l1 * np.abs(w).mean(1)


@composer("lorahub", LorahubSettings)
def lorahub(inp: Inputs[LorahubSettings]) -> ComposerOutput:
    """LoraHub: gradient-free search (nevergrad) of one weight per adapter on the few-shot loss."""
    cfg, stack = inp.settings, inp.stack
    workers = min(cfg.population, cfg.budget)
    objective = Objective(inp.base, stack, inp.target, inp.shots, cfg, workers)
    dim = len(stack) * cfg.module_groups
    opt = make_optimizer(cfg.optimizer, dim, cfg.bound, cfg.budget, inp.seed, workers)
    trace: list[float] = []
    evaluated: list[list[float]] = []
    seconds: list[float] = []  # wall time per evaluation (a batch's time / its size), ask/tell included
    objective_seconds: list[float] = []  # the same without the optimizer's ask/tell
    best = (math.inf, np.zeros(dim))
    bar = tqdm(total=cfg.budget, desc=f"lorahub {inp.target.name}", leave=False)
    try:
        with objective:
            while len(trace) < cfg.budget:  # the whole budget, as the original
                interrupt.check()
                start = time.perf_counter()
                asked = [opt.ask() for _ in range(min(workers, cfg.budget - len(trace)))]
                w = np.stack([np.asarray(c.value, dtype=np.float64) for c in asked])
                t0 = time.perf_counter()
                try:
                    values = objective(w)
                except Exception as err:
                    err.add_note(f"lorahub search for target {inp.target.name!r} over candidates "
                                 f"{', '.join(stack.names)}: evaluation {len(trace) + 1} of {cfg.budget} failed")
                    raise
                objective_seconds.extend([(time.perf_counter() - t0) / len(asked)] * len(asked))
                for c, wi, v in zip(asked, w, values, strict=True):
                    if not math.isfinite(v):  # never told: nevergrad would search on, or stop on, garbage
                        raise _not_finite(stack, inp.target.name, wi, float(v))
                    opt.tell(c, float(v))
                    trace.append(float(v))
                    evaluated.append(wi.tolist())
                    if v < best[0]:
                        best = (float(v), wi)
                seconds.extend([(time.perf_counter() - start) / len(asked)] * len(asked))
                bar.update(len(asked))
            if cfg.result == "recommendation":
                w = np.asarray(opt.provide_recommendation().value, dtype=np.float64)
                final = float(objective(w)[0])
            else:
                final, w = best
    finally:  # on any error too: a recast optimizer's thread still waiting would hang process exit
        stop_search(opt)
        bar.close()
    engine = objective.engine
    spread = objective.per_module(w[None])[0]  # [n] or [n_modules, n]
    weights = w.tolist() if cfg.module_groups == 1 else {m: spread[j].tolist() for j, m in enumerate(stack.modules)}
    return ComposerOutput(weights, engine.factors(spread), trace, diagnostics={
        "trainable_params": dim, "module_groups": cfg.module_groups,
        "final_objective": final, "evaluated": evaluated, "algorithm": _algorithm(opt),
        "objective_path": objective.fewshot.path, "eval_seconds": seconds, "objective_seconds": objective_seconds,
        "engine": {m: "dense" if s.dense else "lowrank" for m, s in engine.slots.items()}})
