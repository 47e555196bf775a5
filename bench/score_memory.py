"""Peak resident memory of the whole process tree while RDS+ scores the real instruction pool.

    python -m bench.score_memory [--pool PATH] [--target PATH] [--workers 0] [--set key=value ...]

Runs `dataselect run` (RDS+, the default model, an empty cache in a temporary folder that is removed
afterwards) as a subprocess and samples the summed RSS of it and every worker process it starts.
Prints the peak, the wall time, the score phase's docs/s from the run's manifest, and the selection's
shares by the pool's `source` field.
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from collections import Counter
from pathlib import Path

from bench.common import (
    pool_sources,
    record,
    run_measured,
)

DATA = Path(__file__).resolve().parent.parent.parent / "shared" / "data"


def source_shares(pool: Path, selection: Path) -> str:
    """The selection's most common values of the pool's `source` field (where records have one)."""
    import pyarrow.parquet as pq

    source_of = pool_sources(pool)
    shares = Counter(source_of.get(str(i)) for i in pq.read_table(selection, columns=["id"]).column("id").to_pylist())
    total = sum(shares.values())
    return f"selected {total:,}; by source: " + ", ".join(f"{name} {count / total:.2%}" for name, count in shares.most_common(4))


def main() -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--pool", type=Path, default=DATA / "instruct_pool.jsonl.gz")
    parser.add_argument("--target", type=Path, default=DATA / "targets" / "gsm8k_test.jsonl.gz")
    parser.add_argument("--workers", type=int, default=0)
    parser.add_argument("--set", dest="overrides", action="append", default=[])
    args = parser.parse_args()
    for path in (args.pool, args.target):
        if not path.exists():
            raise SystemExit(f"error: {path} not found; pass --pool / --target (the real data lives in ../shared/data beside a developer checkout)")
    work = Path(tempfile.mkdtemp(prefix="dataselect-memory-"))
    try:
        command = [sys.executable, "-m", "dataselect.cli", "run", "-q", "--config", str(Path(__file__).resolve().parent.parent / "configs" / "rds.yaml"),
                   "--set", f"input.path={args.pool}", "--set", f"target.path={args.target}", "--set", "method.budget=2000",
                   "--set", "output.write=none", "--set", f"output.dir={work / 'out'}", "--set", f"runtime.cache_dir={work / 'cache'}",
                   "--set", f"runtime.num_workers={args.workers}", "--set", "runtime.progress=false",
                   *[item for override in args.overrides for item in ("--set", override)]]
        measured = run_measured(command, interval=0.2)
        if measured.returncode != 0:
            print(measured.output)
            raise SystemExit("the run failed")
        manifest = json.loads((work / "out" / "manifest.json").read_text())
        pool = manifest["stages"]["pool"]
        print(f"pool {pool['docs']:,} docs scored in {pool['seconds']:.1f}s ({pool['docs'] / pool['seconds']:.1f} docs/s), "
              f"workers {args.workers}, device {manifest['method']['device']}, dtype {manifest['method']['dtype']}")
        print(f"wall {measured.wall_s:.1f}s; peak resident memory of the process tree {measured.peak_rss_gb:.2f} GB")
        shares = source_shares(args.pool, work / "out" / "selection.parquet")
        print(shares)
        return {"peak_rss_gb": round(measured.peak_rss_gb, 2), "wall_s": round(measured.wall_s, 1), "docs_per_s": round(pool["docs"] / pool["seconds"], 1),
                "docs": pool["docs"], "score_s": round(pool["seconds"], 1), "workers": args.workers, "device": manifest["method"]["device"],
                "dtype": manifest["method"]["dtype"], "selection": shares, "cpu_s": round(measured.cpu_s, 1)}
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(record("score_memory", main))
