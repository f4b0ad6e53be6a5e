"""Composition settings, one section of the experiment config; defaults follow LoraHub's code."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from lorasoup_core.config import StrictModel


class ComposeConfig(StrictModel):
    budget: int = Field(40, ge=1, description="lorahub: objective evaluations of the search.")
    optimizer: str = Field("NGOpt", description="lorahub: nevergrad optimizer name (NGOpt, CMA, TwoPointsDE ...).")
    # Default `exact`: with the original's cross terms a 40-evaluation search on an 11-adapter tiny pool
    # did not find the target's own adapter (NGOpt, CMA, TwoPointsDE); with `exact` NGOpt and CMA did.
    formula: Literal["lorahub", "exact"] = Field(
        "exact", description="exact: sum w_i s_i B_i A_i; lorahub: (sum w B)(sum w A) as the original code, "
        "with its cross terms.")
    population: int = Field(1, ge=1, description="lorahub: weight vectors asked of the optimizer at once and "
                            "evaluated in one batched forward (each on its own copy of the examples).")
    bound: float = Field(1.5, gt=0, description="lorahub: weights searched in [-bound, bound].")
    l1: float = Field(0.05, ge=0, description="lorahub: objective += l1 * mean |w|.")
    cat_steps: int = Field(30, ge=1, description="cat: Adam steps on the per-module coefficients.")
    cat_lr: float = Field(0.05, gt=0, description="cat: learning rate of the coefficients.")
    cat_normalise: Literal["softmax", "free"] = Field("softmax", description="cat: coefficients per module "
                                                      "softmax-normalised over adapters, or free.")
    weights: list[float] | None = Field(None, description="linear: the weights (default uniform 1/n).")
    density: float = Field(0.5, gt=0, le=1, description="ties / dare: fraction of delta entries kept.")
    majority_sign_method: Literal["total", "frequency"] = Field("total", description="ties: sign election.")
    svd_rank: int | None = Field(None, ge=1, description="svd (and merges): rank of the exported adapter; "
                                 "default the candidates' rank.")
    temperature: float = Field(0.05, gt=0, description="centroid: softmax temperature over cosine similarities.")
    seed: int = Field(0, description="Seed for searches, CAT init and DARE's random pruning.")
    max_length: int = Field(256, ge=8, description="Tokens per few-shot example.")
    batch_size: int | None = Field(None, ge=1, description="Few-shot examples per forward (default all); "
                                   "the loss does not depend on it, only memory does.")
    engine_mode: Literal["auto", "dense", "lowrank"] = Field(
        "auto", description="How a composition is applied during search: dense (W0 + delta per module), "
        "low-rank (base + x A^T B^T), or auto (the cheaper by flop count for the batch).")
