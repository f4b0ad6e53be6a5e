"""Intervals and paired tests (bench/stats.py) against scipy's own implementations and known answers."""

import numpy as np
import pytest
from scipy import stats as sps

from lorasoup_core.bench.stats import cell_interval, macro_interval, paired_comparison, wilson_interval


@pytest.mark.parametrize(("k", "n"), [(0, 30), (30, 30), (7, 30), (1, 5), (50, 100)])
def test_wilson_matches_scipy(k, n):
    low, high = wilson_interval(k / n, n)
    ref = sps.binomtest(k, n).proportion_ci(0.95, method="wilson")
    assert (low, high) == pytest.approx((ref.low, ref.high), abs=1e-12)


@pytest.mark.parametrize(("value", "inside"), [(0.0, (0.0, 0.1135)), (1.0, (0.8865, 1.0))])
def test_all_zero_and_all_one_intervals_do_not_collapse(value, inside):
    mean, low, high = cell_interval([[value] * 30])
    assert mean == value and (low, high) == pytest.approx(inside, abs=1e-4)
    # three seeds that all agree: still the n examples' Wilson interval, not one 3x as narrow
    assert cell_interval([[value] * 30] * 3)[1:] == pytest.approx(inside, abs=1e-4)
    assert macro_interval({"a": [[value] * 30], "b": [[value] * 30]})[1:] == pytest.approx(
        wilson_interval(value, 60), abs=1e-9)


def test_seed_variance_widens_the_interval():
    agree = [[1.0] * 15 + [0.0] * 15] * 3
    disagree = [[1.0] * 30, [0.0] * 30, [1.0] * 15 + [0.0] * 15]
    m1, l1, h1 = cell_interval(agree)
    m2, l2, h2 = cell_interval(disagree)
    assert m1 == m2 == 0.5
    assert h2 - l2 > 2 * (h1 - l1)  # seeds that disagree are more uncertainty than the examples alone
    # non-0/1 scores fall back to the two-level bootstrap
    mean, low, high = cell_interval([[0.2, 0.4, 0.9, 0.5]] * 2)
    assert mean == pytest.approx(0.5) and low < mean < high


def test_paired_mcnemar_known_answer():
    a = {"t": [[1.0] * 10 + [0.0] * 10]}
    b = {"t": [[0.0] * 20]}
    c = paired_comparison(a, b, "a", "b")
    assert c.test == "mcnemar_exact" and (c.wins, c.losses, c.pairs) == (10, 0, 20)
    assert c.p_value == pytest.approx(2 * 0.5 ** 10) and c.delta == pytest.approx(0.5)
    assert c.ci_low > 0 and c.ci_high <= 1.0
    same = paired_comparison(a, a, "a", "a2")
    assert same.p_value == 1.0 and same.delta == 0.0 and same.wins == same.losses == 0
    # 6 discordant pairs split 4:2 -> two-sided exact binomial p = 0.6875
    x = {"t": [[1, 1, 1, 1, 0, 0, 1, 0]]}
    y = {"t": [[0, 0, 0, 0, 1, 1, 1, 0]]}
    assert paired_comparison(x, y).p_value == pytest.approx(0.6875)


def test_paired_over_seeds_is_wilcoxon_on_seed_averaged_differences():
    rng = np.random.default_rng(0)
    a = {t: (rng.random((3, 40)) < 0.6).astype(float).tolist() for t in ("t1", "t2")}
    b = {t: (rng.random((3, 40)) < 0.4).astype(float).tolist() for t in ("t1", "t2")}
    c = paired_comparison(a, b)
    d = np.concatenate([(np.array(a[t]) - np.array(b[t])).mean(0) for t in ("t1", "t2")])
    assert c.test == "wilcoxon" and c.p_value == pytest.approx(sps.wilcoxon(d[d != 0]).pvalue)
    assert c.delta == pytest.approx(np.mean([(np.array(a[t]) - np.array(b[t])).mean() for t in ("t1", "t2")]))
    assert c.ci_low < c.delta < c.ci_high


def test_bad_shapes_name_the_task():
    with pytest.raises(ValueError, match="every seed must score the same examples"):
        cell_interval([[1.0, 0.0], [1.0]])
    with pytest.raises(ValueError, match="on 't'"):
        paired_comparison({"t": [[1.0, 0.0]]}, {"t": [[1.0]]})


@pytest.mark.parametrize(("k", "n"), [(1, 100), (3, 100), (59, 100), (0, 100)])
def test_one_seed_is_exactly_wilson_on_the_examples(k, n):
    mean, low, high = cell_interval([[1.0] * k + [0.0] * (n - k)])
    ref = sps.binomtest(k, n).proportion_ci(0.95, method="wilson")
    assert mean == k / n and (low, high) == pytest.approx((ref.low, ref.high), abs=1e-12)
