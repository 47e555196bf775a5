"""The DCLM recipe of method `quality` on the real instruction pool: GSM8K test as the reference set
(positives), a seeded pool sample of as many as the negatives, a logistic regression on hashed n-grams
(the tokenizer's unigrams and bigrams), every pool sample rated, the top 2,000 kept.

    python -m bench.quality_dclm [--pool ...instruct_pool.jsonl.gz] [--target ...gsm8k_test.jsonl.gz]
                                 [--budget 2000] [--workers 2] [--set key=value ...]

Runs `dataselect run` as a subprocess from an empty cache (bench/betr_gsm8k.py's run_method), and prints
the share of the selection whose `source` is "gsm8k", the held-out AUROC of the rater, and the pool
stage's docs/s (featurising the pool on the workers, scoring included), with the load average around it.
"""
from __future__ import annotations

import sys
from pathlib import Path

from bench.common import common_overrides, data_file, gsm8k_parser, pool_sources, record, run_method


def main() -> dict:
    parser = gsm8k_parser(__doc__, "runs/bench_quality_dclm")
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    pool, target = data_file(args.pool, "--pool"), data_file(args.target, "--target")
    overrides = common_overrides(pool, target, args.budget, [
        "method.quality.rater=trained", "method.quality.features=ngrams", "method.quality.labels=reference",
        f"runtime.num_workers={args.workers}", *args.overrides])
    result = run_method("quality", overrides, Path(args.out), pool_sources(pool))
    manifest = result["manifest"]
    trained = manifest["method"]["trained"]
    stage = manifest["stages"]["pool"]
    print(f"  rater: {trained}")
    print(f"pool stage: {stage['docs']} docs in {stage['seconds']:.2f}s = {stage['docs'] / stage['seconds']:,.0f} docs/s "
          f"with {args.workers} workers (target >= 20,000); share gsm8k of the top {args.budget}: {result['share']:.4f} (target >= 0.95)")
    return {"workers": args.workers, "pool_docs": stage["docs"], "pool_seconds": round(stage["seconds"], 3),
            "pool_docs_per_s": round(stage["docs"] / stage["seconds"]), "share_gsm8k": round(result["share"], 4),
            "heldout_auroc": round(trained["heldout_auroc"], 4), "wall_s": round(result["wall_s"], 1),
            "peak_rss_gb": round(result["peak_rss_gb"], 2), "load_before": result["load_before"], "load_after": result["load_after"]}


if __name__ == "__main__":
    sys.exit(record("quality_dclm", main))
