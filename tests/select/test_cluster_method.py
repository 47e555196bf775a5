"""Methods `cluster` and `semdedup`: the select phase over hand-filled stores, config errors, and
one end-to-end run each through the pipeline (MiniLM, offline)."""
import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from support import MATH, base_overrides, blobs, fill_vector_store

import dataselect
from dataselect.config import build_config
from dataselect.context import RunContext
from dataselect.errors import ConfigError
from dataselect.index import Clusters
from dataselect.io.outputs import selection_table
from dataselect.io.shards import ShardStore
from dataselect.scoring.loop import ScoredSource
from dataselect.select.cluster_method import ClusterMethod, SemDedupMethod
from dataselect.stats import SourceStats


def select(tmp_path, vectors, method=ClusterMethod, cache="cache", **overrides):
    """The select phase of `method` over a store holding `vectors` (ids s0, s1, ...; every text distinct)."""
    root = tmp_path / "store"
    store = ShardStore(root) if root.exists() else fill_vector_store(root, vectors, shard_size=64)
    settings = {"method.name": method.name, "method.cluster.init": "kmeans++", "method.cluster.backend": "faiss", "runtime.device": "cpu",
                "runtime.progress": False}
    config = build_config({}, {**settings, **{k.replace("__", "."): v for k, v in overrides.items()}})
    context = RunContext(config=config, output_dir=tmp_path / "out", cache_root=tmp_path / cache, executor=None)  # select needs none
    return method().select(context, {"pool": ScoredSource(store, SourceStats("pool"), cached="hit")})


def test_well_separated_blobs_each_give_their_quota_and_ranks_go_round_by_round(tmp_path):
    x, truth = blobs(np.random.default_rng(0), k=5, per=40, d=8)
    selection = select(tmp_path, x, method__budget=50, method__cluster__num_clusters=5)
    chosen = np.array([int(i[1:]) for i in selection.ids])
    assert np.bincount(truth[chosen], minlength=5).tolist() == [10] * 5
    assert selection.columns["cluster_rank"] == sorted(selection.columns["cluster_rank"])  # every cluster's best first
    metrics = selection.metrics
    assert metrics["selected_per_cluster"] == [10] * 5 and sorted(metrics["cluster_sizes"]) == [40] * 5
    assert 1 < len(metrics["kmeans"]["iterations"]) <= 20 and metrics["dedup"] is None


def test_the_same_seed_gives_a_byte_identical_selection(tmp_path):
    x = blobs(np.random.default_rng(1), k=4, per=50, d=8)[0]
    tables = [selection_table(select(tmp_path, x, cache=f"c{i}", method__budget=30, method__cluster__num_clusters=6,
                                     method__cluster__quota="sqrt", method__seed=seed)) for i, seed in enumerate((3, 3, 4))]
    sink = [pa.BufferOutputStream() for _ in tables]
    for table, out in zip(tables, sink):
        pq.write_table(table, out)
    assert sink[0].getvalue().to_pybytes() == sink[1].getvalue().to_pybytes()
    assert tables[0].column("id").to_pylist() != tables[2].column("id").to_pylist()


def test_the_clustering_is_cached_beside_the_store(tmp_path):
    x = blobs(np.random.default_rng(2), k=3, per=20, d=8)[0]
    first = select(tmp_path, x, method__budget=9, method__cluster__num_clusters=3)
    again = select(tmp_path, x, method__budget=9, method__cluster__num_clusters=3)
    other = select(tmp_path, x, method__budget=9, method__cluster__num_clusters=4)
    assert [s.metrics["cluster_cache"] for s in (first, again, other)] == ["miss", "hit", "miss"]
    assert first.ids == again.ids


def test_nearest_picks_the_samples_closest_to_their_centroid(tmp_path):
    x = blobs(np.random.default_rng(3), k=3, per=30, d=8, spread=0.1)[0]
    selection = select(tmp_path, x, method__budget=6, method__cluster__num_clusters=3, method__cluster__pick="nearest")
    (folder,) = (tmp_path / "cache" / "clusters").iterdir()
    clusters = Clusters.load(folder)
    chosen = np.array([int(i[1:]) for i in selection.ids])
    for c in range(3):
        members = clusters.members(c)
        best = members[np.argsort(-clusters.sims[members], kind="stable")[:2]]
        assert set(chosen[clusters.labels[chosen] == c]) == set(best)
    np.testing.assert_allclose(selection.scores, clusters.sims[chosen])
    assert selection.columns["cluster_rank"] == [0, 0, 0, 1, 1, 1]
    first = dict(zip(selection.columns["cluster"][:3], selection.scores[:3]))
    assert all(first[c] >= score for c, score in zip(selection.columns["cluster"][3:], selection.scores[3:]))


def _scores_file(path, ids, scores):
    pq.write_table(pa.table({"id": ids, "score": scores}), path)
    return path


def test_score_from_picks_the_best_scored_samples_of_each_cluster(tmp_path):
    x, truth = blobs(np.random.default_rng(4), k=2, per=20, d=8)
    scores = np.random.default_rng(5).random(40)
    run = tmp_path / "earlier_run"
    run.mkdir()
    _scores_file(run / "scores.parquet", [f"s{i}" for i in range(40)][::-1], scores[::-1])  # any row order
    for order, pick in (("highest", np.argmax), ("lowest", np.argmin)):
        selection = select(tmp_path, x, method__budget=2, method__cluster__num_clusters=2, method__cluster__pick="score",
                           method__cluster__score_from=str(run), method__cluster__score_order=order)
        expected = {f"s{int(np.flatnonzero(truth == b)[pick(scores[truth == b])])}" for b in range(2)}
        assert set(selection.ids) == expected
        assert sorted(selection.scores.tolist()) == sorted(scores[[int(i[1:]) for i in selection.ids]].tolist())


@pytest.mark.parametrize("rows, message", [
    ([f"s{i}" for i in range(39)], "39 pool samples have no score|1 of 40 pool samples have no score"),
    ([f"s{i}" for i in range(40)] + ["other"], "1 ids the pool does not"),
    ([f"s{i}" for i in range(40)] + ["s3"], "more than once"),
])
def test_a_score_run_that_does_not_match_the_pool_is_one_line(tmp_path, rows, message):
    x = blobs(np.random.default_rng(6), k=2, per=20, d=8)[0]
    path = _scores_file(tmp_path / "s.parquet", rows, np.zeros(len(rows)))
    with pytest.raises(ConfigError, match=message) as error:
        select(tmp_path, x, method__budget=2, method__cluster__num_clusters=2, method__cluster__pick="score", method__cluster__score_from=str(path))
    assert str(error.value).startswith("config error: method.cluster.score_from:") and "\n" not in str(error.value)


@pytest.mark.parametrize("overrides, message", [
    ({"method__cluster__num_clusters": 41}, "method.cluster.num_clusters: 41 clusters for 40 unique samples"),
    ({"method__cluster__pick": "score"}, "method.cluster.score_from: pick: score needs"),
    ({"method__cluster__score_from": "somewhere"}, "method.cluster.score_from: only read with method.cluster.pick: score"),
    ({"method__cluster__pick": "score", "method__cluster__score_from": "/nonexistent/run"}, "method.cluster.score_from: /nonexistent/run does not exist"),
])
def test_bad_input_is_one_line(tmp_path, overrides, message):
    x = blobs(np.random.default_rng(7), k=2, per=20, d=8)[0]
    with pytest.raises(ConfigError, match=message) as error:
        select(tmp_path, x, **{"method__budget": 4, **overrides})
    assert "\n" not in str(error.value)


@pytest.mark.parametrize("key", ["method.semdedup.eps", "method.cluster.dedup_eps"])
@pytest.mark.parametrize("eps", [0, 1, -0.5, 2])
def test_eps_outside_the_open_unit_interval_is_refused(key, eps):
    with pytest.raises(ConfigError, match=rf"config error: {key}: must be in \(0, 1\)"):
        build_config({}, {key: eps})


def near_duplicates(rng, groups, copies, d, jitter=1e-3):
    """`groups` random directions, each `copies` times with a little noise. -> ([groups*copies, d], group of each)"""
    base = rng.standard_normal((groups, d)).astype(np.float32)
    x = np.repeat(base, copies, axis=0) + jitter * rng.standard_normal((groups * copies, d)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True), np.repeat(np.arange(groups), copies)


def test_semdedup_keeps_one_of_each_near_duplicate_group_and_every_survivor(tmp_path):
    x, group = near_duplicates(np.random.default_rng(8), groups=12, copies=4, d=16)
    selection = select(tmp_path, x, method=SemDedupMethod, method__budget=1.0, method__cluster__num_clusters=3)
    kept = np.array([int(i[1:]) for i in selection.ids])
    assert sorted(group[kept].tolist()) == list(range(12))  # one per group
    dedup = selection.metrics["dedup"]
    assert dedup["removed"] == 36 and sum(dedup["removed_per_cluster"]) == 36 and dedup["eps"] == 0.05
    assert selection.unique == 48 and len(selection.ids) == 12
    # each removed sample names its most similar earlier sample: one of its own group
    twins = selection.pool_columns["near_duplicate_of"].to_pylist()
    removed = [i for i, twin in enumerate(twins) if twin is not None]
    assert len(removed) == 36 and all(group[int(twins[i][1:])] == group[i] for i in removed)
    assert all(c > 0.95 for c in selection.pool_columns["near_duplicate_cosine"].to_pylist() if c is not None)
    examples = dedup["examples"]
    assert examples and all(e["cosine"] > 0.95 and e["kept"].split(":")[0] in selection.ids for e in examples)
    assert [e["cosine"] for e in examples] == sorted(e["cosine"] for e in examples)  # the closest to the threshold first
    # a smaller budget picks among the survivors
    assert len(select(tmp_path, x, method=SemDedupMethod, method__budget=5, method__cluster__num_clusters=3).ids) == 5


def test_cluster_with_a_dedup_step_selects_no_pair_above_one_minus_eps(tmp_path):
    x, group = near_duplicates(np.random.default_rng(9), groups=30, copies=3, d=16, jitter=0.05)
    selection = select(tmp_path, x, method__budget=25, method__cluster__num_clusters=4, method__cluster__dedup_eps=0.1)
    kept = np.array([int(i[1:]) for i in selection.ids])
    labels = np.array(selection.columns["cluster"])
    half = x.astype(np.float16).astype(np.float32)
    for c in np.unique(labels):
        members = half[kept[labels == c]]
        sims = members @ members.T - 2 * np.eye(len(members))
        assert sims.max() <= 0.9 + 1e-6
    assert len(kept) == 25 and selection.metrics["dedup"]["removed"] > 0


def test_cluster_and_semdedup_run_end_to_end_and_reuse_the_rds_embeddings(tmp_path, demo_files):
    pool, target = demo_files
    rds = dataselect.run(dataselect.load_config(None, base_overrides(tmp_path, pool, target, output__dir=str(tmp_path / "rds"))), quiet=True)
    overrides = base_overrides(tmp_path, pool, target, method__name="cluster", method__budget=6, method__cluster__num_clusters=3)
    result = dataselect.run(dataselect.load_config(None, overrides), quiet=True)
    manifest = json.loads((result.output_dir / "manifest.json").read_text())
    assert manifest["cache"] == {"pool": "hit"} and manifest["method"]["cluster_cache"] == "miss" and rds.manifest["cache"]["pool"] == "miss"
    assert manifest["counts"]["selected"] == 6 and sum(manifest["method"]["selected_per_cluster"]) == 6
    assert sum(manifest["method"]["cluster_sizes"]) == len(MATH) + 12
    table = pq.read_table(result.output_dir / "selection.parquet")
    assert table.column_names[:3] == ["id", "rank", "score"] and "cluster" in table.column_names
    dedup = dataselect.run(dataselect.load_config(None, {**overrides, "method.name": "semdedup", "method.budget": 1.0,
                                                         "output.dir": str(tmp_path / "sd")}), quiet=True)
    assert dedup.manifest["cache"] == {"pool": "hit"} and dedup.manifest["method"]["cluster_cache"] == "hit"
    assert dedup.manifest["counts"]["selected"] == 18 - dedup.manifest["method"]["dedup"]["removed"]
    scores = pq.read_table(dedup.output_dir / "scores.parquet").to_pylist()
    removed = [row for row in scores if row["excluded"] == "near_duplicate"]
    assert len(removed) == dedup.manifest["method"]["dedup"]["removed"] == dedup.manifest["budget"]["not_eligible"].get("near_duplicate", 0)
    assert all(row["near_duplicate_of"] and row["near_duplicate_cosine"] > 1 - 0.05 for row in removed)


@pytest.mark.parametrize("name", ["cluster", "semdedup"])
def test_the_shipped_configs_validate(name):
    from pathlib import Path

    from dataselect.config import load_config
    from dataselect.methods import get_method

    config = load_config(Path(__file__).resolve().parents[2] / "configs" / f"{name}.yaml")
    assert config.method.name == name and get_method(name).name == name


def test_faiss_gpu_without_a_gpu_build_is_one_line(tmp_path):
    from dataselect.index.backends import faiss_gpu_available

    if faiss_gpu_available():
        pytest.skip("this machine has faiss with GPU support")
    x = blobs(np.random.default_rng(10), k=2, per=10, d=8)[0]
    with pytest.raises(ConfigError, match="config error: method.cluster.backend: backend 'faiss-gpu' needs faiss with GPU support"):
        select(tmp_path, x, method__budget=4, method__cluster__backend="faiss-gpu", method__cluster__num_clusters=2)


def test_a_count_budget_above_the_pool_selects_every_unique_sample(tmp_path):
    """One rule for every method (context.budget): a count larger than what can be selected selects all of it."""
    x = blobs(np.random.default_rng(7), k=2, per=20, d=8)[0]
    assert len(select(tmp_path, x, method__budget=41, method__cluster__num_clusters=2).ids) == 40
