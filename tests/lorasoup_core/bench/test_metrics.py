import numpy as np
import pytest

from lorasoup_core.bench.metrics import METRICS, bootstrap_ci, macro_average, pal_scores, score_all
from lorasoup_core.plugins import UnknownPluginError


def test_bootstrap_interval_contains_the_mean_and_shrinks_with_n():
    rng = np.random.default_rng(0)
    widths = []
    for n in (20, 200, 2000):
        scores = (rng.random(n) < 0.6).astype(float)
        mean, low, high = bootstrap_ci(scores, seed=1)
        assert low <= mean <= high and mean == pytest.approx(scores.mean())
        widths.append(high - low)
    assert widths[0] > 2 * widths[1] > 4 * widths[2] > 0
    assert bootstrap_ci([1.0, 1.0, 1.0]) == (1.0, 1.0, 1.0)
    assert bootstrap_ci([0.0, 1.0] * 10, seed=3) == bootstrap_ci([0.0, 1.0] * 10, seed=3)


def test_macro_average_weighs_tasks_equally():
    per_task = {"big": [1.0] * 300, "small": [0.0, 0.0, 0.0, 1.0]}
    mean, low, high = macro_average(per_task, seed=0)
    assert mean == pytest.approx((1.0 + 0.25) / 2)
    assert low < mean < high and high - low < 0.6
    with pytest.raises(ValueError, match="no tasks"):
        macro_average({})
    with pytest.raises(ValueError, match="task 'e'"):
        macro_average({"e": []})


def test_pal_runs_the_program_and_scores_last_number_beside_it():
    programs = ["def solution():\n    return 6 * 7\n", "```python\ndef solution():\n    return 41.99999\n```",
                "def solution():\n    return 1 / 0\n", "The result is 42", "def solution():\n    return 40\n# 42"]
    scores = pal_scores(programs, ["42"] * 5)
    assert scores["pal"] == [1.0, 1.0, 0.0, 0.0, 0.0]
    assert scores["last_number"] == [0.0, 1.0, 0.0, 1.0, 1.0]  # "6 * 7" ends in 7
    assert score_all("pal", programs[:1], [42.0]) == [1.0]


def test_unknown_metric_and_misaligned_inputs_fail_clearly():
    with pytest.raises(UnknownPluginError, match="unknown metric 'nope'"):
        score_all("nope", ["a"], ["a"])
    with pytest.raises(ValueError, match="2 predictions for 1 targets"):
        score_all("exact_match", ["a", "b"], ["a"])
    assert {"exact_match", "bbh", "gsm8k", "pal", "last_number"} <= set(METRICS.names())


def test_seeds_bootstrap_carries_the_variance_between_seeds():
    from lorasoup_core.bench.metrics import seeds_bootstrap_ci

    mean, low, high = seeds_bootstrap_ci([[1.0] * 20, [0.0] * 20])  # two seeds that disagree completely
    assert mean == 0.5 and low == 0.0 and high == 1.0
    mean, low, high = seeds_bootstrap_ci([[1.0, 0.0] * 10, [1.0, 0.0] * 10, [0.0, 1.0] * 10])  # agreeing seeds
    assert mean == 0.5 and 0.2 < low < 0.5 < high < 0.8
    assert seeds_bootstrap_ci([[1.0, 0.0, 1.0]])[0] == pytest.approx(2 / 3)
