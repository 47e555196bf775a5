"""Cluster quotas, within-cluster picks and SemDeDup against METHODS.md 5.6's known answers."""
import numpy as np
import pytest
from support import blobs, unit

from dataselect.index import ArrayVectors, Clusters, cluster_pool
from dataselect.select.cluster import pick_by_quota, quotas, random_keys
from dataselect.select.semdedup import max_earlier_similarity, rank_order, semdedup, unit_rows


def one_cluster(x: np.ndarray, centroid: np.ndarray) -> Clusters:
    """Every row in cluster 0 around `centroid`."""
    centroid = centroid / np.linalg.norm(centroid)
    return Clusters(centroid[None].astype(np.float32), np.zeros(len(x), np.int32), (unit_rows(x) @ centroid).astype(np.float32))


@pytest.mark.parametrize("mode", ["equal", "size", "sqrt"])
def test_quotas_meet_the_budget_exactly_within_cluster_sizes(mode):
    rng = np.random.default_rng(0)
    for _ in range(200):
        sizes = rng.integers(0, 50, size=rng.integers(1, 30))
        budget = int(rng.integers(0, sizes.sum() + 1))
        q = quotas(sizes, budget, mode)
        assert q.sum() == budget and np.all(q >= 0) and np.all(q <= sizes)


def test_equal_quotas_are_floor_budget_over_k_and_small_clusters_give_their_rest_away():
    np.testing.assert_array_equal(quotas(np.array([100, 100, 100, 100]), 40, "equal"), [10, 10, 10, 10])
    # cluster 0 can give only 2; its 8 go to the other three (26 each, 2 + 78 = 80)
    np.testing.assert_array_equal(quotas(np.array([2, 100, 100, 100]), 80, "equal"), [2, 26, 26, 26])
    # the remainder goes by largest remainder, then to the larger cluster
    np.testing.assert_array_equal(quotas(np.array([10, 20, 30]), 7, "equal"), [2, 2, 3])


def test_size_and_sqrt_quotas_follow_their_weights():
    np.testing.assert_array_equal(quotas(np.array([100, 300]), 40, "size"), [10, 30])
    np.testing.assert_array_equal(quotas(np.array([100, 400]), 30, "sqrt"), [10, 20])
    np.testing.assert_array_equal(quotas(np.array([3, 0, 5]), 8, "sqrt"), [3, 0, 5])


def test_a_budget_above_the_clusters_is_refused():
    with pytest.raises(ValueError, match="more than the 5"):
        quotas(np.array([2, 3]), 6, "equal")


def test_well_separated_blobs_each_give_their_quota():
    x, truth = blobs(np.random.default_rng(1), k=6, per=30, d=8)
    clusters = cluster_pool(ArrayVectors(x), k=6, niter=10, seed=2, backend="faiss", init="kmeans++")
    q = quotas(clusters.sizes(), 60, "equal")
    chosen, _ = pick_by_quota(clusters.labels, random_keys(len(x), 7), q)
    assert len(chosen) == 60 and np.bincount(truth[chosen], minlength=6).tolist() == [10] * 6


def test_pick_takes_the_best_of_each_cluster_round_by_round():
    labels = np.array([0, 0, 0, 1, 1, 2, 2, 2])
    priority = np.array([0.1, 0.9, 0.5, 0.3, 0.7, np.nan, 0.2, 0.2])
    chosen, within = pick_by_quota(labels, priority, np.array([2, 1, 2]))
    # round 0: cluster 0's best (1), cluster 1's (4), cluster 2's (6; tie with 7 goes to the lower row)
    assert chosen.tolist() == [1, 4, 6, 2, 7] and within.tolist() == [0, 0, 0, 1, 1]
    chosen, _ = pick_by_quota(labels, priority, np.array([1, 0, 1]), eligible=np.array([1, 0, 1, 1, 1, 1, 0, 1], bool))
    assert chosen.tolist() == [2, 7]


def test_random_picks_are_fixed_by_the_seed():
    labels = np.random.default_rng(3).integers(0, 5, 500)
    q = quotas(np.bincount(labels), 50, "sqrt")
    a = pick_by_quota(labels, random_keys(500, 11), q)[0]
    assert a.tolist() == pick_by_quota(labels, random_keys(500, 11), q)[0].tolist()
    assert a.tolist() != pick_by_quota(labels, random_keys(500, 12), q)[0].tolist()


def test_blockwise_max_earlier_similarity_equals_the_dense_matrix():
    x = unit(np.random.default_rng(4), 77, 6)
    dense = x @ x.T
    expected = np.array([-np.inf] + [dense[j, :j].max() for j in range(1, 77)], np.float32)
    twins = [-1] + [int(dense[j, :j].argmax()) for j in range(1, 77)]
    for block in (1, 5, 16, 77, 200):
        similarity, twin = max_earlier_similarity(x, block=block)
        np.testing.assert_allclose(similarity, np.minimum(expected, 1), atol=1e-6)
        assert twin.tolist() == twins


def test_identical_embeddings_leave_exactly_one_survivor():
    x = np.tile(unit(np.random.default_rng(5), 1, 16), (9, 1)).astype(np.float16)  # as a store holds them
    dedup = semdedup(one_cluster(x, np.ones(16, np.float32)), ArrayVectors(x), order="hard", block=4)
    for eps in (1e-6, 0.05, 0.5):
        assert dedup.removed(eps).tolist() == [False] + [True] * 8  # the first in rank order stays


def test_eps_zero_removes_nothing():
    x = np.tile(unit(np.random.default_rng(6), 3, 8), (4, 1))  # every vector four times
    dedup = semdedup(one_cluster(x, np.ones(8, np.float32)), ArrayVectors(x))
    assert not dedup.removed(0.0).any() and dedup.removed(0.01).sum() == 9


def test_the_chain_a_b_c_keeps_only_a():
    # cos(A,B) = cos(B,C) = 0.95, cos(A,C) = 0.85: C goes because of B, which itself went
    gram = np.array([[1, 0.95, 0.85], [0.95, 1, 0.95], [0.85, 0.95, 1]])
    abc = np.linalg.cholesky(gram).astype(np.float32)  # rows A, B, C with exactly these cosines
    similarity, twin = max_earlier_similarity(abc)
    assert similarity.tolist() == pytest.approx([-np.inf, 0.95, 0.95], abs=1e-6) and twin.tolist() == [-1, 0, 1]
    # through the cluster path: hard order ranks A first when A is farthest from the centroid
    centroid = abc[2] + 0.5 * abc[1]
    dedup = semdedup(one_cluster(abc, centroid), ArrayVectors(abc), order="hard")
    assert dedup.removed(0.1).tolist() == [False, True, True]


def test_hard_keeps_the_far_one_of_a_duplicate_pair_and_easy_the_near_one():
    rng = np.random.default_rng(7)
    centroid = np.eye(8, dtype=np.float32)[0]
    near = unit_rows((centroid + 0.30 * np.eye(8, dtype=np.float32)[1])[None])[0]
    far = unit_rows((near + 0.02 * np.eye(8, dtype=np.float32)[2] - 0.02 * centroid)[None])[0]  # cos(near, far) > 0.999
    others = unit_rows(centroid + 0.8 * rng.standard_normal((5, 8)).astype(np.float32))
    x = np.vstack([near, far, others])
    clusters = one_cluster(x, centroid)
    assert clusters.sims[1] < clusters.sims[0]  # `far` is farther from the centroid
    for order, kept in (("hard", 1), ("easy", 0)):
        removed = semdedup(clusters, ArrayVectors(x), order=order).removed(0.01)
        assert removed[:2].tolist() == [kept != 0, kept != 1] and not removed[2:].any()


def test_dedup_counts_removals_per_cluster_and_skips_ineligible_rows():
    pair = unit(np.random.default_rng(8), 2, 8)
    x = np.vstack([pair[0], pair[0], pair[0], pair[1], pair[1]])
    clusters = Clusters(pair, np.array([0, 0, 0, 1, 1], np.int32), np.ones(5, np.float32))
    dedup = semdedup(clusters, ArrayVectors(x), order="random", seed=3)
    assert dedup.removed_per_cluster(0.05, 2).tolist() == [2, 1]
    partial = semdedup(clusters, ArrayVectors(x), eligible=np.array([1, 0, 1, 1, 0], bool))
    assert np.isnan(partial.max_earlier[[1, 4]]).all() and partial.removed(0.05).tolist() == [False, False, True, False, False]


def test_rank_orders():
    sims = np.array([0.5, 0.9, 0.1, 0.5])
    assert rank_order(sims, "hard").tolist() == [2, 0, 3, 1]
    assert rank_order(sims, "easy").tolist() == [1, 0, 3, 2]
    assert rank_order(sims, "random", keys=np.array([0.3, 0.1, 0.4, 0.2])).tolist() == [1, 3, 0, 2]
