"""DSIR, whole processes: `dataselect run` (reference features) against a script of the `data-selection`
package doing the same job, each a fresh Python process timed from start to exit.

Both read the same {id, text} JSON Lines file (the first --docs records of the instruction pool, rendered
`prompt + "\n\n" + response` as `input.render: plain` does) and GSM8K test as the target, use 2 workers,
10,000 buckets, a 100-word minimum length, and pick the top --budget by importance weight. The package's
script is HashedNgramDSIR(num_proc=2) + fit_importance_estimator('all') + compute_importance_weights() +
resample(top_k=True); the engine's is `dataselect run` from an empty cache, report included. Everything a
user waits for counts: interpreter start, imports, worker start-up, writing the outputs. Runs are
interleaved and the fastest of --repeats counts; wall, CPU (process tree) and the load average are printed.

    python -m bench.dsir_whole_process [--docs 21000] [--repeats 3]
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from bench.common import SHARED_DATA, data_file, record, run_measured, work_folder, write_rendered

os.environ.setdefault("HF_HUB_OFFLINE", "1")

PACKAGE_SCRIPT = """
import sys
import numpy as np
from data_selection import HashedNgramDSIR
raw, target, work, budget = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
dsir = HashedNgramDSIR(raw_datasets=[raw], target_datasets=[target], cache_dir=work + "/cache", num_proc=2,
                       num_buckets=10_000, min_example_length=100)
dsir.fit_importance_estimator(num_tokens_to_fit="all")
dsir.compute_importance_weights()
np.random.seed(0)
dsir.resample(out_dir=work + "/out", num_to_sample=budget, cache_dir=work + "/resample", top_k=True)
"""


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--pool", default=str(SHARED_DATA / "instruct_pool.jsonl.gz"))
    parser.add_argument("--target", default=str(SHARED_DATA / "targets" / "gsm8k_test.jsonl.gz"))
    parser.add_argument("--docs", type=int, default=21_000, help="the first this many pool records")
    parser.add_argument("--budget", type=int, default=2000)
    parser.add_argument("--repeats", type=int, default=3, help="interleaved runs of each side; the fastest counts")
    parser.add_argument("--keep", default=None, help="keep the work files in this folder")
    return parser.parse_args()


def engine_command(raw: Path, target: Path, work: Path, budget: int) -> list[str]:
    settings = {"input.path": raw, "target.path": target, "method.name": "dsir", "method.budget": budget, "method.dsir.features": "reference",
                "method.dsir.num_buckets": 10_000, "method.dsir.min_words": 100, "method.dsir.sampling": "topk", "runtime.num_workers": 2,
                "runtime.device": "cpu", "runtime.progress": "false", "runtime.cache_dir": work / "cache", "output.dir": work / "out"}
    return [sys.executable, "-m", "dataselect.cli", "run", "-q", *[arg for key, value in settings.items() for arg in ("--set", f"{key}={value}")]]


def main() -> dict | int:
    args = parse_args()
    with work_folder("dsir-whole-", args.keep) as work:
        raw, target = work / "pool.jsonl", work / "target.jsonl"
        write_rendered(data_file(args.pool, "--pool"), raw, limit=args.docs)
        write_rendered(data_file(args.target, "--target"), target)
        script = work / "package_dsir.py"
        script.write_text(PACKAGE_SCRIPT)
        runs: dict[str, list] = {"engine": [], "package": []}
        for repeat in range(args.repeats):
            for side in runs:
                folder = work / f"{side}-{repeat}"
                folder.mkdir()
                package = [sys.executable, str(script), str(raw), str(target), str(folder), str(args.budget)]
                command = engine_command(raw, target, folder, args.budget) if side == "engine" else package
                measured = run_measured(command)
                if measured.returncode != 0:
                    print(measured.output)
                    return 1
                runs[side].append(measured)
                print(f"{side:8s} run {repeat + 1}: wall {measured.wall_s:.2f}s, CPU {measured.cpu_s:.1f}s, peak RSS {measured.peak_rss_gb:.2f} GB; "
                      f"load average before {measured.load_before:.2f}, after {measured.load_after:.2f}", flush=True)
    best = {side: min(measured, key=lambda m: m.wall_s) for side, measured in runs.items()}
    ratio = best["package"].wall_s / best["engine"].wall_s
    print(f"\n{args.docs:,} documents, whole processes, fastest of {args.repeats}: package {best['package'].wall_s:.2f}s, "
          f"engine {best['engine'].wall_s:.2f}s: the engine is {ratio:.2f}x faster (CPU {best['package'].cpu_s:.1f}s against {best['engine'].cpu_s:.1f}s)")
    return {"docs": args.docs, "package_s": best["package"].wall_s, "engine_s": best["engine"].wall_s, "ratio": ratio,
            "package_cpu_s": best["package"].cpu_s, "engine_cpu_s": best["engine"].cpu_s,
            "runs_s": {side: [round(m.wall_s, 2) for m in measured] for side, measured in runs.items()},
            "load_before": [round(m.load_before, 2) for side in runs for m in runs[side]]}


if __name__ == "__main__":
    sys.exit(record("dsir_whole_process", main))
