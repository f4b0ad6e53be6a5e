"""Per-example metrics and bootstrap confidence intervals for their means.

A metric compares an extracted answer with the target (0.0 or 1.0); the answer comes from the generation
through an extractor (`bench.extract`), the metric's own unless the benchmark names another. Registered:
"exact_match" (LoraHub's normalisation, on the raw generation), "bbh" (the BBH extractor, then a
format-aware comparison), "gsm8k" (the final number, numeric comparison), "pal" (run the extracted program's
``solution()`` in the sandbox and compare its value), "last_number" (the last number in the text, the usual
companion score of PAL).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from lorasoup_core.bench import answers
from lorasoup_core.bench.extract import extract_all
from lorasoup_core.bench.sandbox import SandboxResult, run_many, run_untrusted
from lorasoup_core.plugins import Registry


@dataclass(frozen=True)
class Metric:
    name: str
    compare: Callable[..., float]  # (answer | None, target, **kw) -> 0.0 | 1.0
    extract: str  # the EXTRACTORS entry that turns a generation into its answer


METRICS: Registry[Metric] = Registry("metric")

# PAL answers are floats computed by code: compare with a tolerance (1e-4 relative or 1e-6 absolute).
PAL_REL_TOL, PAL_ABS_TOL = 1e-4, 1e-6


def metric(name: str, *aliases: str, extract: str) -> Callable[[Callable[..., float]], Callable[..., float]]:
    """Register `compare(answer, target, **kw)` as the metric `name`, reading answers from `extract`."""

    def decorator(fn: Callable[..., float]) -> Callable[..., float]:
        METRICS.register(name, *aliases)(Metric(name, fn, extract))
        return fn

    return decorator


@metric("exact_match", "em", extract="raw")
def exact_match(answer: str | None, target: str, **_: Any) -> float:
    """1.0 when answer and target are equal after LoraHub's normalisation."""
    return float(answer is not None and answers.exact_match(answer, target))


@metric("bbh", extract="bbh")
def bbh(answer: str | None, target: str, **_: Any) -> float:
    """1.0 when the extracted answer equals the BBH target (numbers as numbers, text canonicalised)."""
    return float(answers.bbh_answer_matches(answer, target))


@metric("gsm8k", extract="final_number")
def gsm8k(answer: str | None, target: str, **_: Any) -> float:
    """1.0 when the answer's number equals the reference's final number ("#### N" or a bare number)."""
    reference = answers.gsm8k_reference(target)
    if reference is None:
        raise ValueError(f"GSM8K target has no number: {target!r}")
    return float(answers.numbers_close(_as_number(answer), reference))


def _as_number(answer: str | None) -> float | None:
    """A number extractor's answer exactly (its text is the float's repr), else the first number in it."""
    if answer is None:
        return None
    try:
        return float(answer)
    except ValueError:
        return answers.parse_number(answer)


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


@metric("pal", extract="code")
def pal(answer: str | None, target: str | float, **sandbox_kwargs: Any) -> float:
    """Run the extracted program's ``solution()`` in the sandbox; 1.0 when it returns the target.

    Keyword arguments go to :func:`~lorasoup_core.bench.sandbox.run_untrusted` (timeout_s, ...).
    """
    if answer is None:
        return 0.0
    return float(pal_correct(run_untrusted(answer, entry="solution", **sandbox_kwargs), target))


@metric("last_number", extract="last_number")
def last_number(answer: str | None, target: str | float, **_: Any) -> float:
    """1.0 when the answer's number (the last one written) equals the target (PAL tolerance)."""
    return float(answers.numbers_close(_as_number(answer), _target_value(target), rel_tol=PAL_REL_TOL,
                                       abs_tol=PAL_ABS_TOL))


def pal_scores(
    predictions: Sequence[str], targets: Sequence[str | float], workers: int = 2, extract: str | None = None,
    **sandbox_kwargs: Any
) -> dict[str, list[float]]:
    """PAL and last-number scores for a batch, running ``workers`` sandboxes concurrently (``extract``: the
    PAL answer's extractor, default its own)."""
    if len(predictions) != len(targets):
        raise ValueError(f"{len(predictions)} predictions for {len(targets)} targets")
    programs = extract_all(extract or METRICS.get("pal").extract, list(predictions), [str(t) for t in targets])
    ran = iter(run_many([p for p in programs if p is not None], workers=workers, **sandbox_kwargs))
    results = [None if p is None else next(ran) for p in programs]
    return {
        "pal": [float(r is not None and pal_correct(r, t)) for r, t in zip(results, targets, strict=True)],
        "last_number": score_all("last_number", predictions, targets),
    }


def score_all(name: str, predictions: Sequence[str], targets: Sequence[Any], extract: str | None = None,
              **kwargs: Any) -> list[float]:
    """Apply a registered metric to aligned generations and targets: each generation's answer is extracted
    (by ``extract``, default the metric's own extractor), then compared."""
    if len(predictions) != len(targets):
        raise ValueError(f"{len(predictions)} predictions for {len(targets)} targets")
    spec = METRICS.get(name)
    found = extract_all(extract or spec.extract, list(predictions), [str(t) for t in targets])
    return [spec.compare(a, t, **kwargs) for a, t in zip(found, targets, strict=True)]


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
