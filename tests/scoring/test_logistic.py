"""BETR's classifier (scoring/logistic.py): ranks and agreement statistics with known answers, the mean
bag of n-grams, and a logistic regression that learns a separable toy problem, reproducibly."""
from __future__ import annotations

import numpy as np
import pytest

from dataselect.scoring.logistic import auroc, feature_matrix, fit_logistic, fit_logistic_dense, fit_ridge, rankdata, spearman
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


def test_the_dense_regression_equals_the_sparse_one_on_the_same_matrix_and_ridge_solves_least_squares():
    rng = np.random.default_rng(2)
    docs = [list(rng.integers(0, B, size=rng.integers(2, 9))) for _ in range(60)]
    labels = np.array([i % 3 == 0 for i in range(60)])
    docs = [d + ([5] if y else [6]) for d, y in zip(docs, labels)]
    features = _features(docs)
    indptr, cols, values = feature_matrix(features, B)
    dense = np.zeros((60, B))
    np.add.at(dense, (np.repeat(np.arange(60), np.diff(indptr)), cols), values)  # the same X, built densely
    sparse_fit = fit_logistic(features, labels, B, l2=1e-3, max_iter=100)
    dense_fit = fit_logistic_dense(dense, labels, l2=1e-3, max_iter=100)
    # the same objective to 1e-12; the weights agree to what L-BFGS's stopping rule leaves (sums in another order)
    assert dense_fit.final_loss[0] == pytest.approx(sparse_fit.final_loss[0], rel=1e-12)
    assert dense_fit.weights == pytest.approx(sparse_fit.weights, abs=1e-5) and dense_fit.bias == pytest.approx(sparse_fit.bias, abs=1e-5)
    assert dense_fit.project(dense)[:, 0] == pytest.approx(sparse_fit.decision(features)[:, 0], abs=1e-5)
    x = rng.standard_normal((50, 4))
    y = x @ np.array([1.0, -2.0, 0.5, 0.0]) + 3.0
    ridge = fit_ridge(x, y, l2=0.0)  # no penalty: the exact least-squares solution
    assert ridge.weights[0] == pytest.approx([1.0, -2.0, 0.5, 0.0], abs=1e-9) and ridge.bias[0] == pytest.approx(3.0)
    assert np.abs(fit_ridge(x, y, l2=10.0).weights).sum() < np.abs(ridge.weights).sum()  # the penalty shrinks
