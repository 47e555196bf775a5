"""The index layer: vectors over a shard store, nearest-centroid backends, seeded spherical k-means
and the pool index, against plain numpy references."""
import faiss
import numpy as np
import pytest
from support import blobs, fill_vector_store, unit

from dataselect.index import ArrayVectors, Clusters, PoolIndex, StoreVectors, SubsetVectors, cluster_pool, make_assigner, sample, spherical_kmeans
from dataselect.index.kmeans import assign_to, imbalance_factor, split_empty
from dataselect.index.vectors import seeded_sample


def test_store_vectors_read_rows_and_tiles_as_float32(tmp_path):
    x = unit(np.random.default_rng(0), 53, 12)
    vectors = StoreVectors(fill_vector_store(tmp_path / "s", x, shard_size=20))
    half = x.astype(np.float16).astype(np.float32)
    assert (vectors.count(), vectors.dim()) == (53, 12)
    picks = np.array([52, 0, 21, 19, 20, 40, 0])
    np.testing.assert_array_equal(vectors.rows(picks), half[picks])
    for rows in (np.arange(53), np.arange(20, 40), np.r_[np.arange(20, 40), np.arange(0, 20)], np.arange(39, 19, -1)):  # whole shards, any order
        np.testing.assert_array_equal(vectors.rows(rows), half[rows])
    tiles = list(vectors.tiles(tile_rows=7))
    assert all(t.dtype == np.float32 for _, t in tiles)
    np.testing.assert_array_equal(np.concatenate([t for _, t in tiles]), half)
    assert [s for s, _ in tiles] == sorted({s for s, _ in tiles})


def test_seeded_sample_is_fixed_by_the_seed_distinct_and_sorted():
    a, b, c = seeded_sample(1000, 100, 1), seeded_sample(1000, 100, 1), seeded_sample(1000, 100, 2)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    assert len(np.unique(a)) == 100 and np.all(np.diff(a) > 0)
    np.testing.assert_array_equal(seeded_sample(50, 100, 1), np.arange(50))
    x = unit(np.random.default_rng(0), 30, 4)
    np.testing.assert_array_equal(sample(ArrayVectors(x), 10, 3), x[seeded_sample(30, 10, 3)])


@pytest.mark.parametrize("backend", ["faiss", "torch", "numpy"])
def test_assignment_and_member_sums_match_a_dense_reference(backend):
    rng = np.random.default_rng(1)
    x, centroids = unit(rng, 301, 16), unit(rng, 9, 16)
    labels, sims, sums = assign_to(ArrayVectors(x), centroids, make_assigner(backend, "cpu"), tile_rows=64)
    dense = x @ centroids.T  # [n, k]
    np.testing.assert_array_equal(labels, dense.argmax(1))
    np.testing.assert_allclose(sims, dense.max(1), atol=1e-6)
    expected = np.stack([x[dense.argmax(1) == c].astype(np.float64).sum(0) for c in range(9)])
    np.testing.assert_allclose(sums, expected, atol=1e-5)


def test_imbalance_factor_is_one_for_equal_clusters():
    assert imbalance_factor(np.array([5, 5, 5])) == 1.0
    assert imbalance_factor(np.array([10, 0])) == 2.0


def test_split_empty_gives_an_empty_centroid_half_of_a_populous_cluster():
    counts = np.array([0, 8, 1])
    centroids = np.array([[0.0, 0.0], [1.0, 1.0], [0.0, 1.0]], np.float32)
    assert split_empty(counts, centroids, np.random.default_rng(0)) == 1  # only cluster 1 has points to spare
    np.testing.assert_allclose(centroids[0], [1 + 1 / 1024, 1 - 1 / 1024])
    np.testing.assert_allclose(centroids[1], [1 - 1 / 1024, 1 + 1 / 1024])
    assert counts.tolist() == [4, 4, 1]


def test_kmeans_plus_plus_finds_well_separated_blobs_with_every_backend():
    x, truth = blobs(np.random.default_rng(2), k=5, per=40, d=8)
    for backend in ("faiss", "torch", "numpy"):
        result = spherical_kmeans(ArrayVectors(x), 5, niter=10, seed=3, assigner=make_assigner(backend, "cpu"), init="kmeans++")
        labels = (x @ result.centroids.T).argmax(1)
        # each blob is one cluster and each cluster one blob
        assert all(len(np.unique(labels[truth == b])) == 1 for b in range(5)) and len(np.unique(labels)) == 5
        np.testing.assert_allclose(np.linalg.norm(result.centroids, axis=1), 1.0, atol=1e-6)
        assert 1 < len(result.iterations) <= 10 and {"objective", "seconds", "imbalance", "nsplit"} <= set(result.iterations[0])


def test_kmeans_is_bit_identical_for_a_seed_whatever_the_thread_count():
    x = unit(np.random.default_rng(4), 2000, 24)
    threads = faiss.omp_get_max_threads()
    try:
        runs = []
        for count in (1, 2, 2):
            faiss.omp_set_num_threads(count)
            runs.append(spherical_kmeans(ArrayVectors(x), 20, niter=8, seed=5, assigner=make_assigner("faiss")).centroids)
    finally:
        faiss.omp_set_num_threads(threads)
    assert runs[0].tobytes() == runs[1].tobytes() == runs[2].tobytes()
    other = spherical_kmeans(ArrayVectors(x), 20, niter=8, seed=6, assigner=make_assigner("faiss")).centroids
    assert other.tobytes() != runs[0].tobytes()


def test_kmeans_stops_at_convergence_with_the_centroids_more_iterations_would_give():
    x = unit(np.random.default_rng(11), 600, 8)
    long = spherical_kmeans(ArrayVectors(x), 6, niter=200, seed=2, assigner=make_assigner("faiss"))
    steps = len(long.iterations)
    assert steps < 200 and long.iterations[-1]["converged"] and "converged" not in long.iterations[-2]
    objectives = np.array([it["objective"] for it in long.iterations])
    assert np.all(np.diff(objectives) >= -1e-4)  # spherical k-means never loses objective
    exact = spherical_kmeans(ArrayVectors(x), 6, niter=steps - 1, seed=2, assigner=make_assigner("faiss"))  # no convergence check reached
    assert exact.centroids.tobytes() == long.centroids.tobytes() and "converged" not in exact.iterations[-1]


def test_more_clusters_than_training_vectors_is_refused():
    with pytest.raises(ValueError, match="at least 11"):
        spherical_kmeans(ArrayVectors(unit(np.random.default_rng(0), 10, 4)), 11, 2, 0, make_assigner("numpy"))


def test_cluster_pool_trains_on_a_capped_sample_and_assigns_every_stored_vector(tmp_path):
    x, _ = blobs(np.random.default_rng(5), k=4, per=50, d=8)
    pool = StoreVectors(fill_vector_store(tmp_path / "s", x, shard_size=33))
    clusters = cluster_pool(pool, k=4, niter=5, seed=0, max_points_per_centroid=10, backend="faiss", init="kmeans++")
    assert clusters.info["train_points"] == 40 and clusters.info["pool_points"] == 200
    half = x.astype(np.float16).astype(np.float32)
    np.testing.assert_array_equal(clusters.labels, (half @ clusters.centroids.T).argmax(1))
    assert sorted(clusters.sizes().tolist()) == [50, 50, 50, 50]
    for c in range(4):
        members = clusters.members(c)
        assert np.all(clusters.labels[members] == c) and np.all(np.diff(members) > 0)
    streamed = cluster_pool(pool, k=4, niter=5, seed=0, max_points_per_centroid=None, backend="faiss")
    assert streamed.info["train_points"] == 200


def test_subset_vectors_stream_some_rows_and_k_means_trains_on_them_only(tmp_path):
    x, truth = blobs(np.random.default_rng(9), k=3, per=20, d=8)
    pool = StoreVectors(fill_vector_store(tmp_path / "s", x, shard_size=16))
    keep = np.flatnonzero(truth != 2)  # blob 2 left out of training
    subset = SubsetVectors(pool, keep)
    np.testing.assert_array_equal(np.concatenate([t for _, t in subset.tiles(7)]), pool.rows(keep))
    assert (subset.count(), subset.dim()) == (40, 8)
    clusters = cluster_pool(pool, k=2, niter=5, seed=0, max_points_per_centroid=None, backend="numpy", init="kmeans++", train_rows=keep)
    assert clusters.info["train_points"] == 40 and len(clusters.labels) == 60
    assert {len(np.unique(clusters.labels[truth == b])) for b in (0, 1)} == {1} and clusters.labels[0] != clusters.labels[20]


def test_clusters_save_and_load_round_trip(tmp_path):
    x, _ = blobs(np.random.default_rng(6), k=3, per=10, d=4)
    clusters = cluster_pool(ArrayVectors(x), k=3, niter=3, seed=1, backend="numpy")
    assert Clusters.load(tmp_path / "c") is None
    clusters.save(tmp_path / "c")
    loaded = Clusters.load(tmp_path / "c")
    assert loaded.labels.tobytes() == clusters.labels.tobytes() and loaded.centroids.tobytes() == clusters.centroids.tobytes()
    assert loaded.info == clusters.info and loaded.members(1).tolist() == clusters.members(1).tolist()


def test_flat_pool_index_is_exact_and_survives_save_and_load(tmp_path):
    rng = np.random.default_rng(7)
    x, queries = unit(rng, 120, 16), unit(rng, 30, 16)
    pool = StoreVectors(fill_vector_store(tmp_path / "s", x, shard_size=50))
    index = PoolIndex.build(pool, "flat", device="cpu")
    half = x.astype(np.float16).astype(np.float32)
    sims, rows = index.nearest(ArrayVectors(queries))
    np.testing.assert_array_equal(rows, (queries @ half.T).argmax(1))
    np.testing.assert_allclose(sims, (queries @ half.T).max(1), atol=1e-6)
    index.save(tmp_path / "pool.faiss")
    loaded = PoolIndex.load(tmp_path / "pool.faiss", device="cpu")
    assert loaded.kind == "flat" and loaded.ntotal == 120
    np.testing.assert_array_equal(loaded.search(queries, 3)[1], index.search(queries, 3)[1])


def test_ivf_pool_index_probing_every_list_equals_the_exact_index(tmp_path):
    rng = np.random.default_rng(8)
    x, queries = unit(rng, 400, 16), unit(rng, 25, 16)
    ivf = PoolIndex.build(ArrayVectors(x), "ivf", nlist=8, nprobe=8, device="cpu")
    exact = PoolIndex.build(ArrayVectors(x), "flat", device="cpu")
    assert ivf.kind == "ivf" and ivf.ntotal == 400
    np.testing.assert_array_equal(ivf.search(queries, 5)[1], exact.search(queries, 5)[1])
    ivf.save(tmp_path / "ivf.faiss")
    assert PoolIndex.load(tmp_path / "ivf.faiss", device="cpu", nprobe=8).kind == "ivf"
