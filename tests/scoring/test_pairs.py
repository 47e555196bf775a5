"""QuRating's pairwise labels (scoring/pairs.py) and the Bradley-Terry fit (scoring/logistic.py), the known answers
of METHODS.md 9.4 item 6: equal scores give P = 0.5; the BCE for label y is minimised at sigmoid(delta) = y; a judge
that always answers "B" gives the calibrated y = 0.5, which the 0.5 confidence filter drops; a consistent judge gives y = 1."""
from __future__ import annotations

import json

import numpy as np
import pytest

from dataselect.errors import ConfigError
from dataselect.scoring.logistic import fit_pairs, fit_pairs_dense
from dataselect.scoring.ngram import NgramFeatures
from dataselect.scoring.pairs import calibrated_label, confident, pair_loss, preference, read_judgements


def test_equal_scores_give_even_odds():
    assert preference(1.3, 1.3) == 0.5
    assert preference(np.array([-2.0, 0.0, 7.5]), np.array([-2.0, 0.0, 7.5])).tolist() == [0.5, 0.5, 0.5]
    assert preference(0.0, np.log(3.0)) == pytest.approx(0.75)  # sigmoid(s_b - s_a): b three times as likely


@pytest.mark.parametrize("y", [0.1, 0.3, 0.5, 0.75, 0.9])
def test_the_cross_entropy_is_least_where_the_preference_equals_the_label(y):
    deltas = np.linspace(-6, 6, 120_001)  # steps of 1e-4
    best = deltas[np.argmin(pair_loss(0.0, deltas, y))]
    assert preference(0.0, best) == pytest.approx(y, abs=1e-4)
    # the fit reaches it too: one pair whose score difference is the single weight (no penalty)
    model = fit_pairs_dense(np.array([[0.0], [1.0]]), np.array([0]), np.array([1]), np.array([y]), l2=0.0, max_iter=100)
    assert preference(*model.project(np.array([[0.0], [1.0]]))[:, 0]) == pytest.approx(y, abs=1e-6)
    assert model.bias.tolist() == [0.0]  # the bias cancels in s_b - s_a


def test_a_judge_that_always_answers_b_gives_one_half_and_is_filtered_out():
    y = calibrated_label([0, 20], [0, 20])  # the second-shown text wins in both orders: position, not content
    assert y == 0.5
    assert confident(np.array([y]), 0.5).tolist() == [False]
    assert confident(np.array([0.25, 0.26, 0.74, 0.75, 1.0, 0.0]), 0.5).tolist() == [True, False, False, True, True, True]


def test_a_consistent_judge_gives_one():
    assert calibrated_label([0, 20], [20, 0]) == 1.0  # b wins shown second, and shown first
    assert calibrated_label([20, 0], [0, 20]) == 0.0  # a wins either way
    assert calibrated_label([5, 15], [10, 10]) == pytest.approx((0.75 + 0.5) / 2)
    assert calibrated_label([5, 5], [0, 20]) is None  # 10 votes are not more than 10


def test_pairs_fit_on_hashed_ngrams_order_the_documents_as_judged():
    # four documents of one bucket each; the judge prefers a higher bucket id: the fit must order them the same way
    features = NgramFeatures(np.array([3, 1, 2, 0]), np.zeros(0, np.int64), np.ones(4, np.int64), np.zeros(4, np.int64))
    first, second = np.array([3, 1, 2, 3, 0]), np.array([1, 2, 0, 2, 1])  # (bucket 0 vs 1), (1 vs 2), (2 vs 3), (0 vs 2), (3 vs 1)
    labels = np.array([1.0, 1.0, 1.0, 1.0, 0.0])
    model = fit_pairs(features, 4, first, second, labels, l2=1e-3, max_iter=200)
    assert np.argsort(model.decision(features)[:, 0]).tolist() == [3, 1, 2, 0]  # buckets 0 < 1 < 2 < 3


def test_a_judgements_file_is_read_with_its_labels_calibrated(tmp_path):
    path = tmp_path / "pairs.jsonl"
    lines = [{"a": "x", "b": "y", "ab": [0, 20], "ba": [20, 0]}, {"a": 1, "b": 2, "label": 0.2}, {"a": "x", "b": "z", "ab": [3, 3], "ba": [1, 1]}]
    path.write_text("\n".join(json.dumps(line) for line in lines) + "\n\n")
    judged = read_judgements(str(path))
    assert judged.first == ["x", "1"] and judged.second == ["y", "2"] and judged.labels.tolist() == [1.0, 0.2] and judged.too_few_votes == 1
    path.write_text('{"a": "x", "b": "y", "votes": 3}\n')
    with pytest.raises(ConfigError, match="pairs_path: line 1 .* is not a judged pair"):
        read_judgements(str(path))
    with pytest.raises(ConfigError, match="does not exist"):
        read_judgements(str(tmp_path / "none.jsonl"))
