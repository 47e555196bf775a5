"""The eval's numbers against the known answers of METHODS.md 11.3."""
from __future__ import annotations

import math

import numpy as np
import pytest

from dataselect.evaluate.statistics import bits_per_byte, mean_ci95, paired_gap, snr, t_quantile


def test_snr_of_the_reference_example_is_two_and_zero_noise_is_guarded():
    assert snr([0.5, 0.6], [0.5, 0.5, 0.6, 0.6]) == pytest.approx(2.0, abs=1e-12)
    assert snr([0.5, 0.5], [0.5, 0.5, 0.5]) is None  # identical runs: noise 0
    assert snr([0.5, 0.5], [0.4, 0.6]) == 0.0  # no signal


def test_bits_per_byte_of_a_uniform_byte_model_is_eight_and_ln2_per_byte_is_one():
    assert bits_per_byte(1000 * math.log(256), 1000) == pytest.approx(8.0)
    assert bits_per_byte(37 * math.log(2), 37) == pytest.approx(1.0)
    with pytest.raises(ValueError):
        bits_per_byte(1.0, 0)


def test_the_interval_of_one_two_three_is_two_plus_minus_2_484():
    interval = mean_ci95([1, 2, 3])
    assert (interval.mean, interval.std) == (2.0, 1.0)
    assert interval.high - interval.mean == pytest.approx(4.3027 / math.sqrt(3), abs=1e-4)
    assert interval.high - interval.mean == pytest.approx(2.484, abs=1e-3)
    with pytest.raises(ValueError, match="2 seeds"):
        mean_ci95([1.0])


@pytest.mark.parametrize("df, expected", [(1, 12.7062), (2, 4.3027), (4, 2.7764), (9, 2.2622), (30, 2.0423)])
def test_t_quantiles_match_the_tables(df, expected):
    assert t_quantile(df) == pytest.approx(expected, abs=1e-4)


def test_a_selection_equal_to_random_has_a_gap_of_exactly_zero_and_the_gap_is_paired_by_seed():
    same = paired_gap([1.3, 1.2, 1.25], [1.3, 1.2, 1.25])
    assert (same.mean, same.low, same.high) == (0.0, 0.0, 0.0) and not same.excludes_zero()
    # seeds move both arms together: the paired gap is certain although the arms' intervals overlap
    shift = np.array([0.0, 0.2, -0.2, 0.1])
    gap = paired_gap(1.0 + shift, 1.05 + shift + np.array([0.001, -0.001, 0.001, -0.001]))
    assert gap.mean == pytest.approx(0.05) and gap.excludes_zero() and gap.low > 0
    assert mean_ci95(1.0 + shift).high > mean_ci95(1.05 + shift).low
