"""The repetition-utility model of data filtering against the known answers of METHODS.md 11.2, and its fit."""
from __future__ import annotations

import math

import pytest

from dataselect.evaluate.utility import SweepFit, effective_data, effective_utility, fit_keep_sweep

P = 1e5


@pytest.mark.parametrize("n, c, d, expected", [
    (5e4, 1.0, 0.0, 1.071773),  # one epoch: (a n / 1e5)^b
    (2e5, 1.0, 0.0, 0.965936),  # two epochs, half-life 1: 2^-0.05
    (2e5, math.inf, 0.0, 0.933033),  # no decay: a repeat is worth fresh data, 2^-0.1
    (3e5, 1.0, 0.0, 0.956194),  # three epochs
    (2e5, math.inf, 0.1, 1.026336),  # d is scaled by the repeats' ratios: 1.1 * 2^-0.1
])
def test_effective_utility_known_answers(n, c, d, expected):
    assert effective_utility(n, P, 1.0, -0.1, c, d) == pytest.approx(expected, abs=1e-6)


def test_effective_data_known_answer():
    assert effective_data(2e5, P, 1.0, -0.1, 1.0, 0.0) == pytest.approx(1.5**-0.1, abs=1e-6)  # n_eff = 1 + 0.5


def test_the_fit_finds_which_keep_fraction_wins_at_each_compute_level():
    # a = 100 puts a·n/1e5 above 1, where a steeper (more negative) b is better data
    truth = SweepFit(a=100.0, c=1.0, d=0.5, b={0.01: -0.3, 0.1: -0.2, 0.3: -0.15}, sse=0.0)
    pools = {keep: keep * 1e5 for keep in truth.b}
    levels = (3e3, 1e4, 1e5, 1e6)
    points = [(keep, pools[keep], n, truth.predict(keep, pools[keep], n)) for keep in truth.b for n in levels]
    fit = fit_keep_sweep(points)
    assert fit is not None and fit.sse < 1e-3 and fit.c == 1.0
    assert [fit.best_keep(pools, n) for n in levels] == [truth.best_keep(pools, n) for n in levels] == [0.1, 0.1, 0.1, 0.3]
    assert fit.b[0.01] < fit.b[0.1] < fit.b[0.3] < 0


def test_too_few_points_are_not_fitted():
    assert fit_keep_sweep([(0.1, 10.0, 100.0, 2.0), (0.3, 30.0, 100.0, 2.1)]) is None  # one compute level
    assert fit_keep_sweep([(0.1, 10.0, 100.0, 2.0), (0.1, 10.0, 200.0, 1.9)]) is None  # no more points than parameters
