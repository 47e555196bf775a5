"""The engine's k-means against faiss.Kmeans on the same vectors (issue 11).

    python -m bench.kmeans_vs_faiss [--n 100000] [--d 384] [--k 1000] [--niter 20] [--repeats 2]

Synthetic unit vectors (clustered, seeded) are written as float16 to a shard store in a temporary
folder (removed at the end). Side by side, alternating, in one process:
  engine: index.cluster_pool over the store (seeded sample of min(n, k x 256) float16 vectors upcast
          to float32, spherical k-means on the faiss-cpu backend, then every stored vector assigned
          by streaming over the shards)
  faiss:  faiss.Kmeans(spherical=True) trained on the same vectors already in memory as float32,
          then every vector assigned (km.index.search)
Both with faiss's default cap of 256 points per centroid (so 100,000 points train in full), the same
niter and every thread faiss uses; both stop early once an iteration changes nothing (faiss when the
objective stops improving, the engine when the assignment repeats), so the script prints how many
iterations each ran; `--centres 0` (uniform vectors) makes both run all of them. Prints wall times
(best of --repeats), their ratio, and the final objectives.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from bench.common import record


def synthetic(n: int, d: int, centres: int, seed: int) -> np.ndarray:
    """Unit vectors around `centres` random directions (0: uniform on the sphere), float16 as a store
    holds them. [n, d]"""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, d)).astype(np.float32)
    if centres:
        base = rng.standard_normal((centres, d)).astype(np.float32)
        x = base[rng.integers(0, centres, n)] + 0.8 * x  # cosine ~0.78 to the centre
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float16)


def write_store(root: Path, x: np.ndarray, shard_size: int):
    import pyarrow as pa

    from dataselect.io.shards import ShardStore
    from dataselect.stats import SourceStats

    store = ShardStore(root)
    starts = range(0, len(x), shard_size)
    for index, start in enumerate(starts):
        block = x[start : start + shard_size]
        store.write_shard(index, pa.table({"id": [str(i) for i in range(start, start + len(block))]}), SourceStats("pool"), {"emb": block})
    store.complete(len(starts), {})
    return store


def main() -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=100_000)
    parser.add_argument("--d", type=int, default=384)
    parser.add_argument("--k", type=int, default=1000)
    parser.add_argument("--niter", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--seed", type=int, default=1234)
    parser.add_argument("--shard-size", type=int, default=4096)
    parser.add_argument("--centres", type=int, help="clustered data around this many directions (default 2 x k); 0: uniform, "
                        "which k-means does not settle on within 20 iterations")
    args = parser.parse_args()

    import faiss

    from dataselect.index import StoreVectors, cluster_pool

    centres = 2 * args.k if args.centres is None else args.centres
    x16 = synthetic(args.n, args.d, centres=centres, seed=args.seed)
    print(f"{args.n:,} x {args.d} float16 vectors ({f'around {centres:,} directions' if centres else 'uniform'}), k={args.k}, "
          f"niter={args.niter}, faiss {faiss.__version__}, {faiss.omp_get_max_threads()} threads")
    engine_times, faiss_times = [], []
    with tempfile.TemporaryDirectory(prefix="kmeans-bench-") as folder:
        store = write_store(Path(folder) / "store", x16, args.shard_size)
        for repeat in range(args.repeats):
            start = time.perf_counter()
            clusters = cluster_pool(StoreVectors(store), args.k, args.niter, args.seed, max_points_per_centroid=256, backend="faiss", device="cpu")
            engine_times.append(time.perf_counter() - start)

            start = time.perf_counter()
            x32 = x16.astype(np.float32)  # the same vectors, in memory
            km = faiss.Kmeans(args.d, args.k, niter=args.niter, spherical=True, seed=args.seed, max_points_per_centroid=256)
            km.train(x32)
            _, labels = km.index.search(x32, 1)
            faiss_times.append(time.perf_counter() - start)
            seconds = clusters.info["seconds"]
            print(f"  repeat {repeat}: engine {engine_times[-1]:.2f}s (sample {seconds['sample']}s, train {seconds['train']}s "
                  f"over {len(clusters.info['iterations'])} iterations, assign {seconds['assign']}s)   "
                  f"faiss.Kmeans {faiss_times[-1]:.2f}s ({len(km.iteration_stats)} iterations)")
    engine, reference = min(engine_times), min(faiss_times)
    print(f"engine:       {engine:.2f}s  objective {clusters.info['iterations'][-1]['objective']:.1f} "
          f"(imbalance {clusters.info['iterations'][-1]['imbalance']:.3f}, trained on {clusters.info['train_points']:,})")
    print(f"faiss.Kmeans: {reference:.2f}s  objective {km.obj[-1]:.1f}")
    paired = sorted(e / f for e, f in zip(engine_times, faiss_times))
    print(f"ratio engine / faiss: {engine / reference:.3f} of the best times; per repeat {', '.join(f'{r:.3f}' for r in paired)}, "
          f"median {paired[len(paired) // 2]:.3f} (target <= 1.2, engine < 30 s)")
    assert len(labels) == clusters.labels.shape[0]
    last = clusters.info["iterations"][-1]  # the figures of the last repeat, as printed
    return {"ratio_engine_faiss": round(engine / reference, 4), "engine_s": round(engine, 2), "faiss_s": round(reference, 2),
            "ratio_median": round(paired[len(paired) // 2], 4), "engine_iterations": len(clusters.info["iterations"]),
            "faiss_iterations": len(km.iteration_stats), "engine_objective": round(float(last["objective"]), 1),
            "faiss_objective": round(float(km.obj[-1]), 1), "engine_imbalance": round(float(last["imbalance"]), 4),
            "train_points": int(clusters.info["train_points"]), "n": args.n, "d": args.d, "k": args.k, "niter": args.niter, "centres": centres,
            "threads": faiss.omp_get_max_threads(), "ratios": [round(r, 4) for r in paired]}


if __name__ == "__main__":
    sys.exit(record("kmeans_vs_faiss", main))
