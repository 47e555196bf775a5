"""RDS+ select phase against METHODS.md section 1.11's known answers."""
import numpy as np
import pyarrow as pa
import pytest
import torch

from dataselect.io.shards import ShardStore
from dataselect.select.base import first_occurrences, top_k
from dataselect.select.rds import SIMILARITY_ROWS, TaskTargets, round_robin, task_similarities
from dataselect.stats import SourceStats


def _store(tmp_path, vectors: np.ndarray, shard_size: int) -> ShardStore:
    store = ShardStore(tmp_path / "store")
    shards = 0
    for index, start in enumerate(range(0, len(vectors), shard_size)):
        block = vectors[start : start + shard_size]
        store.write_shard(index, pa.table({"id": [str(i) for i in range(start, start + len(block))]}), SourceStats("pool"),
                          {"emb": block.astype(np.float16)})
        shards += 1
    store.complete(shards, {})
    return store


def _unit(rng, n, d):
    x = rng.standard_normal((n, d)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


@pytest.mark.parametrize("aggregation", ["max", "mean"])
def test_tiled_similarities_equal_the_dense_matrix(tmp_path, aggregation):
    rng = np.random.default_rng(0)
    pool, targets = _unit(rng, 53, 16), _unit(rng, 7, 16)
    tasks = np.array([0, 1, 0, 2, 1, 0, 2])
    store = _store(tmp_path, pool, shard_size=20)
    got = task_similarities(store, targets, tasks, aggregation, tile_rows=6, device=torch.device("cpu"))
    dense = pool.astype(np.float16).astype(np.float32) @ targets.T  # shards hold float16
    reduce = np.max if aggregation == "max" else np.mean
    expected = np.stack([reduce(dense[:, tasks == t], axis=1) for t in range(3)], axis=1)
    np.testing.assert_allclose(got, expected, atol=1e-6)


def _reference(sims: np.ndarray, aggregation: str, k: int, temperature: float) -> np.ndarray:
    """numpy, on the whole [N, q] block: what the running (tiled) aggregates must equal."""
    if aggregation == "max":
        return sims.max(axis=1)
    if aggregation == "mean":
        return sims.mean(axis=1)
    if aggregation == "topk_mean":
        return np.sort(sims, axis=1)[:, ::-1][:, :k].mean(axis=1)
    weights = np.exp((sims - sims.max(axis=1, keepdims=True)) / temperature)
    return (weights * sims).sum(axis=1) / weights.sum(axis=1)


@pytest.mark.parametrize("aggregation", ["max", "mean", "topk_mean", "softmax"])
@pytest.mark.parametrize("single_task", [True, False])
def test_every_aggregation_equals_numpy_across_target_tiles(tmp_path, monkeypatch, aggregation, single_task):
    from dataselect.select import rds

    monkeypatch.setattr(rds, "TARGET_TILE", 3)  # a task's targets arrive over several tiles
    rng = np.random.default_rng(2)
    pool, targets = _unit(rng, 41, 8), _unit(rng, 11, 8)
    tasks = np.zeros(11, np.int64) if single_task else np.array([2, 0, 0, 1, 2, 0, 0, 2, 0, 1, 0])
    got = task_similarities(_store(tmp_path, pool, 16), targets, tasks, aggregation, tile_rows=10, device=torch.device("cpu"),
                            topk=4, temperature=0.07)
    dense = pool.astype(np.float16).astype(np.float32) @ targets.T
    expected = np.stack([_reference(dense[:, tasks == t], aggregation, 4, 0.07) for t in range(tasks.max() + 1)], axis=1)
    np.testing.assert_allclose(got, expected, atol=1e-5)


def test_topk_mean_of_one_is_max_and_of_all_is_mean(tmp_path):
    rng = np.random.default_rng(3)
    pool, targets = _unit(rng, 30, 8), _unit(rng, 9, 8)
    tasks = np.array([0, 0, 0, 0, 0, 1, 1, 1, 1])  # 5 and 4 targets
    store = _store(tmp_path, pool, 12)

    def scores(aggregation, k=1):
        return task_similarities(store, targets, tasks, aggregation, 7, torch.device("cpu"), topk=k)

    np.testing.assert_allclose(scores("topk_mean", 1), scores("max"), atol=1e-6)
    np.testing.assert_allclose(scores("topk_mean", 5), scores("mean"), atol=1e-6)  # k >= every task's size: all of them
    np.testing.assert_allclose(scores("topk_mean", 50), scores("mean"), atol=1e-6)
    cold = task_similarities(store, targets, tasks, "softmax", 7, torch.device("cpu"), temperature=1e-4)
    hot = task_similarities(store, targets, tasks, "softmax", 7, torch.device("cpu"), temperature=1e4)
    np.testing.assert_allclose(cold, scores("max"), atol=1e-3)  # softmax spans max (cold) to mean (hot)
    np.testing.assert_allclose(hot, scores("mean"), atol=1e-3)


def test_path2_is_argsort_of_row_max():
    rng = np.random.default_rng(1)
    scores = rng.standard_normal((5, 40)).max(axis=0)  # max over 5 queries
    assert list(top_k(scores, 10)) == list(np.argsort(-scores, kind="stable")[:10])


def test_top_k_ties_go_to_the_earlier_index_and_respect_eligibility():
    scores = np.array([0.5, 0.9, 0.9, 0.1, 0.9])
    assert list(top_k(scores, 3)) == [1, 2, 4]
    assert list(top_k(scores, 2, eligible=np.array([1, 0, 1, 1, 1], bool))) == [2, 4]


def test_top_k_ranks_nan_scores_last_for_every_k():
    scores = np.array([np.nan, np.nan, 1.0, 0.5])
    assert [top_k(scores, k).tolist() for k in range(1, 5)] == [[2], [2, 3], [2, 3, 0], [2, 3, 0, 1]]


def test_round_robin_interleaves_and_skips_duplicates():
    # task 0 ranks 0 > 1 > 2 > 3; task 1 ranks 0 > 3 > 2 > 1
    scores = np.array([[0.9, 0.8], [0.8, 0.1], [0.7, 0.3], [0.1, 0.5]])
    chosen, tasks = round_robin(scores, 3, np.ones(4, bool))
    # t0 takes 0; t1's best (0) is taken, so its turn is spent; t0 takes 1; t1 takes 3
    assert list(chosen) == [0, 1, 3] and list(tasks) == [0, 0, 1]


def test_round_robin_balances_tasks_with_different_score_scales():
    rng = np.random.default_rng(2)
    n, k = 300, 60
    scores = np.full((n, 3), -1e9)
    for t in range(3):  # disjoint top lists, scales 1, 100, 0.01
        scores[t::3, t] = rng.random(n // 3) * [1, 100, 0.01][t]
    chosen, tasks = round_robin(scores, k, np.ones(n, bool))
    assert len(set(chosen)) == k
    counts = np.bincount(tasks, minlength=3)
    assert all(abs(c - k / 3) <= 1 for c in counts)


def test_round_robin_stops_when_lists_run_out():
    chosen, _ = round_robin(np.array([[1.0, 0.0], [0.5, 0.2]]), 5, np.ones(2, bool))
    assert sorted(chosen) == [0, 1]


def test_first_occurrences_keeps_first_of_each_hash():
    assert list(first_occurrences(np.array([5, 3, 5, 7, 3]))) == [True, True, False, True, False]


def test_store_take_returns_rows_in_the_asked_order_across_shards(tmp_path):
    store = _store(tmp_path, _unit(np.random.default_rng(3), 11, 4), shard_size=4)
    assert list(store.rows()) == [4, 4, 3]
    assert store.take(np.array([10, 0, 5, 4]), ["id"]) == {"id": ["10", "0", "5", "4"]}
    assert store.take(np.zeros(0, np.int64), ["id"]) == {"id": []}


@pytest.mark.parametrize("aggregation", ["max", "mean"])
def test_a_samples_similarity_has_the_same_bits_in_any_tile_or_block(aggregation):
    """Every product takes SIMILARITY_ROWS rows, so a row scored alone, in a shard of 7 or in one block of all
    gets the same bits (BLAS kernels, chosen by shape, sum in different orders)."""
    rng = np.random.default_rng(4)
    unit = lambda a: (a / np.linalg.norm(a, axis=1, keepdims=True)).astype(np.float32)  # noqa: E731
    pool, targets = unit(rng.normal(size=(SIMILARITY_ROWS + 37, 48))), unit(rng.normal(size=(300, 48)))
    prepared = TaskTargets(targets, np.arange(300) % 3, aggregation, torch.device("cpu"))
    whole = prepared.scores(pool, 8192)  # [n, 3]
    assert whole.shape == (len(pool), 3)
    np.testing.assert_allclose(whole[:, 0], (pool @ targets[::3].T).max(1) if aggregation == "max" else (pool @ targets[::3].T).mean(1), atol=1e-5)
    for tile_rows in (1, 7, SIMILARITY_ROWS + 1):
        assert np.array_equal(prepared.scores(pool, tile_rows), whole)
    assert np.array_equal(np.concatenate([prepared.scores(pool[i : i + 1], 8192) for i in range(0, len(pool), 41)]), whole[::41])
