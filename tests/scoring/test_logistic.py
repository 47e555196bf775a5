"""BETR's classifier (scoring/logistic.py): ranks and agreement statistics with known answers, the mean
bag of n-grams, and a logistic regression that learns a separable toy problem, reproducibly."""
from __future__ import annotations

import numpy as np
import pytest

from dataselect.scoring.logistic import auroc, feature_matrix, fit_logistic, rankdata, spearman
from dataselect.scoring.ngram import NgramFeatures

B = 50


def _features(docs: list[list[int]], bigrams: list[list[int]] | None = None) -> NgramFeatures:
    bigrams = bigrams or [[] for _ in docs]
    return NgramFeatures(np.array([b for d in docs for b in d], np.int64), np.array([b for d in bigrams for b in d], np.int64),
                         np.array([len(d) for d in docs], np.int64), np.array([len(d) for d in bigrams], np.int64))


def test_ranks_auroc_and_spearman_known_answers():
    assert rankdata(np.array([3.0, 1.0, 3.0, 2.0])).tolist() == [3.5, 1.0, 3.5, 2.0]
    positive = np.array([True, True, False, False])
    assert auroc(np.array([4.0, 3.0, 2.0, 1.0]), positive) == 1.0
    assert auroc(np.array([1.0, 2.0, 3.0, 4.0]), positive) == 0.0
    assert auroc(np.ones(4), positive) == 0.5  # ties count half
    assert auroc(np.array([4.0, 2.0, 3.0, 1.0]), positive) == 0.75
    assert auroc(np.ones(3), np.ones(3, bool)) is None
    x = np.array([0.1, 0.5, 0.2, 0.9])
    assert spearman(x, x ** 3) == pytest.approx(1.0) and spearman(x, -x) == pytest.approx(-1.0)
    assert spearman(x, np.ones(4)) is None


def test_the_feature_matrix_is_the_mean_bag_and_the_decision_matches_it():
    features = _features([[1, 1, 2], [3], []], [[4, 4], [], []])
    indptr, cols, values = feature_matrix(features, B)
    assert indptr.tolist() == [0, 3, 4, 4]
    assert cols.tolist() == [1, 2, 4, 3]
    assert values.tolist() == pytest.approx([2 / 5, 1 / 5, 2 / 5, 1.0])
    rng = np.random.default_rng(0)
    labels = np.array([True, False, False])
    model = fit_logistic(features, labels, B, l2=1e-2, max_iter=50)
    model.weights = rng.standard_normal((1, B))  # any weights: the gather-and-sum equals X w + b
    dense = np.zeros((3, B))
    np.add.at(dense, (np.repeat(np.arange(3), np.diff(indptr)), cols), values)
    assert model.decision(features)[:, 0] == pytest.approx(dense @ model.weights[0] + model.bias[0])
    assert model.decision(features)[2, 0] == model.bias[0]  # an empty document scores its bias


def test_a_separable_problem_is_learned_and_the_fit_is_bit_reproducible():
    rng = np.random.default_rng(1)
    docs, labels = [], []
    for i in range(200):
        positive = i % 5 == 0
        words = list(rng.integers(10, B, size=rng.integers(3, 12)))
        docs.append(words + ([7] if positive else [8]))  # bucket 7 marks the positives, 8 the negatives
        labels.append(positive)
    features, labels = _features(docs), np.array(labels)
    first = fit_logistic(features, labels, B, l2=1e-4, max_iter=100)
    second = fit_logistic(features, labels, B, l2=1e-4, max_iter=100)
    assert first.weights.tobytes() == second.weights.tobytes() and first.digest() == second.digest()
    scores = first.decision(features)[:, 0]
    assert auroc(scores, labels) == 1.0
    assert first.weights[0, 7] > 0 > first.weights[0, 8]
    two_tasks = fit_logistic(features, np.stack([labels, ~labels], axis=1), B, l2=1e-4, max_iter=100)
    assert two_tasks.weights.shape == (2, B) and auroc(two_tasks.decision(features)[:, 1], ~labels) == 1.0
    with pytest.raises(ValueError, match="same label"):
        fit_logistic(features, np.zeros(200, bool), B, l2=1e-4, max_iter=10)
