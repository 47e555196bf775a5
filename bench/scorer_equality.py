"""Saved scorers against the runs that wrote them, on real data: each method runs on the first N samples
of the instruction pool (GSM8K test as the target), its scorer is reloaded and scores the same records at
two batch sizes, and `dataselect apply --keep 0.1` runs over the same pool.

    python -m bench.scorer_equality [--pool ../shared/data/instruct_pool.jsonl.gz]
                                    [--target ../shared/data/targets/gsm8k_test.jsonl.gz] [--n 3000]

Per method and batch size (the run's own 16384 tokens, then 4096 and 65536 for the methods with a model
forward): the largest relative and absolute difference between the scorer's scores and the run's
(scores.parquet, matched by id; the issue's bar is 1e-5 relative), and whether apply's kept ids are exactly
the records reaching threshold(0.1) (and contain the run's top 10% of selectable samples). EL2N and
CoLoR-Filter use smaller proxies than the default (300 steps) so that the bench stays short; the code
path is the same.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time

import numpy as np
import pyarrow.parquet as pq

import dataselect
from bench.common import SHARED_DATA, data_file, record, work_folder
from dataselect.cli import main as cli
from dataselect.config import SourceConfig
from dataselect.io.plan import iter_raw_records

METHODS = {
    "rds": {"method.name": "rds"},
    "dsir-reference": {"method.name": "dsir", "method.dsir.features": "reference"},
    "dsir-tokens": {"method.name": "dsir", "method.dsir.features": "tokens"},
    "betr": {"method.name": "betr", "method.betr.sample": 0.5},
    "el2n-proxy": {"method.name": "el2n", "method.el2n.proxy.steps": 300},
    "color-proxy": {"method.name": "color", "method.color.proxy.steps": 300, "method.color.finetune_steps": 50},
    "cluster-nearest": {"method.name": "cluster", "method.cluster.pick": "nearest"},
}
FORWARD = ("rds", "el2n-proxy", "color-proxy", "cluster-nearest")  # the methods whose scores come from a model forward, batched by tokens


def differences(got: np.ndarray, expected: np.ndarray) -> tuple[float, float]:
    """(max relative, max absolute) difference over the samples both score (NaN: nothing to score)."""
    both = ~np.isnan(got) & ~np.isnan(expected)
    if np.isnan(got).sum() != np.isnan(expected).sum() or not both.any():
        return float("nan"), float("nan")
    diff = np.abs(got[both] - expected[both])
    return float(np.max(diff / np.maximum(np.abs(expected[both]), 1e-12))), float(np.max(diff))


def main() -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pool", default=SHARED_DATA / "instruct_pool.jsonl.gz")
    parser.add_argument("--target", default=SHARED_DATA / "targets" / "gsm8k_test.jsonl.gz")
    parser.add_argument("--n", type=int, default=3000)
    parser.add_argument("--methods", default=",".join(METHODS), help=f"comma-separated, of {', '.join(METHODS)}")
    args = parser.parse_args()
    pool, target = data_file(args.pool, "--pool"), data_file(args.target, "--target")
    records = [raw.record for raw in iter_raw_records(SourceConfig(path=str(pool), limit=args.n))]
    ids = [str(r["id"]) for r in records]
    print(f"{args.n:,} pool samples; load average {os.getloadavg()[0]:.2f} at the start")
    print(f"{'method':<16} {'batch tokens':>12} {'max rel diff':>13} {'max abs diff':>13}")
    methods: list[dict] = []
    with work_folder("bench-scorer-") as work:
        for name in args.methods.split(","):
            extra = METHODS[name]
            start = time.perf_counter()
            overrides = {"input.path": str(pool), "input.limit": args.n, "target.path": str(target), "method.budget": 0.1,
                         "output.dir": str(work / name), "runtime.cache_dir": str(work / "cache"), "runtime.progress": False, **extra}
            result = dataselect.run(dataselect.load_config(None, overrides))
            table = pq.read_table(work / name / "scores.parquet").to_pylist()
            expected = {row["id"]: row["score"] for row in table}
            batches: list[dict] = []
            for batch_tokens in ((16384, 4096, 65536) if name in FORWARD else (None,)):
                options = {"batch_tokens": batch_tokens} if batch_tokens else {}
                with dataselect.load_scorer(work / name / "scorer", **options) as scorer:
                    got = scorer.score(records)
                    threshold = scorer.threshold(0.1)
                relative, absolute = differences(got, np.array([expected.get(i, np.nan) for i in ids], np.float64))
                print(f"{name:<16} {batch_tokens or '-':>12} {relative:>13.2e} {absolute:>13.2e}")
                batches.append({"batch_tokens": batch_tokens, "max_rel_diff": relative, "max_abs_diff": absolute})
            out = work / f"{name}-applied"
            cli(["apply", "--scorer", str(work / name), "--input", str(pool), "--output", str(out), "--keep", "0.1", "-q",
                 "--set", f"input.limit={args.n}", "--set", f"runtime.cache_dir={work / 'cache'}"])
            kept = [json.loads(line)["id"] for line in (out / "selected.jsonl").read_text().splitlines()]
            reaching = {row["id"] for row in table if row["score"] >= threshold}
            selectable = sorted((row for row in table if row["excluded"] is None), key=lambda row: -row["score"])
            top = {row["id"] for row in selectable[: int(np.ceil(0.1 * len(selectable)))]}
            exact = set(kept) == reaching and len(kept) == len(set(kept)) and top <= reaching
            seconds = time.perf_counter() - start
            print(f"{name:<16} apply --keep 0.1 keeps exactly the samples reaching threshold(0.1): {exact} ({len(kept):,} kept); "
                  f"{seconds:.1f} s")
            methods.append({"method": name, "apply_exact": exact, "kept": len(kept), "seconds": round(seconds, 1), "batches": batches})
            del result
    print(f"load average {os.getloadavg()[0]:.2f} at the end")
    diffs = [batch for method in methods for batch in method["batches"]]
    # np.max, not max: a NaN (the scorer and the run disagree on which samples score) must show
    return {"max_rel_diff": float(np.max([d["max_rel_diff"] for d in diffs])), "apply_exact": all(m["apply_exact"] for m in methods),
            "max_abs_diff": float(np.max([d["max_abs_diff"] for d in diffs])), "n": args.n, "methods": methods}


if __name__ == "__main__":
    sys.exit(record("scorer_equality", main))
