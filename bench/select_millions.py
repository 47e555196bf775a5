"""The RDS+ select phase over millions of stored embeddings, in bounded memory.

    python -m bench.select_millions [--n 2000000] [--dim 384] [--shard-size 4096] [--targets 1319] [--work DIR]

Writes a pool store of N random unit vectors (float16, the embedding store's layout: N / shard-size
shards plus the consolidated index) and a target store in a subprocess, then runs RDSMethod.select on
them in another subprocess whose peak resident memory is measured, and prints wall time and peak RSS.
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np

from bench.common import bench_command, record, run_measured


def make_store(root: Path, n: int, dim: int, shard_size: int, seed: int) -> None:
    import pyarrow as pa

    from dataselect.io.shards import ShardStore
    from dataselect.stats import SourceStats

    store = ShardStore(root)
    rng = np.random.default_rng(seed)
    shards = 0
    for index, start in enumerate(range(0, n, shard_size)):
        rows = min(shard_size, n - start)
        vectors = rng.standard_normal((rows, dim), dtype=np.float32)  # [rows, d]
        vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
        meta = pa.table({
            "id": pa.array([f"s{start + i}" for i in range(rows)], pa.string()),
            "position": pa.array(np.arange(start, start + rows), pa.int64()),
            "text_hash": pa.array(rng.integers(-(2**62), 2**62, rows), pa.int64()),
            "norm_hash": pa.array(rng.integers(-(2**62), 2**62, rows), pa.int64()),
            "preview": pa.array(["x" * 40] * rows, pa.string()),
            "truncated": pa.array(np.zeros(rows, bool), pa.bool_()),
        })
        stats = SourceStats("pool", read=rows)
        store.write_shard(index, meta, stats, {"emb": vectors.astype(np.float16)})
        shards += 1
    store.complete(shards, {"role": "pool"})


def select(work: Path, dim: int) -> None:
    import torch

    from dataselect.config import Config
    from dataselect.io.shards import ShardStore
    from dataselect.scoring.loop import ScoredSource
    from dataselect.select.rds import RDSMethod
    from dataselect.stats import SourceStats

    config = Config.model_validate({"method": {"name": "rds", "budget": 10_000}, "runtime": {"progress": False}})
    pool, target = (ScoredSource(ShardStore(work / name), SourceStats(name), "hit") for name in ("pool", "target"))
    context = SimpleNamespace(config=config, eligible=lambda scored: np.ones(int(scored.store.rows().sum()), bool))
    method = RDSMethod()
    method.spec = SimpleNamespace(hf_config=SimpleNamespace(hidden_size=dim), device=torch.device("cpu"), pooling="mean", max_length=256,
                                  dtype=torch.float32)
    start = time.perf_counter()
    selection = method.select(context, {"pool": pool, "target": target})
    print(json.dumps({"select_s": time.perf_counter() - start, "selected": len(selection.ids), "scored": selection.scored}))


def main() -> dict | None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=2_000_000)
    parser.add_argument("--dim", type=int, default=384)
    parser.add_argument("--shard-size", type=int, default=4096)
    parser.add_argument("--targets", type=int, default=1319)
    parser.add_argument("--work", type=Path, default=None, help="keep the stores here (default: a temporary folder, removed)")
    parser.add_argument("--step", choices=["make", "select"], default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.step == "make":
        make_store(args.work / "pool", args.n, args.dim, args.shard_size, seed=0)
        make_store(args.work / "target", args.targets, args.dim, args.shard_size, seed=1)
        return
    if args.step == "select":
        select(args.work, args.dim)
        return

    work = args.work or Path(tempfile.mkdtemp(prefix="dataselect-select-"))
    try:
        common = bench_command("select_millions", "--work", str(work), "--n", str(args.n), "--dim", str(args.dim),
                               "--shard-size", str(args.shard_size), "--targets", str(args.targets))
        if not (work / "pool" / "complete.json").exists():
            made = run_measured(common + ["--step", "make"])
            if made.returncode:
                raise SystemExit(made.output)
            print(f"wrote a store of {args.n:,} x {args.dim} float16 vectors in {made.wall_s:.1f}s")
        measured = run_measured(common + ["--step", "select"], interval=0.05)
        if measured.returncode:
            raise SystemExit(measured.output)
        result = json.loads(measured.output.strip().splitlines()[-1])
        print(f"RDS+ select over {result['scored']:,} stored embeddings ({args.targets} targets, budget {result['selected']:,}): "
              f"{result['select_s']:.1f}s in select, {measured.wall_s:.1f}s wall with start-up; peak RSS {measured.peak_rss_gb:.2f} GB")
        return {"select_s": round(result["select_s"], 1), "wall_s": round(measured.wall_s, 1), "peak_rss_gb": round(measured.peak_rss_gb, 2),
                "scored": result["scored"], "selected": result["selected"], "targets": args.targets, "n": args.n, "dim": args.dim}
    finally:
        if args.work is None:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(record("select_millions", main))
