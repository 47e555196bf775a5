"""BETR against a full RDS+ run on the real instruction pool, GSM8K test as the target, side by side.

    python -m bench.betr_gsm8k [--pool ...instruct_pool.jsonl.gz] [--target ...gsm8k_test.jsonl.gz]
                               [--budget 2000] [--sample 0.1] [--methods betr rds] [--set key=value ...]

Runs `dataselect run` for each method as a subprocess from an empty cache (so BETR's figure includes
embedding its sample and the target, featurising and classifying the pool; RDS+'s embedding the whole
pool), with the same model settings, and prints for each the share of the selection whose `source`
is "gsm8k", the wall time of the whole process tree, and BETR's wall time as a fraction of RDS+'s.
Also BETR's held-out AUROC and Spearman from its manifest, and how much its selection overlaps RDS+'s.
"""
from __future__ import annotations

import sys
from pathlib import Path

from bench.common import common_overrides, data_file, gsm8k_parser, pool_sources, record, run_method


def main() -> None:
    parser = gsm8k_parser(__doc__, "runs/bench_betr_gsm8k")
    parser.add_argument("--sample", default="0.1", help="method.betr.sample (a fraction or a count)")
    parser.add_argument("--methods", nargs="+", default=["betr", "rds"], choices=["betr", "rds"])
    args = parser.parse_args()
    pool, target = data_file(args.pool, "--pool"), data_file(args.target, "--target")
    source_of = pool_sources(pool)
    common = common_overrides(pool, target, args.budget, args.overrides)
    results = {}
    for method in args.methods:
        extra = [f"method.betr.sample={args.sample}"] if method == "betr" else []
        results[method] = run_method(method, common + extra, Path(args.out) / method, source_of)
        if method == "betr":
            metrics = results[method]["manifest"]["method"]
            task = metrics["betr_tasks"]["target"]
            print(f"  sample: {metrics['sample']}; held-out AUROC {task['heldout_auroc']:.4f}, Spearman {task['heldout_spearman']:.4f}; "
                  f"positives {task['positives']} (RDS+ score >= {task['label_threshold']:.4f})")
    if len(results) == 2:
        betr, rds = results["betr"], results["rds"]
        overlap = len(set(betr["ids"]) & set(rds["ids"])) / len(rds["ids"])
        print(f"BETR wall / RDS+ wall: {betr['wall_s'] / rds['wall_s']:.3f} (target <= 0.25); "
              f"shares gsm8k: BETR {betr['share']:.4f}, RDS+ {rds['share']:.4f}; overlap of the selections {overlap:.3f}")


if __name__ == "__main__":
    sys.exit(record("betr_gsm8k", main))
