"""DSIR: this engine against the `data-selection` package (PyPI, 1.0.3) on the same data and cores.

For each raw pool (the Pile sample and the instruction pool; GSM8K test is the target) it runs
  - the package: HashedNgramDSIR(num_proc=W).fit_importance_estimator('all') + compute_importance_weights()
  - the engine, `reference` and `tokens` featurisers, runtime.num_workers=W, a fresh cache
on the same files (the texts the engine renders with `input.render: plain`, written once as
{id, text} jsonl, which both read), and prints
  - Spearman of the two sets of log-weights (reference mode must be >= 0.999)
  - the featurise-plus-weight throughput ratio, engine over package, in wall-clock time and in CPU
    time (this process and its workers). Engine: featurise pool and target + fit + weights, worker
    start-up included; package: fit_importance_estimator + compute_importance_weights (its joblib
    start-up included). Loading the tokenizer (tokens mode) is left out like the package's imports,
    and printed. With --repeats N every measurement runs N times and the fastest run counts (other
    jobs on a shared machine only ever slow a run down).
Then, on the instruction pool, the engine's top-K selection of --budget with GSM8K test as target:
the share of source == "gsm8k" and the KL reduction (and the package's top-K share for comparison).

    python -m bench.dsir_vs_package [--pool PATH] [--pile PATH] [--target PATH] [--workers 2]
"""
from __future__ import annotations

import argparse
import gzip
import json
import os
import resource
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

from bench.common import SHARED_DATA, data_file, record, work_folder, write_rendered

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

SHARED = SHARED_DATA


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pool", default=str(SHARED / "instruct_pool.jsonl.gz"), help="instruction pool (id, source, prompt, response)")
    parser.add_argument("--pile", default=str(SHARED / "pile_sample.jsonl.gz"), help="raw documents (id, text)")
    parser.add_argument("--target", default=str(SHARED / "targets" / "gsm8k_test.jsonl.gz"), help="target set (id, prompt, response)")
    parser.add_argument("--workers", type=int, default=2, help="package num_proc and engine runtime.num_workers")
    parser.add_argument("--num-buckets", type=int, default=10_000)
    parser.add_argument("--min-words", type=int, default=100, help="min length for the weight comparison runs (the package default)")
    parser.add_argument("--select-min-words", type=int, default=5, help="min length for the GSM8K selection (instruction data is short)")
    parser.add_argument("--budget", type=int, default=2000)
    parser.add_argument("--limit", type=int, default=None, help="read at most this many pool records (quick looks)")
    parser.add_argument("--repeats", type=int, default=1, help="run every timing this many times; the fastest counts")
    parser.add_argument("--skip-package", action="store_true", help="engine only (no ratios or Spearman)")
    parser.add_argument("--keep", default=None, help="keep work files in this folder (default: a temp folder, removed)")
    return parser.parse_args()


def source_tree(path: str, limit: int | None = None) -> dict:
    tree = {"path": path, "render": "plain", "on_error": "skip"}
    if limit:
        tree["limit"] = limit
    return tree


def engine_config(pool: dict, target: dict, work: Path, name: str, features: str, args, **dsir):
    from dataselect.config import build_config

    tree = {
        "input": pool,
        "target": target,
        "model": {"name": "sentence-transformers/all-MiniLM-L6-v2"},
        "method": {
            "name": "dsir",
            "budget": dsir.pop("budget", 1.0),
            "seed": 0,
            "dsir": {"features": features, "num_buckets": args.num_buckets, "sampling": "topk", "dedup": False, **dsir},
        },
        "output": {"dir": str(work / "out" / name), "show_top": 0},
        "runtime": {"device": "cpu", "num_workers": args.workers, "cache_dir": str(work / "cache" / name), "progress": False},
    }
    return build_config(tree)


FEATURIZE_PLUS_WEIGHT = ("featurize_pool", "featurize_target", "fit", "weights")


def cpu_seconds() -> float:
    """User + system CPU of this process and of its finished (joined) child processes."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def run_engine(config) -> tuple[dict[str, float], dict, float, float]:
    """(log weight by id, manifest, featurise-plus-weight wall seconds, CPU seconds of the whole run)."""
    from dataselect.pipeline import run

    cpu = cpu_seconds()
    result = run(config, quiet=True)
    cpu = cpu_seconds() - cpu
    table = pq.read_table(Path(config.output.dir) / "selection.parquet")
    weights = dict(zip(table.column("id").to_pylist(), table.column("score").to_numpy()))
    seconds = sum(result.manifest["timings_s"].get(stage, 0.0) for stage in FEATURIZE_PLUS_WEIGHT)
    return weights, result.manifest, seconds, cpu


def run_package(raw: Path, target: Path, work: Path, args, min_length: int):
    from data_selection import HashedNgramDSIR
    from joblib.externals.loky import get_reusable_executor

    dsir = HashedNgramDSIR(
        raw_datasets=[str(raw)], target_datasets=[str(target)], cache_dir=str(work),
        num_proc=args.workers, num_buckets=args.num_buckets, min_example_length=min_length,
    )
    cpu, start = cpu_seconds(), time.perf_counter()
    dsir.fit_importance_estimator(num_tokens_to_fit="all")
    dsir.compute_importance_weights()
    seconds = time.perf_counter() - start
    get_reusable_executor().shutdown(wait=True)  # joblib's workers exit, so their CPU time is counted
    return dsir, seconds, cpu_seconds() - cpu


def package_weights(dsir, num_docs: int) -> np.ndarray:
    """Log weights in document order: virtual shard j of n holds documents i with i % n == j."""
    out = np.empty(num_docs, np.float64)
    for params in dsir._get_virtually_sharded_datasets(dsir.raw_datasets):
        part = np.load(Path(dsir.log_importance_weights_dir) / f"{params['overall_idx']}.npy")
        out[params["shard_idx"] :: params["num_shards"]] = part
    return out


def compare(name: str, pool: dict, target: dict, work: Path, args, min_words: int) -> dict:
    from scipy.stats import spearmanr

    print(f"\n== raw pool: {name} ({pool['path']}), target {target['path']}, {args.workers} workers, "
          f"num_buckets {args.num_buckets}, min length {min_words}", flush=True)
    row: dict = {"pool": name}
    # both read the same files: the texts the engine renders from the source (the same records skipped)
    raw_file, target_file = work / f"{name}.raw.jsonl", work / f"{name}.target.jsonl"
    ids = write_rendered(pool["path"], raw_file, pool.get("limit"))
    write_rendered(target["path"], target_file)
    same_pool, same_target = source_tree(str(raw_file)), source_tree(str(target_file))
    engine_runs: dict[str, list] = {"reference": [], "tokens": []}
    package_runs = []
    for repeat in range(args.repeats):  # interleaved, so a busy spell on a shared machine hits all sides alike
        for features in engine_runs:
            config = engine_config(same_pool, same_target, work, f"{name}-{features}-{repeat}", features, args, min_words=0)
            engine_runs[features].append(run_engine(config))
        if not args.skip_package:
            package_runs.append(run_package(raw_file, target_file, work / f"package-{name}-{repeat}", args, min_words))
    engine = {}
    for features, runs in engine_runs.items():
        weights, manifest, seconds, cpu = min(runs, key=lambda r: r[2])
        engine[features] = weights
        docs = manifest["counts"]["scored"]
        print(f"engine {features:9s}: {docs:,} docs, featurise+weight {seconds:.2f}s ({docs / seconds:,.0f} docs/s), run CPU {cpu:.1f}s; "
              f"tokenizer load {max(r[1]['timings_s'].get('load_featurizer', 0) for r in runs):.2f}s; all runs {[round(r[2], 2) for r in runs]}", flush=True)
        row[f"engine_{features}_s"], row[f"engine_{features}_cpu"] = seconds, cpu
        row["docs"] = docs
    if args.skip_package:
        return row
    dsir, seconds, cpu = min(package_runs, key=lambda r: r[1])
    reference = package_weights(dsir, len(ids))
    print(f"package          : {len(ids):,} docs, featurise+weight {seconds:.2f}s ({len(ids) / seconds:,.0f} docs/s), CPU {cpu:.1f}s; "
          f"all runs {[round(r[1], 2) for r in package_runs]}", flush=True)
    row["package_s"], row["package_cpu"] = seconds, cpu
    for features in ("reference", "tokens"):
        mine = np.array([engine[features][i] for i in ids])
        rho = spearmanr(reference, mine).statistic
        ratio, cpu_ratio = seconds / row[f"engine_{features}_s"], cpu / row[f"engine_{features}_cpu"]
        row[f"spearman_{features}"], row[f"ratio_{features}"], row[f"cpu_ratio_{features}"] = rho, ratio, cpu_ratio
        print(f"  {features:9s}: Spearman {rho:.6f}  max |diff| {np.max(np.abs(reference - mine)):.3g}  "
              f"throughput engine/package {ratio:.1f}x wall, {cpu_ratio:.1f}x CPU", flush=True)
    row["_package"] = (dsir, raw_file)
    return row


def gsm8k_selection(pool: dict, target: dict, work: Path, args, package=None) -> list[dict]:
    sources = {}
    with gzip.open(pool["path"], "rt", encoding="utf-8") if pool["path"].endswith(".gz") else open(pool["path"], encoding="utf-8") as handle:
        for line in handle:
            record = json.loads(line)
            sources[str(record.get("id"))] = record.get("source")
    rows = []
    print(f"\n== GSM8K selection: top-K {args.budget} of the instruction pool, min length {args.select_min_words}", flush=True)
    for features in ("reference", "tokens"):
        config = engine_config(pool, target, work, f"select-{features}", features, args, min_words=args.select_min_words, budget=args.budget, dedup=True)
        weights, manifest, _, _ = run_engine(config)
        share = np.mean([sources.get(i) == "gsm8k" for i in weights])
        m = manifest["method"]
        rows.append({"features": features, "share": share, **{k: m[k] for k in ("kl_target_selected", "kl_target_random", "kl_reduction", "kept")}})
        print(f"engine {features:9s}: gsm8k share {share:.4f} of {len(weights):,}; KL(target||selected) {m['kl_target_selected']:.4f}, "
              f"KL(target||random) {m['kl_target_random']:.4f}, KL reduction {m['kl_reduction']:.4f} (kept {m['kept']:,})", flush=True)
    if package is not None:
        dsir, raw_file = package
        dsir.min_example_length = args.select_min_words
        out = work / "package-select"
        np.random.seed(0)  # the package's resample draws from the global RNG (unused with top_k)
        try:
            dsir.resample(out_dir=str(out), num_to_sample=args.budget, cache_dir=str(work / "package-select-cache"), top_k=True)
        except ValueError as error:  # the package's argpartition needs budget < eligible (METHODS.md 2.8)
            print(f"package          : resample failed: {error}")
            return rows
        chosen = [json.loads(line) for f in sorted(out.glob("*.jsonl")) for line in open(f, encoding="utf-8")]
        share = np.mean([r.get("source") == "gsm8k" for r in chosen])
        print(f"package          : gsm8k share {share:.4f} of {len(chosen):,} (top_k=True, min_example_length {args.select_min_words})", flush=True)
        rows.append({"features": "package", "share": share})
    return rows


def main() -> int:
    args = parse_args()
    args.target = str(data_file(args.target, "--target"))
    args.pile = str(data_file(args.pile, "--pile"))
    args.pool = str(data_file(args.pool, "--pool"))
    with work_folder("dsir-bench-", args.keep) as work:
        print(f"cores: {len(os.sched_getaffinity(0))}; python {sys.version.split()[0]}; work dir {work}")
        target = source_tree(args.target)
        pile = compare("pile", source_tree(args.pile, args.limit), target, work, args, args.min_words)
        instruct = compare("instruct", source_tree(args.pool, args.limit), target, work, args, args.select_min_words)
        gsm8k_selection(source_tree(args.pool, args.limit), target, work, args, instruct.get("_package"))
        if not args.skip_package:
            print("\nsummary (throughput ratio = package seconds / engine seconds, featurise + weight; fastest of "
              f"{args.repeats} run(s) each):")
            for row in (pile, instruct):
                print(f"  {row['pool']:9s} {row['docs']:>7,} docs: Spearman reference {row['spearman_reference']:.6f}; "
                      f"ratio reference {row['ratio_reference']:.1f}x wall / {row['cpu_ratio_reference']:.1f}x CPU, "
                      f"tokens {row['ratio_tokens']:.1f}x wall / {row['cpu_ratio_tokens']:.1f}x CPU "
                      f"(package {row['package_s']:.1f}s, reference {row['engine_reference_s']:.1f}s, tokens {row['engine_tokens_s']:.1f}s)")
    return 0

if __name__ == "__main__":
    sys.exit(record("dsir_vs_package", main))
