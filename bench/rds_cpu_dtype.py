"""RDS+ on the real pool from an empty cache on the CPU: the default config (model.dtype auto: bf16 where
the CPU has native bf16) side by side with model.dtype=float32, in one process after the other.

    python -m bench.rds_cpu_dtype [--pool ...instruct_pool.jsonl.gz] [--target ...gsm8k_test.jsonl.gz]
                                  [--budget 2000] [--set key=value ...]

Each run is `dataselect run` as a subprocess measured as a process tree (bench/common.py): wall time, CPU
seconds, peak RSS of the tree, the 1-minute load average before and after. Prints and records both runs,
the fp32 / auto wall-time ratio (issue 28's target: at least 2 on the 2-core CPU, quiet machine), the dtype
each run's manifest records, and how many of the top 100 selected ids the two runs share. Run it on a
quiet machine: a timing taken beside other work is marked by its load average, not corrected.
"""
from __future__ import annotations

import sys
from pathlib import Path

from bench.common import common_overrides, data_file, gsm8k_parser, pool_sources, record, run_method


def main() -> dict:
    parser = gsm8k_parser(__doc__, "runs/bench_rds_cpu_dtype")
    args = parser.parse_args()
    pool, target = data_file(args.pool, "--pool"), data_file(args.target, "--target")
    source_of = pool_sources(pool)
    common = common_overrides(pool, target, args.budget, ["runtime.device=cpu", *args.overrides])
    runs = {}
    for label, extra in (("auto", []), ("float32", ["model.dtype=float32"])):
        runs[label] = run_method("rds", common + extra, Path(args.out) / label, source_of)
        stage = runs[label]["manifest"]["stages"]["pool"]
        print(f"  {label}: dtype {stage.get('dtype')} ({stage.get('dtype_why')}); peak RSS {runs[label]['peak_rss_gb']:.2f} GB\n")
    auto, fp32 = runs["auto"], runs["float32"]
    top = min(100, len(auto["ids"]), len(fp32["ids"]))
    shared = len(set(auto["ids"][:top]) & set(fp32["ids"][:top]))
    ratio = fp32["wall_s"] / auto["wall_s"]
    print(f"float32 / auto wall time {ratio:.2f}x (target >= 2); top-{top} shared {shared}; "
          f"peak RSS auto {auto['peak_rss_gb']:.2f} GB (target < 3), float32 {fp32['peak_rss_gb']:.2f} GB")
    figures = {"speedup_vs_float32": round(ratio, 3), f"top{top}_shared": shared}
    for label, run in runs.items():
        figures |= {f"{label}_{key}": round(run[key], 3) for key in ("wall_s", "cpu_s", "peak_rss_gb", "share", "load_before", "load_after")}
        figures[f"{label}_dtype"] = run["manifest"]["stages"]["pool"].get("dtype")
    return figures


if __name__ == "__main__":
    sys.exit(record("rds_cpu_dtype", main))
