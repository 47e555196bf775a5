"""EL2N selection windows and the config errors around them."""
from __future__ import annotations

import numpy as np
import pytest

from dataselect.config import build_config
from dataselect.errors import ConfigError, InputError
from dataselect.select.el2n import bad_scores, select_window, window_metrics


def test_middle_is_centred_by_default_and_ranks_hardest_first():
    scores = np.arange(10, dtype=float)  # row i has score i
    assert select_window(scores, 4, "middle").tolist() == [6, 5, 4, 3]
    assert select_window(scores, 4, "hardest").tolist() == [9, 8, 7, 6]
    assert select_window(scores, 4, "easiest").tolist() == [0, 1, 2, 3]
    assert select_window(scores, 4, "middle", offset=1).tolist() == [4, 3, 2, 1]


def test_unscored_and_ineligible_rows_are_never_kept():
    scores = np.array([0.1, np.nan, 0.9, 0.5, 0.7])
    eligible = np.array([True, True, False, True, True])
    assert select_window(scores, 3, "hardest", eligible=eligible).tolist() == [4, 3, 0]
    with pytest.raises(ConfigError, match=r"method\.budget: 4 is more than the 3 pool samples"):
        select_window(scores, 4, "hardest", eligible=eligible)


def test_ties_go_to_the_earlier_row_whatever_the_order_of_equal_scores():
    scores = np.array([1.0, 2.0, 1.0, 2.0, 1.0])
    assert select_window(scores, 2, "easiest").tolist() == [0, 2]
    assert select_window(scores, 2, "hardest").tolist() == [3, 1]


def test_offset_errors_name_their_key():
    with pytest.raises(ConfigError, match=r"method\.el2n\.offset: 8 \+ budget 4 .* \(at most 6\)"):
        select_window(np.arange(10.0), 4, "middle", offset=8)
    with pytest.raises(ConfigError, match=r"method\.el2n\.offset: only used with keep: middle"):
        select_window(np.arange(10.0), 4, "hardest", offset=0)
    with pytest.raises(ConfigError, match=r"method\.el2n\.keep"):
        build_config({"method": {"el2n": {"keep": "max"}}})
    with pytest.raises(ConfigError, match=r"method\.el2n\.proxy\.sample"):
        build_config({"method": {"el2n": {"proxy": {"sample": 0}}}})


def test_bad_scores_skip_or_fail():
    errors = [None, "no response tokens to score", None]
    ids = ["a", "b", "c"].__getitem__
    assert bad_scores(errors, ids, "skip").tolist() == [False, True, False]
    with pytest.raises(InputError, match="input error: b: no response tokens to score"):
        bad_scores(errors, ids, "fail")
    with pytest.raises(InputError, match="no pool sample can be scored .*a: no response"):
        bad_scores(["no response tokens to score"] * 2, ids, "skip")


def test_window_metrics_describe_the_window_and_the_pool():
    scores = np.array([0.2, 0.4, np.nan, 0.8])
    metrics = window_metrics(scores, np.array([3, 1]), "hardest", "el2n", 1)
    assert metrics["window_min"] == 0.4 and metrics["window_max"] == 0.8
    assert metrics["pool_min"] == 0.2 and metrics["unscored_bad"] == 1
