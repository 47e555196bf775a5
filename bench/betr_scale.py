"""BETR's classifier over a generated 2,000,000-document pool: docs/s of the classifier stage (features
included) with local workers.

    python -m bench.betr_scale [--docs 2000000] [--workers 2] [--sample 0.001] [--work DIR] [--keep]

Generates the pool of bench/scale_dsir.py (short documents of random words from a few topics; kept
out of the repository: a temporary folder unless --work names one) and a target of math-topic
documents, then runs `dataselect run` with method.name: betr end to end from an empty cache, as a
subprocess measured as a process tree. Prints the pool stage's docs/s (read, render, featurise,
classify and write a score per document, summed over the workers' shards and timed by the loop) and
the run's wall time split by stage.
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np

from bench.common import (
    COMMON,
    TOPICS,
    ensure_pool,
    record,
    run_measured,
)


def math_target(path: Path, docs: int, seed: int = 1) -> None:
    rng = np.random.default_rng(seed)
    vocab = np.array(TOPICS["math"] + COMMON)
    with open(path, "w", encoding="utf-8") as handle:
        for i in range(docs):
            handle.write(json.dumps({"id": f"t{i}", "text": " ".join(vocab[rng.integers(len(vocab), size=rng.integers(20, 61))])}) + "\n")


def main() -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--docs", type=int, default=2_000_000)
    parser.add_argument("--workers", type=int, nargs="+", default=[2])
    parser.add_argument("--sample", default="0.001", help="method.betr.sample")
    parser.add_argument("--features", default="tokens", choices=["tokens", "reference"])
    parser.add_argument("--shard-size", type=int, default=4096)
    parser.add_argument("--work", type=Path, default=None, help="folder for the pool and runs (default: a temporary one)")
    parser.add_argument("--keep", action="store_true", help="keep the work folder")
    parser.add_argument("--set", dest="overrides", action="append", default=[], help="extra config overrides")
    args = parser.parse_args()

    work = args.work or Path(tempfile.mkdtemp(prefix="dataselect-betr-scale-"))
    work.mkdir(parents=True, exist_ok=True)
    runs: list[dict] = []
    try:
        pool, target = ensure_pool(work, args.docs), work / "target.jsonl"
        math_target(target, 300)
        for workers in args.workers:
            run_dir = work / f"run-{workers}"
            shutil.rmtree(run_dir, ignore_errors=True)
            items = [f"input.path={pool}", f"target.path={target}", "method.name=betr", f"method.betr.sample={args.sample}",
                     f"method.betr.features={args.features}", "method.budget=10000", f"runtime.num_workers={workers}",
                     f"runtime.shard_size={args.shard_size}", f"output.dir={run_dir / 'out'}", f"runtime.cache_dir={run_dir / 'cache'}",
                     "runtime.progress=false", *args.overrides]
            command = [sys.executable, "-m", "dataselect.cli", "run", "-q", *[a for item in items for a in ("--set", item)]]
            measured = run_measured(command)
            if measured.returncode != 0:
                print(measured.output)
                raise SystemExit(f"run with {workers} workers failed")
            manifest = json.loads((run_dir / "out" / "manifest.json").read_text())
            stage = manifest["stages"]["pool"]
            metrics = manifest["method"]
            print(f"workers {workers}: classifier stage {stage['docs']:,} docs in {stage['seconds']:.1f}s = "
                  f"{stage['docs'] / stage['seconds']:,.0f} docs/s (target >= 20,000); run wall {measured.wall_s:.1f}s, "
                  f"CPU {measured.cpu_s:.0f}s, peak RSS of the process tree {measured.peak_rss_gb:.2f} GB; "
                  f"1-min load average before {measured.load_before:.2f}, after {measured.load_after:.2f}")
            print(f"  stages (docs, seconds): {({name: (s['docs'], s['seconds']) for name, s in manifest['stages'].items()})}")
            print(f"  timings: {manifest['timings_s']}")
            print(f"  sample {metrics['sample']}; held-out AUROC {metrics['betr_tasks']['target']['heldout_auroc']}")
            heldout_auroc = metrics["betr_tasks"]["target"]["heldout_auroc"]  # None without both classes held out
            runs.append({"workers": workers, "docs_per_s": round(stage["docs"] / stage["seconds"]), "stage_docs": stage["docs"],
                         "stage_s": round(stage["seconds"], 1), "wall_s": round(measured.wall_s, 1), "cpu_s": round(measured.cpu_s, 1),
                         "peak_rss_gb": round(measured.peak_rss_gb, 2), "heldout_auroc": None if heldout_auroc is None else round(heldout_auroc, 4),
                         "load_before": measured.load_before, "load_after": measured.load_after})
            shutil.rmtree(run_dir / "cache", ignore_errors=True)
    finally:
        if not args.keep and args.work is None:
            shutil.rmtree(work, ignore_errors=True)
    last = runs[-1]  # --workers takes one count or more
    return {"docs_per_s": last["docs_per_s"], "workers": last["workers"], "wall_s": last["wall_s"], "peak_rss_gb": last["peak_rss_gb"],
            "heldout_auroc": last["heldout_auroc"], "docs": args.docs, "features": args.features, "runs": runs}


if __name__ == "__main__":
    sys.exit(record("betr_scale", main))
