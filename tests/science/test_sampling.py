"""Accuracy as an estimate over reference units: intervals and McNemar's test over polygons."""

from __future__ import annotations

import math
import random

import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from snap_operators.science.sampling import clustered_mcnemar_p, mcnemar_p, ratio_interval


def _wilson(p, n, z=1.959964):
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return centre - half, centre + half


def test_single_pixel_units_give_the_binomial_wilson_interval():
    """Points (one pixel each): the effective size is the number of points, and the interval Wilson's,
    widened only by the t quantile of 999 degrees of freedom."""
    right = np.r_[np.ones(870), np.zeros(130)]
    iv = ratio_interval(right, np.ones(1000))
    assert iv["estimate"] == 0.87 and iv["units"] == iv["pixels"] == 1000
    assert iv["effective_size"] == pytest.approx(1000)
    low, high = _wilson(0.87, 1000)
    assert iv["low"] == pytest.approx(low, abs=5e-4) and iv["high"] == pytest.approx(high, abs=5e-4)
    assert iv["low"] < 0.87 < iv["high"]


def test_whole_polygons_right_or_wrong_are_worth_one_observation_each():
    """Ten polygons of 100 px, nine all right and one all wrong: 1000 px but ten observations, so the
    interval is as wide as ten points', far wider than a thousand pixels' would be."""
    iv = ratio_interval([100] * 9 + [0], [100] * 10)
    assert iv["estimate"] == 0.9 and 9 <= iv["effective_size"] <= 10  # ten units, one degree of freedom spent
    naive = _wilson(0.9, 1000)
    assert iv["high"] - iv["low"] > 4 * (naive[1] - naive[0])
    # every polygon right: nothing to estimate the likeness within them from; the polygons are the sample
    iv = ratio_interval([100] * 10, [100] * 10)
    assert iv["estimate"] == iv["high"] == 1.0 and iv["effective_size"] == 10 and iv["low"] < 0.8
    # ... unless the design effect was measured on the same units for another figure: 1000 px over 5
    borrowed = ratio_interval([100] * 10, [100] * 10, design_effect=5.0)
    assert borrowed["effective_size"] == 200 and borrowed["design_effect"] is None and borrowed["low"] > iv["low"]
    measured = ratio_interval([100] * 9 + [50], [100] * 10)
    assert measured["design_effect"] == pytest.approx(1000 / measured["effective_size"]) and measured["design_effect"] > 1
    # one unit: no variance, no interval; units with no scored pixel do not count
    assert ratio_interval([5, 0], [10, 0])["low"] is None and ratio_interval([5, 0], [10, 0])["units"] == 1


def test_interval_covers_the_truth_95_times_in_100_over_clustered_samples():
    """Simulated references of 30 polygons of 50 px whose accuracy varies polygon to polygon
    (Beta(8, 2), mean 0.8): the interval over polygons holds the true accuracy in about 95 % of
    the samples; the pixel interval, which takes the 1500 px as independent, in far fewer."""
    rng = np.random.default_rng(0)
    hits = naive_hits = 0
    trials = 400
    for _ in range(trials):
        p_unit = rng.beta(8, 2, 30)
        right = rng.binomial(50, p_unit)
        iv = ratio_interval(right, np.full(30, 50))
        hits += iv["low"] <= 0.8 <= iv["high"]
        low, high = _wilson(right.sum() / 1500, 1500)
        naive_hits += low <= 0.8 <= high
    assert 0.91 <= hits / trials <= 0.985
    assert naive_hits / trials < 0.8


def test_clustered_mcnemar_is_mcnemar_with_one_pixel_per_unit_and_holds_its_level_over_polygons():
    # one discordant pixel per unit: McNemar's chi-square (without continuity correction)
    a, b = [1] * 30 + [0] * 12, [0] * 30 + [1] * 12
    chi2 = (30 - 12) ** 2 / 42
    assert clustered_mcnemar_p(a, b) == pytest.approx(math.erfc(math.sqrt(chi2 / 2)))
    assert clustered_mcnemar_p([0, 0], [0, 0]) == 1.0 and clustered_mcnemar_p([3, 1], [1, 3]) == 1.0
    # two equally good maps, whose errors come in patches of a polygon: the pixel test cries wolf,
    # the test over polygons rejects about 5 % of the time
    rng = np.random.default_rng(1)
    trials, rejected, rejected_pixels = 400, 0, 0
    for _ in range(trials):
        only_a = rng.binomial(1, 0.3, 25) * rng.integers(1, 40, 25)  # a polygon where A alone is right, or not
        only_b = rng.binomial(1, 0.3, 25) * rng.integers(1, 40, 25)
        rejected += clustered_mcnemar_p(only_a, only_b) < 0.05
        rejected_pixels += mcnemar_p(int(only_a.sum()), int(only_b.sum())) < 0.05
    assert rejected / trials < 0.09
    assert rejected_pixels / trials > 0.4


_units = st.lists(st.tuples(st.integers(1, 400), st.floats(0, 1)), min_size=2, max_size=40).map(
    lambda us: (np.array([round(n * f) for n, f in us]), np.array([n for n, _ in us])))


@settings(max_examples=200, deadline=None)
@given(_units, st.randoms(use_true_random=False))
@example((np.zeros(4, int), np.ones(4, int)), random.Random(0))  # every unit wrong: rounding put low above 0
@example((np.full(3, 5), np.full(3, 5)), random.Random(0))  # every unit right
def test_the_interval_holds_the_estimate_and_ignores_the_units_order(units, rnd):
    """Any sample of two or more units: the interval lies in [0, 1] around the estimate, is worth no
    more independent pixels than there are pixels, and does not depend on the order the units come
    in. (It may be worth fewer than the units: two units of 1 and 2 px, one wrong and one right,
    are worth 1.7; whole units right or wrong are worth about one fewer than their number, the
    unbiased variance's n - 1.)"""
    right, scored = units
    iv = ratio_interval(right, scored)
    assert 0 <= iv["low"] <= iv["estimate"] <= iv["high"] <= 1
    assert 0 < iv["effective_size"] <= iv["pixels"] + 1e-9
    order = list(range(len(scored)))
    rnd.shuffle(order)
    again = ratio_interval(right[order], scored[order])
    assert again["low"] == pytest.approx(iv["low"]) and again["high"] == pytest.approx(iv["high"])


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 50), st.integers(0, 50)), min_size=1, max_size=30))
def test_the_clustered_test_is_symmetric_and_is_mcnemars_for_one_pixel_units(pairs):
    """Swapping the maps leaves p as it is; where each unit holds one discordant pixel, p is
    McNemar's chi-square without continuity correction, (a - b)^2 / (a + b)."""
    a, b = np.array(pairs).T
    p = clustered_mcnemar_p(a, b)
    assert 0 <= p <= 1 and p == pytest.approx(clustered_mcnemar_p(b, a))
    ones_a, ones_b = np.r_[np.ones(a.sum()), np.zeros(b.sum())], np.r_[np.zeros(a.sum()), np.ones(b.sum())]
    n = int(a.sum() + b.sum())
    chi2 = (int(a.sum()) - int(b.sum())) ** 2 / n if n else 0.0
    assert clustered_mcnemar_p(ones_a, ones_b) == pytest.approx(math.erfc(math.sqrt(chi2 / 2)) if n else 1.0)


def test_units_of_one_same_proportion_are_alike_whatever_the_rounding():
    """Every unit at the same proportion: no variance to measure, the units are the sample size.
    15 of 22 px leaves a residual of 1e-15 per unit that passed for a design effect of 1 (44
    independent pixels from two units) where 1 of 3 px gave 3."""
    for right, scored in (([15, 15], [22, 22]), ([1, 1, 1], [3, 3, 3]), ([13, 13, 13, 13, 13], [23] * 5)):
        iv = ratio_interval(right, scored)
        assert iv["design_effect"] is None and iv["effective_size"] == len(scored), (right, scored)
