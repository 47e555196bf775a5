"""DSIR through Ray Data `map_batches` (2 actors) beside the engine's own 2-worker score phase, on the
generated pool of bench/scale_dsir.py.

    python -m bench.ray_data_dsir [--docs 2000000] [--workers 2] [--work DIR] [--keep]

1. `dataselect run` with DSIR (`tokens` features) and `runtime.num_workers=WORKERS`, empty cache, as a
   measured subprocess: its pool score phase (manifest.json) in docs/s. The run saves its scorer.
2. That saved scorer in Ray Data on a local instance of WORKERS + 1 CPUs (the actors', and one to read): `read_json(pool)` ->
   `score_dataset(..., concurrency=WORKERS)` (dataselect.integrations.ray_data), every batch consumed; docs/s
   over the whole pipeline (reading, actor start-up and scoring: what a user of Ray Data waits for).
3. The Ray scores of the first batches (at least 1,000 documents) against the run's scores.parquet (must agree within 1e-6).

Prints both rates side by side, their ratio (the issue asks for at least 0.8x) and the load average before
and after, since another process on the machine moves both numbers.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from pathlib import Path

import numpy as np

from bench.common import prepared, record, run_measured

CHECKED = 1000  # at least this many documents' Ray scores are checked against the run's (whole batches)


def engine_run(pool: Path, target: Path, out: Path, workers: int, shard_size: int) -> dict:
    """The engine's DSIR run with `workers` local workers: its pool score phase seconds and docs."""
    command = [sys.executable, "-m", "dataselect.cli", "run", "-q", "--set", f"input.path={pool}", "--set", f"target.path={target}",
               "--set", "method.name=dsir", "--set", "method.dsir.features=tokens", "--set", "method.dsir.min_words=10",
               "--set", "method.budget=10000", "--set", f"runtime.num_workers={workers}", "--set", f"runtime.shard_size={shard_size}",
               "--set", f"output.dir={out / 'out'}", "--set", f"runtime.cache_dir={out / 'cache'}", "--set", "runtime.progress=false"]
    measured = run_measured(command)
    if measured.returncode != 0:
        print(measured.output)
        raise SystemExit("the engine's run failed")
    stage = json.loads((out / "out" / "manifest.json").read_text())["stages"]["pool"]
    return {"seconds": stage["seconds"], "docs": stage["docs"], "wall_s": measured.wall_s}


def ray_data_run(pool: Path, scorer: Path, workers: int, batch_size: int) -> tuple[dict, dict[str, float]]:
    """The saved scorer over the pool in Ray Data with `workers` actors: seconds, docs, and the scores by id of the
    first batches (at least CHECKED documents)."""
    import ray

    from dataselect.integrations.ray_data import score_dataset

    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    # one CPU per actor and one for read_json's tasks (with only the actors' CPUs the read waits for a free
    # CPU forever); the engine's run likewise has its driver beside its workers
    ray.init(num_cpus=workers + 1, include_dashboard=False, log_to_driver=False, configure_logging=False)
    try:
        started = time.perf_counter()
        scored = score_dataset(ray.data.read_json(str(pool)), scorer, concurrency=workers, batch_size=batch_size)
        docs, first = 0, {}
        for batch in scored.iter_batches(batch_size=None, batch_format="pyarrow"):
            docs += batch.num_rows
            if len(first) < CHECKED:
                first.update(zip(batch.column("id").to_pylist(), batch.column("score").to_pylist()))
        seconds = time.perf_counter() - started
    finally:
        ray.shutdown()
    return {"seconds": seconds, "docs": docs}, first


def main() -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--docs", type=int, default=2_000_000)
    parser.add_argument("--workers", type=int, default=2, help="the engine's workers and Ray Data's actors")
    parser.add_argument("--shard-size", type=int, default=4096)
    parser.add_argument("--batch-size", type=int, default=4096, help="rows per map_batches call")
    parser.add_argument("--work", type=Path, default=None, help="folder for the pool and runs (default: a temporary one)")
    parser.add_argument("--keep", action="store_true", help="keep the work folder")
    args = parser.parse_args()

    work, pool, target = prepared(args.work, args.docs, "dataselect-ray-data-")
    try:
        load_before = os.getloadavg()
        run_dir = work / "engine"
        shutil.rmtree(run_dir, ignore_errors=True)
        engine = engine_run(pool, target, run_dir, args.workers, args.shard_size)
        ray_data, first = ray_data_run(pool, run_dir / "out" / "scorer", args.workers, args.batch_size)
        load_after = os.getloadavg()

        import pyarrow.parquet as pq

        table = pq.read_table(run_dir / "out" / "scores.parquet", columns=["id", "score"])
        expected = dict(zip(table.column("id").to_pylist(), table.column("score").to_pylist()))
        gap = max((abs(first[i] - expected[i]) for i in first if not np.isnan(expected[i])), default=0.0)
        engine_rate, ray_rate = engine["docs"] / engine["seconds"], ray_data["docs"] / ray_data["seconds"]
        print(f"engine, {args.workers} workers: pool score phase {engine['seconds']:.1f}s for {engine['docs']:,} docs = {engine_rate:,.0f} docs/s "
              f"(run wall {engine['wall_s']:.1f}s)")
        print(f"Ray Data map_batches, {args.workers} actors: {ray_data['seconds']:.1f}s for {ray_data['docs']:,} docs = {ray_rate:,.0f} docs/s "
              f"(read_json, actor start-up and scoring)")
        print(f"Ray Data / engine: {ray_rate / engine_rate:.2f}x (the issue asks >= 0.8x); largest score difference over {len(first):,} docs: {gap:.2e}")
        print(f"load average (1, 5, 15 min): before {load_before[0]:.2f} {load_before[1]:.2f} {load_before[2]:.2f}, "
              f"after {load_after[0]:.2f} {load_after[1]:.2f} {load_after[2]:.2f}; {os.cpu_count()} CPUs")
        if ray_data["docs"] != args.docs or gap > 1e-6:
            raise SystemExit("Ray Data's scores differ from the run's")
        return {"ray_vs_engine": round(ray_rate / engine_rate, 4), "engine_docs_per_s": round(engine_rate), "ray_docs_per_s": round(ray_rate),
                "engine_s": round(engine["seconds"], 1), "ray_s": round(ray_data["seconds"], 1), "max_score_difference": float(gap),
                "docs": ray_data["docs"], "workers": args.workers, "engine_wall_s": round(engine["wall_s"], 1), "checked_docs": len(first),
                "load_before": list(load_before), "load_after": list(load_after)}
    finally:
        if not args.keep and args.work is None:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(record("ray_data_dsir", main))
