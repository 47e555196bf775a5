"""BETR against a full RDS+ run on the real instruction pool, GSM8K test as the target, side by side.

    python bench/betr_gsm8k.py [--pool ...instruct_pool.jsonl.gz] [--target ...gsm8k_test.jsonl.gz]
                               [--budget 2000] [--sample 0.1] [--methods betr rds] [--set key=value ...]

Runs `dataselect run` for each method as a subprocess from an empty cache (so BETR's figure includes
embedding its sample and the target, featurising and classifying the pool; RDS+'s embedding the whole
pool), with the same model settings, and prints for each the share of the selection whose `source`
is "gsm8k", the wall time of the whole process tree, and BETR's wall time as a fraction of RDS+'s.
Also BETR's held-out AUROC and Spearman from its manifest, and how much its selection overlaps RDS+'s.
"""
from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import pyarrow.parquet as pq  # noqa: E402
from bench_common import SHARED_DATA, data_file, pool_sources, work_folder  # noqa: E402
from proc_tree import run_measured  # noqa: E402


def gsm8k_parser(doc: str, out: str) -> argparse.ArgumentParser:
    """The arguments every GSM8K-target bench takes: pool, target, budget, output folder, config overrides."""
    parser = argparse.ArgumentParser(description=doc.split("\n")[0])
    parser.add_argument("--pool", type=Path, default=SHARED_DATA / "instruct_pool.jsonl.gz")
    parser.add_argument("--target", type=Path, default=SHARED_DATA / "targets" / "gsm8k_test.jsonl.gz")
    parser.add_argument("--budget", type=int, default=2000)
    parser.add_argument("--out", default=out)
    parser.add_argument("--set", dest="overrides", action="append", default=[], help="extra config overrides")
    return parser


def common_overrides(pool: Path, target: Path, budget: int, extra: list[str]) -> list[str]:
    return [f"input.path={pool}", "input.prompt_field=prompt", "input.response_field=response",
            f"target.path={target}", "target.prompt_field=prompt", "target.response_field=response",
            f"method.budget={budget}", "runtime.progress=false", "output.show_top=0", *extra]


def run_method(method: str, overrides: list[str], out: Path, source_of: dict[str, str], keep_cache: str | None = None) -> dict:
    """`dataselect run` for one method from an empty cache, measured as a process tree; prints and returns its figures.
    keep_cache: an empty folder to use as the cache and leave in place (for figures read from it afterwards)."""
    with work_folder(f"dataselect-bench-{method}-", keep_cache) as cache:  # an empty cache for each run
        items = [f"method.name={method}", *overrides, f"output.dir={out}", f"runtime.cache_dir={cache}"]
        command = [sys.executable, "-m", "dataselect.cli", "run", "-q", *[arg for item in items for arg in ("--set", item)]]
        measured = run_measured(command)
    if measured.returncode != 0:
        print(measured.output)
        raise SystemExit(f"{method} failed")
    manifest = json.loads((out / "manifest.json").read_text())
    ids = pq.read_table(out / "selection.parquet", columns=["id"]).column("id").to_pylist()
    picked = Counter(source_of[i] for i in ids)
    print(f"{method}: selected {len(ids)}, share gsm8k {picked['gsm8k'] / len(ids):.4f} ({picked['gsm8k']}/{len(ids)}); "
          f"wall {measured.wall_s:.1f}s, CPU {measured.cpu_s:.0f}s (process tree, peak RSS {measured.peak_rss_gb:.2f} GB); "
          f"1-min load average before {measured.load_before:.2f}, after {measured.load_after:.2f}")
    print(f"  other sources: {dict(picked.most_common(5))}")
    print(f"  timings: {manifest['timings_s']}")
    print(f"  stages (docs, seconds): {({name: (s['docs'], s['seconds']) for name, s in manifest['stages'].items()})}")
    return {"wall_s": measured.wall_s, "cpu_s": measured.cpu_s, "ids": ids, "share": picked["gsm8k"] / len(ids), "manifest": manifest}


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
    main()
