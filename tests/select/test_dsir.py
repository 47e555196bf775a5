"""DSIR's select phase: Gumbel top-K, top-K, sequential multi-target quotas (METHODS.md 2.5, 2.9)."""
from __future__ import annotations

import itertools

import numpy as np
import pytest

from dataselect.errors import ConfigError
from dataselect.scoring import importance, ngram
from dataselect.select.dsir import gumbel_top_k, kl_reduction, resolve_proportions, sequential_select, target_quotas

# chi-square critical values at alpha = 0.001 (no scipy needed at test time)
CHI2_CRITICAL_001 = {4: 18.467, 9: 27.877}


def chi_square(observed: np.ndarray, expected: np.ndarray) -> float:
    return float(((observed - expected) ** 2 / expected).sum())


def test_gumbel_top1_frequency_is_proportional_to_the_weight():
    weights = np.array([1.0, 2.0, 3.0, 4.0, 10.0])
    rng = np.random.default_rng(123)
    trials = 20_000
    hits = np.bincount([int(gumbel_top_k(np.log(weights), 1, rng)[0]) for _ in range(trials)], minlength=5)
    expected = trials * weights / weights.sum()
    assert chi_square(hits, expected) < CHI2_CRITICAL_001[4]
    # the test has power: the same counts are far from a uniform choice
    assert chi_square(hits, np.full(5, trials / 5)) > 1000


def test_gumbel_top2_matches_exact_successive_sampling():
    weights = np.array([1.0, 2.0, 3.0, 4.0, 5.0])
    p = weights / weights.sum()
    pairs = list(itertools.combinations(range(5), 2))
    exact = np.array([p[i] * p[j] / (1 - p[i]) + p[j] * p[i] / (1 - p[j]) for i, j in pairs])  # by enumeration
    assert exact.sum() == pytest.approx(1.0)
    rng = np.random.default_rng(7)
    trials = 20_000
    index = {pair: n for n, pair in enumerate(pairs)}
    observed = np.zeros(len(pairs))
    for _ in range(trials):
        observed[index[tuple(sorted(gumbel_top_k(np.log(weights), 2, rng).tolist()))]] += 1
    assert chi_square(observed, trials * exact) < CHI2_CRITICAL_001[9]
    naive = np.array([p[i] + p[j] for i, j in pairs])
    naive /= naive.sum()  # a plausible wrong answer (inclusion proportional to w) is rejected
    assert chi_square(observed, trials * naive) > CHI2_CRITICAL_001[9]


def test_target_equal_to_raw_gives_a_uniform_selection():
    texts = [f"doc {i} " + " ".join(["alpha", "beta", "gamma", "delta"][: 1 + i % 4] * (1 + i % 3)) for i in range(10)]
    features = ngram.ReferenceFeaturizer(num_buckets=256).featurize(texts)
    counts = importance.bucket_counts(features, 256)
    delta = importance.log_ratio(importance.fit_distribution(counts), importance.fit_distribution(counts))
    weights = importance.log_weights(features, delta[None, :])  # [10, 1]
    assert (weights == 0).all()
    rng = np.random.default_rng(11)
    trials, k = 6000, 3
    inclusion = np.zeros(10)
    for _ in range(trials):
        chosen, _ = sequential_select(weights, [k], np.ones(10, bool), "gumbel", rng)
        inclusion[chosen] += 1
    assert chi_square(inclusion, np.full(10, trials * k / 10)) < CHI2_CRITICAL_001[9]


def test_same_seed_same_selection_and_another_seed_differs():
    log_w = np.random.default_rng(0).normal(size=500)
    eligible = np.arange(500) % 7 != 0
    a = gumbel_top_k(log_w, 50, np.random.default_rng(42), eligible)
    b = gumbel_top_k(log_w, 50, np.random.default_rng(42), eligible)
    c = gumbel_top_k(log_w, 50, np.random.default_rng(43), eligible)
    np.testing.assert_array_equal(a, b)
    assert set(a.tolist()) != set(c.tolist())
    assert eligible[a].all() and len(set(a.tolist())) == 50


def test_topk_is_deterministic_argsort():
    log_w = np.random.default_rng(3).normal(size=(200, 1))
    chosen, task = sequential_select(log_w, [15], np.ones(200, bool), "topk", np.random.default_rng(0))
    np.testing.assert_array_equal(chosen, np.argsort(log_w[:, 0])[::-1][:15])
    assert (task == 0).all()
    again, _ = sequential_select(log_w, [15], np.ones(200, bool), "topk", np.random.default_rng(999))
    np.testing.assert_array_equal(chosen, again)


def test_quotas_follow_the_package():
    assert target_quotas(10, [0.5, 0.3, 0.2]) == [5, 3, 2]
    assert target_quotas(10, [1, 1, 1]) == [3, 3, 4]  # remainder to the last target
    assert target_quotas(7, [2, 0]) == [7, 0]
    assert sum(target_quotas(2001, [0.29, 0.71])) == 2001


def test_sequential_targets_mask_earlier_picks():
    n = 100
    log_w = np.zeros((n, 2))
    log_w[:, 0] = np.arange(n)  # target 0 prefers high indices
    log_w[:, 1] = np.arange(n)  # target 1 too: it must take the next ones down
    eligible = np.ones(n, bool)
    eligible[99] = False
    chosen, task = sequential_select(log_w, [5, 3], eligible, "topk", np.random.default_rng(0))
    assert chosen.tolist() == [98, 97, 96, 95, 94, 93, 92, 91]
    assert task.tolist() == [0] * 5 + [1] * 3
    # a quota larger than what is left takes what is left
    chosen, _ = sequential_select(log_w, [60, 60], eligible, "gumbel", np.random.default_rng(0))
    assert len(chosen) == 99 and len(set(chosen.tolist())) == 99


def test_proportions_resolution():
    names = ["a", "b"]
    np.testing.assert_allclose(resolve_proportions(names, None, np.array([30, 10])), [0.75, 0.25])
    np.testing.assert_allclose(resolve_proportions(names, [1, 3], np.array([30, 10])), [0.25, 0.75])
    np.testing.assert_allclose(resolve_proportions(names, {"b": 1, "a": 1}, np.array([30, 10])), [0.5, 0.5])
    with pytest.raises(ConfigError, match="target_proportions"):
        resolve_proportions(names, [1.0], np.array([1, 1]))
    with pytest.raises(ConfigError, match="target_proportions"):
        resolve_proportions(names, {"a": 1, "c": 1}, np.array([1, 1]))


def test_kl_reduction_sign():
    target = np.array([[0.7, 0.3, 0.0, 0.0]])
    closer = np.array([60, 40, 0, 0])
    farther = np.array([10, 10, 40, 40])
    report = kl_reduction(target, closer, farther)
    assert report["kl_reduction"] > 0
    assert report["kl_reduction"] == pytest.approx(report["kl_target_random"] - report["kl_target_selected"])
    assert kl_reduction(target, farther, closer)["kl_reduction"] < 0
