"""Per-example metrics (a registry of ``(prediction, target, **kw) -> 0.0 | 1.0`` functions) and
bootstrap confidence intervals for their means.

Registered metrics: "exact_match" (LoraHub's normalisation), "bbh" (answer extraction, then
format-aware comparison), "gsm8k" (final number, numeric comparison), "pal" (run the generated
``solution()`` in the sandbox and compare its value), "last_number" (the last number in the text,
the usual companion score of PAL).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from lorasoup_core.bench import answers
from lorasoup_core.bench.sandbox import SandboxResult, run_many, run_untrusted
from lorasoup_core.plugins import Registry

Metric = Callable[..., float]
METRICS: Registry[Metric] = Registry("metric")

# PAL answers are floats computed by code: compare with a tolerance (1e-4 relative or 1e-6 absolute).
PAL_REL_TOL, PAL_ABS_TOL = 1e-4, 1e-6


@METRICS.register("exact_match", "em")
def exact_match(prediction: str, target: str, **_: Any) -> float:
    """1.0 when prediction and target are equal after LoraHub's normalisation."""
    return float(answers.exact_match(prediction, target))


@METRICS.register("bbh")
def bbh(prediction: str, target: str, **_: Any) -> float:
    """1.0 when the answer extracted from a free-form generation equals the BBH target."""
    return float(answers.bbh_correct(prediction, target))


@METRICS.register("gsm8k")
def gsm8k(prediction: str, target: str, **_: Any) -> float:
    """1.0 when the prediction's final number equals the reference's ("#### N" or a bare number)."""
    reference = answers.gsm8k_reference(target)
    if reference is None:
        raise ValueError(f"GSM8K target has no number: {target!r}")
    return float(answers.numbers_close(answers.extract_gsm8k_number(prediction), reference))


def _target_value(target: str | float) -> float:
    if isinstance(target, (int, float)):
        return float(target)
    value = answers.parse_number(target)
    if value is None:
        raise ValueError(f"numeric target expected, got {target!r}")
    return value


def _value_as_float(value: Any) -> float | None:
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str):
        return answers.parse_number(value) if answers.NUMBER_RE.fullmatch(value.strip()) else None
    return None


def pal_correct(result: SandboxResult, target: str | float) -> bool:
    """Whether a sandboxed ``solution()`` returned the target (within the PAL tolerance)."""
    if not result.ok:
        return False
    return answers.numbers_close(
        _value_as_float(result.value), _target_value(target), rel_tol=PAL_REL_TOL, abs_tol=PAL_ABS_TOL
    )


@METRICS.register("pal")
def pal(prediction: str, target: str | float, **sandbox_kwargs: Any) -> float:
    """Run the generated program's ``solution()`` in the sandbox; 1.0 when it returns the target.

    Keyword arguments go to :func:`~lorasoup_core.bench.sandbox.run_untrusted` (timeout_s, ...).
    """
    result = run_untrusted(answers.extract_code(prediction), entry="solution", **sandbox_kwargs)
    return float(pal_correct(result, target))


@METRICS.register("last_number")
def last_number(prediction: str, target: str | float, **_: Any) -> float:
    """1.0 when the last number written in the prediction equals the target (PAL tolerance)."""
    return float(
        answers.numbers_close(
            answers.last_number(prediction), _target_value(target), rel_tol=PAL_REL_TOL, abs_tol=PAL_ABS_TOL
        )
    )


def pal_scores(
    predictions: Sequence[str], targets: Sequence[str | float], workers: int = 2, **sandbox_kwargs: Any
) -> dict[str, list[float]]:
    """PAL and last-number scores for a batch, running ``workers`` sandboxes concurrently."""
    if len(predictions) != len(targets):
        raise ValueError(f"{len(predictions)} predictions for {len(targets)} targets")
    results = run_many([answers.extract_code(p) for p in predictions], workers=workers, **sandbox_kwargs)
    return {
        "pal": [float(pal_correct(r, t)) for r, t in zip(results, targets, strict=True)],
        "last_number": [last_number(p, t) for p, t in zip(predictions, targets, strict=True)],
    }


def score_all(metric: str, predictions: Sequence[str], targets: Sequence[str], **kwargs: Any) -> list[float]:
    """Apply a registered metric to aligned predictions and targets."""
    if len(predictions) != len(targets):
        raise ValueError(f"{len(predictions)} predictions for {len(targets)} targets")
    fn = METRICS.get(metric)
    return [fn(p, t, **kwargs) for p, t in zip(predictions, targets, strict=True)]


# ---------------------------------------------------------------------------------------- bootstrap

_MAX_CELLS = 2_000_000  # bound on one resampling index matrix (16 MB of int64)


def _bootstrap_means(values: np.ndarray, n_boot: int, rng: np.random.Generator) -> np.ndarray:
    """Means of ``n_boot`` resamples with replacement, vectorised in memory-bounded chunks."""
    n = values.size
    rows = max(1, _MAX_CELLS // n)
    means = np.empty(n_boot)
    for start in range(0, n_boot, rows):
        count = min(rows, n_boot - start)
        means[start : start + count] = values[rng.integers(0, n, size=(count, n))].mean(axis=1)
    return means


def _as_scores(scores: Sequence[float], what: str) -> np.ndarray:
    values = np.asarray(scores, dtype=float)
    if values.ndim != 1 or values.size == 0:
        raise ValueError(f"{what}: need a non-empty 1-D sequence of scores")
    return values


def _interval(mean: float, means: np.ndarray, alpha: float) -> tuple[float, float, float]:
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")
    low, high = np.quantile(means, [alpha / 2, 1 - alpha / 2])
    # Percentile intervals can miss a skewed sample's own mean by a hair; report one containing it.
    return mean, min(float(low), mean), max(float(high), mean)


def bootstrap_ci(
    scores: Sequence[float], n_boot: int = 1000, alpha: float = 0.05, seed: int = 0
) -> tuple[float, float, float]:
    """(mean, low, high): the mean and its percentile-bootstrap (1 - alpha) confidence interval."""
    values = _as_scores(scores, "bootstrap_ci")
    means = _bootstrap_means(values, n_boot, np.random.default_rng(seed))
    return _interval(float(values.mean()), means, alpha)


def seeds_bootstrap_ci(
    per_seed: Sequence[Sequence[float]], n_boot: int = 1000, alpha: float = 0.05, seed: int = 0
) -> tuple[float, float, float]:
    """(mean, low, high) of the mean over seeds of each seed's mean score, with a two-level bootstrap:
    resample the seeds, then each drawn seed's examples, so the interval carries the variance of both
    (one seed: the plain example bootstrap)."""
    if not per_seed:
        raise ValueError("seeds_bootstrap_ci: no seeds")
    runs = [_as_scores(s, "seeds_bootstrap_ci") for s in per_seed]
    rng = np.random.default_rng(seed)
    boot = np.zeros(n_boot)
    picks = rng.integers(0, len(runs), size=(n_boot, len(runs)))
    for b in range(n_boot):
        boot[b] = np.mean([rng.choice(runs[i], size=runs[i].size).mean() for i in picks[b]])
    return _interval(float(np.mean([r.mean() for r in runs])), boot, alpha)


def macro_average(
    per_task: Mapping[str, Sequence[float]], n_boot: int = 1000, alpha: float = 0.05, seed: int = 0
) -> tuple[float, float, float]:
    """(mean, low, high) of the average of per-task means (each task weighs the same).

    The interval resamples examples within each task (a stratified bootstrap) and keeps the task
    set fixed: the benchmark's tasks are the population of interest, its examples a sample.
    """
    if not per_task:
        raise ValueError("macro_average: no tasks")
    rng = np.random.default_rng(seed)
    task_means, boot_means = [], np.zeros(n_boot)
    for name in sorted(per_task):  # a fixed order keeps the result deterministic for a seed
        values = _as_scores(per_task[name], f"macro_average task {name!r}")
        task_means.append(values.mean())
        boot_means += _bootstrap_means(values, n_boot, rng)
    return _interval(float(np.mean(task_means)), boot_means / len(per_task), alpha)
