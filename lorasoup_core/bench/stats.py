"""Intervals and paired tests for method comparisons over seeds and examples.

Scores are per example and per seed: ``per_seed[s][i]`` is example i's score under seed s (the same
test examples in the same order for every seed; the seed changes the shots, the filter's draw, the
search and CAT's init).

- A cell's interval (one task, one method): for 0/1 scores, the Wilson score interval at an *effective*
  sample size that carries both sources of variance: the examples' binomial variance p(1-p)/n and the
  variance of the seed means over seeds / S (a design effect); at p = 0 or 1 it is the plain Wilson
  interval on the n examples, which never collapses to a point. Other scores: the two-level bootstrap.
- The macro average over tasks: the same, with the tasks' variances summed (the task set is fixed, its
  examples and seeds are samples). With one seed a cell's interval is exactly Wilson's on its n examples.
- A paired comparison of two methods on the same examples: the macro difference with a task-stratified
  paired-bootstrap interval, and a p-value: McNemar's exact test (a binomial test on the discordant
  pairs) for 0/1 scores under one seed; the Wilcoxon signed-rank test on the seed-averaged per-example
  differences otherwise.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass

import numpy as np
from scipy import stats as sps

from lorasoup_core.bench.metrics import macro_average, seeds_bootstrap_ci

PerSeed = Sequence[Sequence[float]]


def wilson_interval(p: float, n: float, alpha: float = 0.05) -> tuple[float, float]:
    """The Wilson score interval of a proportion p observed on n (possibly effective, non-integer) trials."""
    if n <= 0:
        return 0.0, 1.0
    z = float(sps.norm.ppf(1 - alpha / 2))
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)


def _matrix(per_seed: PerSeed, what: str) -> np.ndarray:
    rows = [np.asarray(s, dtype=float) for s in per_seed]
    if not rows or any(r.ndim != 1 or r.size == 0 for r in rows):
        raise ValueError(f"{what}: need one non-empty list of scores per seed")
    if len({r.size for r in rows}) != 1:
        raise ValueError(f"{what}: every seed must score the same examples (got {[r.size for r in rows]})")
    return np.vstack(rows)


def is_binary(values: np.ndarray) -> bool:
    return bool(np.isin(values, (0.0, 1.0)).all())


def _binary_variance(m: np.ndarray) -> tuple[float, float, int]:
    """(mean, variance of the mean over seeds and examples, n examples) of a [seeds, n] 0/1 matrix: the
    examples' binomial variance p(1-p)/n, plus the variance of the seed means / seeds when there are several."""
    s, n = m.shape
    p = float(m.mean())
    var = p * (1 - p) / n
    if s > 1:
        var += float(m.mean(1).var(ddof=1)) / s
    return p, var, n


def _wilson_effective(p: float, var: float, n_max: int, alpha: float) -> tuple[float, float, float]:
    """Wilson at the effective sample size p(1-p)/var (at most n_max; n_max itself when var is 0, i.e.
    every score is 0 or every score is 1)."""
    n_eff = n_max if var <= 0 or p in (0.0, 1.0) else min(n_max, p * (1 - p) / var)
    low, high = wilson_interval(p, n_eff, alpha)
    return p, min(low, p), max(high, p)


def cell_interval(per_seed: PerSeed, alpha: float = 0.05, seed: int = 0) -> tuple[float, float, float]:
    """(mean over seeds, low, high) for one (task, method) cell; see the module doc."""
    m = _matrix(per_seed, "cell_interval")
    if not is_binary(m):
        return seeds_bootstrap_ci(list(m), alpha=alpha, seed=seed)
    p, var, n = _binary_variance(m)
    return _wilson_effective(p, var, n, alpha)


def macro_interval(cells: Mapping[str, PerSeed], alpha: float = 0.05, seed: int = 0) -> tuple[float, float, float]:
    """(mean over tasks of each task's mean over seeds, low, high)."""
    if not cells:
        raise ValueError("macro_interval: no tasks")
    mats = {t: _matrix(v, f"macro_interval task {t!r}") for t, v in sorted(cells.items())}
    if not all(is_binary(m) for m in mats.values()):
        return macro_average({t: m.ravel() for t, m in mats.items()}, alpha=alpha, seed=seed)
    parts = [_binary_variance(m) for m in mats.values()]
    p = float(np.mean([q for q, _, _ in parts]))
    var = sum(v for _, v, _ in parts) / len(parts) ** 2
    return _wilson_effective(p, var, sum(n for _, _, n in parts), alpha)


@dataclass(frozen=True)
class Comparison:
    """Method a against method b on the same examples (a - b; positive: a is better)."""

    method: str
    reference: str
    delta: float  # macro difference (mean over tasks of the mean per-example difference)
    ci_low: float
    ci_high: float
    p_value: float
    test: str  # mcnemar_exact | wilcoxon
    wins: int  # examples (seed-averaged) where a scores higher
    losses: int
    pairs: int

    def to_dict(self) -> dict:
        return asdict(self)


def paired_comparison(a: Mapping[str, PerSeed], b: Mapping[str, PerSeed], method: str = "a",
                      reference: str = "b", alpha: float = 0.05, n_boot: int = 2000, seed: int = 0) -> Comparison:
    """Compare two methods over the tasks both were scored on (see the module doc)."""
    tasks = sorted(set(a) & set(b))
    if not tasks:
        raise ValueError(f"paired_comparison {method} vs {reference}: no task scored by both")
    diffs, single_binary = {}, True
    for t in tasks:
        ma, mb = _matrix(a[t], f"{method} on {t!r}"), _matrix(b[t], f"{reference} on {t!r}")
        if ma.shape != mb.shape:
            raise ValueError(f"paired_comparison on {t!r}: {method} has {ma.shape} scores (seeds, examples), "
                             f"{reference} {mb.shape}")
        single_binary &= ma.shape[0] == 1 and is_binary(ma) and is_binary(mb)
        diffs[t] = (ma - mb).mean(0)
    pooled = np.concatenate([diffs[t] for t in tasks])
    wins, losses = int((pooled > 0).sum()), int((pooled < 0).sum())
    delta = float(np.mean([d.mean() for d in diffs.values()]))
    if wins + losses == 0:
        p, test = 1.0, "mcnemar_exact" if single_binary else "wilcoxon"
    elif single_binary:
        p, test = float(sps.binomtest(wins, wins + losses, 0.5).pvalue), "mcnemar_exact"
    else:
        p, test = float(sps.wilcoxon(pooled[pooled != 0]).pvalue), "wilcoxon"
    rng = np.random.default_rng(seed)
    boot = np.zeros(n_boot)
    for d in diffs.values():  # stratified: resample examples within each task
        boot += d[rng.integers(0, d.size, size=(n_boot, d.size))].mean(1)
    low, high = np.quantile(boot / len(diffs), [alpha / 2, 1 - alpha / 2])
    return Comparison(method, reference, delta, min(float(low), delta), max(float(high), delta), p, test, wins,
                      losses, int(pooled.size))
