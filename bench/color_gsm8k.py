"""CoLoR-Filter on the real instruction pool with GSM8K test as the target.

    python -m bench.color_gsm8k [--pool ...instruct_pool.jsonl.gz] [--target ...gsm8k_test.jsonl.gz]
                                [--budget 2000] [--set key=value ...]

Runs `dataselect run` with method.name: color (the default prior proxy, trained on the pool; the
conditional model fine-tuned on the target) as a subprocess from an empty cache, and prints the share
of the selection whose `source` is "gsm8k", the wall time of the process tree (target: 30 minutes on
the 2-core CPU), the stage timings and both models' training losses.
"""
from __future__ import annotations

import sys
from pathlib import Path

from bench.common import common_overrides, data_file, gsm8k_parser, pool_sources, record, run_method


def main() -> dict:
    args = gsm8k_parser(__doc__, "runs/bench_color_gsm8k").parse_args()
    pool, target = data_file(args.pool, "--pool"), data_file(args.target, "--target")
    result = run_method("color", common_overrides(pool, target, args.budget, args.overrides), Path(args.out), pool_sources(pool))
    metrics = result["manifest"]["method"]
    prior = metrics.get("prior_training_loss") or []
    print(f"  prior: {metrics.get('prior')}; training loss {prior[0][0]:.3f} -> {prior[0][-1]:.3f} over {len(prior[0])} steps" if prior else "")
    for task, curves in metrics["conditional_training_loss"].items():
        print(f"  conditional {task}: fine-tuning loss {curves[0][0]:.3f} -> {curves[0][-1]:.3f} over {len(curves[0])} steps")
    print(f"  prior mean loss on the pool {metrics['prior_mean_loss']:.4f}; per task {metrics['color_tasks']}")
    print(f"wall {result['wall_s']:.1f}s (target <= 1800 s); share gsm8k {result['share']:.4f} (target >= 0.9)")
    return {"share_gsm8k": round(result["share"], 4), "wall_s": round(result["wall_s"], 1), "cpu_s": round(result["cpu_s"], 1),
            "peak_rss_gb": round(result["peak_rss_gb"], 2), "prior_mean_loss": round(metrics["prior_mean_loss"], 4),
            "load_before": result["load_before"], "load_after": result["load_after"], "color_tasks": metrics["color_tasks"],
            "timings_s": result["manifest"]["timings_s"]}


if __name__ == "__main__":
    sys.exit(record("color_gsm8k", main))
