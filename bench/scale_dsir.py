"""Scaling of the score phase with local workers, and shard opening cost, on a generated 2,000,000-document pool.

    python -m bench.scale_dsir [--docs 2000000] [--workers 1 2] [--ray] [--work DIR] [--keep]

Generates a jsonl pool of short documents (random words from a fixed vocabulary, a few topics) and a
target, then runs `dataselect run` with DSIR (`tokens` features) end to end with an empty cache for each
worker count, as a subprocess whose whole process tree is measured (wall time, peak resident memory).
Prints docs/s of the score phase and end to end, the speed-up of the last worker count over the first,
and the time to open (plan-free: seek and read) the first and the last planned shard. With `--ray`, the
last worker count runs once more on a local Ray instance (`runtime.executor: ray`, as many tasks at once
as workers), and its docs/s is compared with the local executor's.
"""
from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import time
from pathlib import Path

from bench.common import prepared, record, run_measured


def open_times(pool: Path, shard_size: int, repeats: int = 5) -> tuple[float, float, int]:
    """Median seconds to open and read the first and the last planned shard, and the shard count."""
    from dataselect.config import SourceConfig
    from dataselect.io.plan import plan_shards
    from dataselect.io.readers import read_spec

    specs = list(plan_shards(SourceConfig(path=str(pool)), shard_size))

    def timed(spec) -> float:
        samples = []
        for _ in range(repeats):
            start = time.perf_counter()
            assert sum(1 for _ in read_spec(spec)) == spec.count
            samples.append(time.perf_counter() - start)
        return statistics.median(samples)

    return timed(specs[0]), timed(specs[-1]), len(specs)


def ratios(slow: dict, fast: dict) -> dict[str, float]:
    """docs/s of `fast` over `slow`, for the score phase and end to end."""
    return {"score_phase": slow["score_pool_s"] / fast["score_pool_s"], "end_to_end": slow["wall_s"] / fast["wall_s"]}


def said(ratio: dict[str, float]) -> str:
    return f"score phase {ratio['score_phase']:.2f}x, end to end {ratio['end_to_end']:.2f}x"


def main() -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--docs", type=int, default=2_000_000)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--shard-size", type=int, default=4096)
    parser.add_argument("--features", default="tokens", choices=["tokens", "reference"])
    parser.add_argument("--work", type=Path, default=None, help="folder for the pool and runs (default: a temporary one)")
    parser.add_argument("--keep", action="store_true", help="keep the work folder")
    parser.add_argument("--ray", action="store_true", help="also run the last worker count on a local Ray instance")
    args = parser.parse_args()

    work, pool, target = prepared(args.work, args.docs, "dataselect-scale-")
    try:
        first, last, shards = open_times(pool, args.shard_size)
        print(f"open+read a shard: first {first * 1e3:.1f} ms, last {last * 1e3:.1f} ms (ratio {last / first:.2f}), {shards} shards")
        results = {}
        runs = [("local", workers) for workers in args.workers] + ([("ray", args.workers[-1])] if args.ray else [])
        for executor, workers in runs:
            run_dir = work / f"run-{executor}-{workers}"
            shutil.rmtree(run_dir, ignore_errors=True)
            command = [sys.executable, "-m", "dataselect.cli", "run", "-q",
                       "--set", f"input.path={pool}", "--set", f"target.path={target}", "--set", "method.name=dsir",
                       "--set", f"method.dsir.features={args.features}", "--set", "method.dsir.min_words=10",
                       "--set", "method.budget=10000", "--set", f"runtime.num_workers={workers}", "--set", f"runtime.executor={executor}",
                       "--set", f"runtime.shard_size={args.shard_size}", "--set", f"output.dir={run_dir / 'out'}",
                       "--set", f"runtime.cache_dir={run_dir / 'cache'}", "--set", "runtime.progress=false"]
            measured = run_measured(command)
            if measured.returncode != 0:
                print(measured.output)
                raise SystemExit(f"run on {executor} with {workers} workers failed")
            manifest = json.loads((run_dir / "out" / "manifest.json").read_text())
            pool_stage = manifest["stages"]["pool"]
            results[executor, workers] = {
                "wall_s": measured.wall_s, "peak_rss_gb": measured.peak_rss_gb, "score_pool_s": pool_stage["seconds"],
                "docs": pool_stage["docs"], "select_s": manifest["timings_s"].get("select"),
            }
            r = results[executor, workers]
            print(f"{executor} workers {workers}: wall {r['wall_s']:.1f}s, pool score phase {r['score_pool_s']:.1f}s "
                  f"({r['docs'] / r['score_pool_s']:,.0f} docs/s; end to end {args.docs / r['wall_s']:,.0f} docs/s), "
                  f"select {r['select_s']}s, peak RSS of the process tree {r['peak_rss_gb']:.2f} GB")
            shutil.rmtree(run_dir / "cache", ignore_errors=True)
        a, b = ("local", args.workers[0]), ("local", args.workers[-1])
        row: dict = {}
        if a != b:
            speedup = ratios(results[a], results[b])
            print(f"speed-up {b[1]} vs {a[1]} workers: {said(speedup)}")
            row |= {f"speedup_{part}": round(value, 4) for part, value in speedup.items()}
        if args.ray:
            ray = ratios(results[b], results["ray", b[1]])
            print(f"ray vs local, {b[1]} workers (docs/s ratio): {said(ray)}")
            row |= {f"ray_vs_local_{part}": round(value, 4) for part, value in ray.items()}
        run = results[b]  # the last local worker count
        row |= {"workers": b[1], "docs_per_s": round(run["docs"] / run["score_pool_s"]), "end_to_end_docs_per_s": round(args.docs / run["wall_s"]),
                "wall_s": round(run["wall_s"], 1), "peak_rss_gb": round(run["peak_rss_gb"], 2), "open_first_ms": round(first * 1e3, 1),
                "open_last_ms": round(last * 1e3, 1), "shards": shards, "docs": args.docs, "features": args.features}
        return row | {"runs": [{"executor": executor, "workers": workers, "docs_per_s": round(r["docs"] / r["score_pool_s"]),
                                "end_to_end_docs_per_s": round(args.docs / r["wall_s"]), "wall_s": round(r["wall_s"], 1),
                                "score_pool_s": round(r["score_pool_s"], 1), "select_s": r["select_s"], "peak_rss_gb": round(r["peak_rss_gb"], 2)}
                               for (executor, workers), r in results.items()]}
    finally:
        if not args.keep and args.work is None:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(record("scale_dsir", main))
