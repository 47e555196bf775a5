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


def main() -> dict:
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
    row: dict = {f"{method}_share_gsm8k": round(result["share"], 4) for method, result in results.items()}
    row |= {f"{method}_wall_s": round(result["wall_s"], 1) for method, result in results.items()}
    if len(results) == 2:
        betr, rds = results["betr"], results["rds"]
        overlap = len(set(betr["ids"]) & set(rds["ids"])) / len(rds["ids"])
        print(f"BETR wall / RDS+ wall: {betr['wall_s'] / rds['wall_s']:.3f} (target <= 0.25); "
              f"shares gsm8k: BETR {betr['share']:.4f}, RDS+ {rds['share']:.4f}; overlap of the selections {overlap:.3f}")
        row = {"betr_rds_wall_ratio": round(betr["wall_s"] / rds["wall_s"], 4), **row, "overlap": round(overlap, 4)}
    if "betr" in results:
        metrics = results["betr"]["manifest"]["method"]
        task = metrics["betr_tasks"]["target"]
        row |= {"betr_heldout_auroc": round(task["heldout_auroc"], 4), "betr_heldout_spearman": round(task["heldout_spearman"], 4),
                "betr_positives": task["positives"], "betr_sample": metrics["sample"]}
    return row | {f"{method}_peak_rss_gb": round(result["peak_rss_gb"], 2) for method, result in results.items()}


if __name__ == "__main__":
    sys.exit(record("betr_gsm8k", main))
