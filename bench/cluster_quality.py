"""Cluster-diverse selection and semantic dedup on the real instruction pool (issue 11).

    python -m bench.cluster_quality [--data ../shared/data/instruct_pool.jsonl.gz] [--cache .cache/bench_cluster]
                                    [--budget 0.01] [--set method.cluster.num_clusters=500 ...]

Embeds the pool with the engine (all-MiniLM-L6-v2, the store RDS+ uses; cached in --cache, so only the
first run pays for it), selects with method `cluster` (its defaults; nearest-the-centroid picks with
k = sqrt(N); the same with k = the budget, one pick per cluster), and compares each with a seeded
random selection of the same size from the same unique samples:
  coverage:        mean over pool samples of the cosine distance (1 - cos) to the nearest selected one
                   (target: cluster <= 0.9 x random)
  near-duplicates: pairs inside the selection with cosine > 0.95, as a share of all pairs (target: below random)
Then SemDeDup at eps 0.05 and 0.1 on the same clustering: how many samples go, and a dense check (an
independent numpy computation) that no kept pair inside a cluster has cosine above 1 - eps.
Writes nothing but the embedding cache (and --json when given).
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

from bench.common import ROOT, SHARED_DATA, coverage, record

DATA = SHARED_DATA / "instruct_pool.jsonl.gz"


def near_duplicate_pairs(selected: np.ndarray, threshold: float = 0.95) -> tuple[int, int]:
    """(pairs with cosine > threshold, all pairs) inside one selection; selected: [m, d] unit rows."""
    sims = selected @ selected.T  # [m, m]
    upper = np.triu(np.ones(len(selected), bool), k=1)
    return int((sims[upper] > threshold).sum()), int(upper.sum())


def check_kept_pairs(clusters, vectors, kept: np.ndarray, block: int = 2048) -> float:
    """The largest cosine between two kept samples of one cluster: float64, every pair, rows in blocks
    (an independent check of SemDeDup's rule, not its code path)."""
    from dataselect.select.semdedup import unit_rows

    worst = -1.0
    for cluster in range(clusters.k):
        rows = clusters.members(cluster)
        rows = rows[kept[rows]]
        if len(rows) < 2:
            continue
        x = unit_rows(vectors.rows(rows)).astype(np.float64)  # [m, d]
        for start in range(0, len(x), block):
            sims = x[start : start + block] @ x.T  # [b, m]
            sims[np.arange(len(sims)), start + np.arange(len(sims))] = -np.inf  # a sample with itself
            worst = max(worst, float(sims.max()))
    return worst


def main() -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--cache", type=Path, default=ROOT / ".cache" / "bench_cluster", help="embedding (and k-means) cache, reused")
    parser.add_argument("--budget", type=float, default=0.01)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--set", dest="overrides", action="append", default=[], help="extra config overrides")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()
    if not args.data.is_file():
        sys.exit(f"bench/cluster_quality.py: no pool at {args.data}; pass --data PATH (the instruct_pool.jsonl.gz of ../shared/data)")

    from dataselect.config import load_config
    from dataselect.context import RunContext
    from dataselect.index import StoreVectors
    from dataselect.pipeline import make_executor
    from dataselect.select.base import first_occurrences, top_k
    from dataselect.select.cluster_method import ClusterMethod, pool_clusters
    from dataselect.select.semdedup import semdedup, unit_rows
    from dataselect.stats import RunStats

    overrides = [f"input.path={args.data}", "input.prompt_field=prompt", "input.response_field=response", "method.name=cluster",
                 f"method.budget={args.budget}", f"method.seed={args.seed}", f"runtime.cache_dir={args.cache}", *args.overrides]
    config = load_config(None, overrides)
    executor = make_executor(config)
    context = RunContext(config=config, output_dir=args.cache / "unused", cache_root=config.runtime.resolved_cache_dir(), executor=executor,
                         stats=RunStats())
    method = ClusterMethod()
    started = time.perf_counter()
    try:
        scored = method.score(context)  # the pool's embeddings: embedded on the first run, a cache hit afterwards
    finally:
        executor.close()
    embedded = time.perf_counter()

    store = scored["pool"].store
    vectors = StoreVectors(store)
    row_of = {sample_id: row for row, sample_id in enumerate(store.column("id").to_pylist())}
    eligible = first_occurrences(store.column("text_hash").to_numpy())
    budget = config.method.budget_for(int(eligible.sum()))
    keys = np.random.default_rng(args.seed).random(len(eligible))
    baseline = top_k(keys, budget, eligible)  # the random method's rule: seeded keys, the K largest

    def evaluate(rows: np.ndarray) -> dict:
        picked = unit_rows(vectors.rows(rows))  # [K, d]
        duplicates, pairs = near_duplicate_pairs(picked)
        return {"coverage": round(coverage(vectors, picked), 5), "near_duplicate_pairs": duplicates, "near_duplicate_rate": duplicates / pairs}

    figures: dict = {"pool": len(eligible), "unique": int(eligible.sum()), "budget": budget, "overrides": overrides[3:],
                     "embed_seconds": round(embedded - started, 1), "pool_cache": scored["pool"].cached, "random": evaluate(baseline)}
    variants = {  # the engine's defaults, then nearest-the-centroid picks with k = sqrt(N) and k = budget (one per cluster)
        "defaults": [],
        "nearest": ["method.cluster.pick=nearest"],
        "nearest_k_budget": ["method.cluster.pick=nearest", f"method.cluster.num_clusters={budget}"],
    }
    for name, extra in variants.items():
        variant = load_config(None, overrides + extra)
        begun = time.perf_counter()
        selection = method.select(RunContext(config=variant, output_dir=context.output_dir, cache_root=context.cache_root, executor=None), scored)
        entry = evaluate(np.array([row_of[i] for i in selection.ids], np.int64))
        entry.update({"settings": extra, "num_clusters": selection.metrics["num_clusters"], "selected": len(selection.ids),
                      "select_seconds": round(time.perf_counter() - begun, 1), "kmeans_seconds": selection.metrics["kmeans"]["seconds"],
                      "kmeans_cache": selection.metrics["cluster_cache"]})
        entry["coverage_ratio"] = round(entry["coverage"] / figures["random"]["coverage"], 4)
        figures[name] = entry

    clusters, _ = pool_clusters(store, config, context.cache_root, figures["defaults"]["num_clusters"], np.flatnonzero(eligible))
    dedup_started = time.perf_counter()
    dedup = semdedup(clusters, vectors, config.method.semdedup.order, args.seed, eligible, config.method.semdedup.block_size)
    figures["semdedup_seconds"] = round(time.perf_counter() - dedup_started, 1)
    for eps in (0.05, 0.1):
        removed = dedup.removed(eps)
        kept = eligible & ~removed
        per_cluster = dedup.removed_per_cluster(eps, clusters.k)
        figures[f"semdedup_eps_{eps}"] = {"removed": int(removed.sum()), "kept": int(kept.sum()),
                                          "clusters_with_removals": int((per_cluster > 0).sum()),
                                          "max_kept_pair_cosine": round(check_kept_pairs(clusters, vectors, kept), 6),
                                          "threshold": 1 - eps}

    print(json.dumps(figures, indent=1))
    random = figures["random"]
    print(f"\nrandom: coverage (mean cosine distance to the nearest selected) {random['coverage']:.4f}, "
          f"near-duplicate pairs (cos > 0.95) {random['near_duplicate_pairs']} ({random['near_duplicate_rate']:.2e})")
    for name in variants:
        entry = figures[name]
        print(f"cluster {name} (k={entry['num_clusters']}): coverage {entry['coverage']:.4f}, ratio to random {entry['coverage_ratio']:.3f} "
              f"(target <= 0.9); near-duplicate pairs {entry['near_duplicate_pairs']} ({entry['near_duplicate_rate']:.2e})")
    for eps in (0.05, 0.1):
        entry = figures[f"semdedup_eps_{eps}"]
        ok = entry["max_kept_pair_cosine"] <= 1 - eps + 1e-6
        print(f"semdedup eps {eps}: removed {entry['removed']:,} of {figures['unique']:,} unique samples; largest kept pair inside a cluster "
              f"{entry['max_kept_pair_cosine']:.4f} ({'<=' if ok else '>'} {1 - eps:.2f})")
    if args.json:
        args.json.write_text(json.dumps(figures, indent=1))
    headline = {f"{name}_coverage_ratio": figures[name]["coverage_ratio"] for name in variants}
    headline |= {f"{name}_near_duplicate_pairs": figures[name]["near_duplicate_pairs"] for name in ("random", *variants)}
    headline |= {f"semdedup_eps_{eps}_removed": figures[f"semdedup_eps_{eps}"]["removed"] for eps in (0.05, 0.1)}
    return headline | figures


if __name__ == "__main__":
    sys.exit(record("cluster_quality", main))
