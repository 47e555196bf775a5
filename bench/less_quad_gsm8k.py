"""LESS and Quad side by side on the real instruction pool with GSM8K test as the target.

    python -m bench.less_quad_gsm8k [--pool ...instruct_pool.jsonl.gz] [--target ...gsm8k_test.jsonl.gz]
                                    [--budget 2000] [--clusters 256] [--limit N] [--set key=value ...]

Runs `dataselect run` with method.name: less, then method.name: quad (k-means with --clusters clusters),
each as a subprocess from an empty cache, and prints for both: the share of the selection whose `source`
is "gsm8k" (targets: LESS >= 0.9, Quad >= 0.8), the wall time of the process tree (LESS: <= 40 minutes on
the 2-core CPU), the fraction of the pool whose gradients were computed (Quad: <= 0.3), and how many of
the k-means clusters each selection spans (Quad's should be at least twice LESS's). Both selections are
placed in Quad's clusters (read from its cache, kept until the end). --limit reads only the first N pool
records (a smoke run).
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from bench.common import common_overrides, data_file, gsm8k_parser, pool_sources, record, run_method, work_folder


def cluster_of_ids(cache: Path) -> dict[str, int]:
    """id -> k-means cluster of every pool row, from a quad run's cache (its embedding store and clustering)."""
    from dataselect.index import Clusters
    from dataselect.io.shards import ShardStore

    (clusters_dir,) = sorted((cache / "clusters").iterdir())
    pools = [d for d in sorted((cache / "embeddings").iterdir()) if (d / "complete.json").exists()]
    clusters = Clusters.load(clusters_dir)
    for folder in pools:  # the pool's store is the one with a label per row (the target's is smaller)
        ids = ShardStore(folder).column("id").to_pylist()
        if len(ids) == len(clusters.labels):
            return {str(i): int(c) for i, c in zip(ids, clusters.labels)}
    raise SystemExit(f"no embedding store in {cache} matches the clustering's {len(clusters.labels)} rows")


def main() -> dict:
    parser = gsm8k_parser(__doc__, "runs/bench_less_quad_gsm8k")
    parser.add_argument("--clusters", type=int, default=256, help="k-means clusters (method.cluster.num_clusters)")
    parser.add_argument("--limit", type=int, default=None, help="read only the first N pool records (a smoke run)")
    args = parser.parse_args()
    pool, target = data_file(args.pool, "--pool"), data_file(args.target, "--target")
    sources = pool_sources(pool)
    extra = [*args.overrides, f"method.cluster.num_clusters={args.clusters}", *([f"input.limit={args.limit}"] if args.limit else [])]
    overrides = common_overrides(pool, target, args.budget, extra)
    out = Path(args.out)
    less = run_method("less", overrides, out / "less", sources)
    with work_folder("dataselect-bench-quad-cache-") as cache:
        quad = run_method("quad", overrides, out / "quad", sources, keep_cache=str(cache / "cache"))
        cluster_of = cluster_of_ids(cache / "cache")
    figures = {}
    for name, result in (("less", less), ("quad", quad)):
        metrics = result["manifest"]["method"]
        featurised = metrics["quad"]["featurised_fraction"] if "quad" in metrics else 1.0
        spanned = len({cluster_of[i] for i in result["ids"]})
        figures[name] = (result["share"], result["wall_s"], featurised, spanned)
        print(f"  {name}: checkpoint weights {metrics['checkpoint_weights']}; warm-up {metrics['warmup']}")
    print(f"{'method':8}{'share gsm8k':>14}{'wall s':>10}{'featurised':>12}{'clusters spanned':>18}")
    for name, (share, wall, featurised, spanned) in figures.items():
        print(f"{name:8}{share:14.4f}{wall:10.1f}{featurised:12.4f}{spanned:18d}")
    quad_metrics = quad["manifest"]["method"]["quad"]
    pulls = np.asarray(quad_metrics["pulls"])
    print(f"quad: {quad_metrics['rounds']} rounds, {int((pulls > 0).sum())} of {len(pulls)} clusters pulled, most pulls {int(pulls.max())}")
    print(f"targets: less share >= 0.9 in <= 2400 s; quad share >= 0.8 with featurised <= 0.3 and clusters spanned >= 2 x less's "
          f"({figures['quad'][3]} vs {figures['less'][3]})")
    row: dict = {}  # the targets' figures first (bench/RESULTS.md shows a row's first eight)
    for name, (share, wall, featurised, spanned) in figures.items():
        row |= {f"{name}_share_gsm8k": round(share, 4), f"{name}_wall_s": round(wall, 1), f"{name}_featurised": round(featurised, 4),
                f"{name}_clusters_spanned": spanned}
    row |= {"clusters": args.clusters, "quad_rounds": quad_metrics["rounds"], "quad_clusters_pulled": int((pulls > 0).sum())}
    for name, result in (("less", less), ("quad", quad)):
        row |= {f"{name}_peak_rss_gb": round(result["peak_rss_gb"], 2), f"{name}_load_before": result["load_before"],
                f"{name}_load_after": result["load_after"]}
    return row


if __name__ == "__main__":
    sys.exit(record("less_quad_gsm8k", main))
