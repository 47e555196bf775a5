"""`dataselect eval` on the real pool: RDS+, DSIR and BETR selections against random, and a keep sweep.

    python -m bench.eval_gsm8k [--pool ...instruct_pool.jsonl.gz] [--target ...gsm8k_test.jsonl.gz] [--budget 2000]
                               [--methods rds dsir betr] [--seeds 3] [--steps 200] [--keep 0.01,0.03,0.1,0.3]
                               [--keep-steps 200,800] [--out runs/bench_eval_gsm8k] [--set key=value ...] [--eval-set key=value ...]

GSM8K test is split in two halves by a seeded hash of each id: half A is the target the methods select
for, half B the held-out eval target (no text in both). Each method's selection is made once with
`dataselect run` (kept in OUT/<method>; a rerun reuses it), then timed on its own:

  1. `dataselect eval OUT/rds OUT/dsir OUT/betr --eval-target half_b` with --seeds seeds at --steps steps:
     each selection against random subsets of the same size, bits per byte with 95% intervals;
  2. `dataselect eval OUT/rds --keep ... --steps KEEP_STEPS`: the top fractions of RDS+'s pool scores at
     two step counts, the best fraction at each, and the repetition-utility fit where the points allow.

Both print their table; the wall time of each (process tree, after the selections exist) is printed
beside the load average. --pool-limit and --eval-set shrink everything for a smoke run.
"""
from __future__ import annotations

import argparse
import gzip
import json
import sys
from pathlib import Path

from bench.common import SHARED_DATA, common_overrides, data_file, pool_sources, record, run_measured, run_method, write_unchanged
from dataselect.scoring.sampled import KEY_SPACE, sample_key

SPLIT_SALT = "eval-halves"


def split_halves(target: Path, folder: Path, seed: int) -> tuple[Path, Path]:
    """half_a.jsonl and half_b.jsonl: GSM8K test split by a seeded hash of each id (about half each)."""
    with gzip.open(target, "rt", encoding="utf-8") if target.suffix == ".gz" else open(target, encoding="utf-8") as handle:
        rows = [json.loads(line) for line in handle if line.strip()]
    halves: dict[str, list[str]] = {"a": [], "b": []}
    for row in rows:
        halves["a" if sample_key(seed, str(row["id"]), SPLIT_SALT) < KEY_SPACE // 2 else "b"].append(json.dumps(row))
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, lines in halves.items():
        path = folder / f"half_{name}.jsonl"
        write_unchanged(path, "\n".join(lines) + "\n")  # unchanged text keeps the cached target stores valid
        paths.append(path)
    print(f"GSM8K test split by a seeded hash (seed {seed}): half A {len(halves['a'])} (selection target), half B {len(halves['b'])} (eval target)")
    return paths[0], paths[1]


def timed_eval(arguments: list[str], label: str) -> None:
    """One `dataselect eval` as a measured process tree; prints its table and wall time."""
    measured = run_measured([sys.executable, "-m", "dataselect.cli", "eval", *arguments])
    shown = [line for line in measured.output.split("\n") if "\r" not in line and "\x1b" not in line]  # not the progress bars
    print(measured.output if measured.returncode else "\n".join(shown))
    if measured.returncode:
        raise SystemExit(f"{label} failed")
    print(f"{label}: wall {measured.wall_s:.1f}s, CPU {measured.cpu_s:.0f}s (process tree, peak RSS {measured.peak_rss_gb:.2f} GB); "
          f"1-min load average before {measured.load_before:.2f}, after {measured.load_after:.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--pool", type=Path, default=SHARED_DATA / "instruct_pool.jsonl.gz")
    parser.add_argument("--target", type=Path, default=SHARED_DATA / "targets" / "gsm8k_test.jsonl.gz")
    parser.add_argument("--budget", type=int, default=2000)
    parser.add_argument("--methods", nargs="+", default=["rds", "dsir", "betr"], choices=["rds", "dsir", "betr"])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--steps", default="200", help="fine-tuning steps of the comparison")
    parser.add_argument("--keep", default="0.01,0.03,0.1,0.3", help="keep fractions of the RDS+ scores (empty: no sweep)")
    parser.add_argument("--keep-steps", default="200,800", help="the keep sweep's step counts")
    parser.add_argument("--split-seed", type=int, default=0)
    parser.add_argument("--pool-limit", type=int, help="read only the pool's first N records (a smoke run)")
    parser.add_argument("--out", default="runs/bench_eval_gsm8k")
    parser.add_argument("--set", dest="overrides", action="append", default=[], help="extra `dataselect run` config overrides")
    parser.add_argument("--eval-set", action="append", default=[], help="extra `dataselect eval` settings, e.g. proxy.steps=20")
    args = parser.parse_args()
    pool, target = data_file(args.pool, "--pool"), data_file(args.target, "--target")
    out = Path(args.out)
    half_a, half_b = split_halves(target, out, args.split_seed)
    extra = args.overrides + ([f"input.limit={args.pool_limit}"] if args.pool_limit else [])
    common = common_overrides(pool, half_a, args.budget, extra)
    source_of = pool_sources(pool)
    for method in args.methods:
        if (out / method / "manifest.json").exists():
            print(f"{method}: selection found in {out / method} (delete it to select again)")
            continue
        run_method(method, common, out / method, source_of)
    settings = [f"--set={item}" for item in args.eval_set]
    runs = [str(out / method) for method in args.methods]
    timed_eval([*runs, "--eval-target", str(half_b), "--seeds", str(args.seeds), "--steps", args.steps, "--output", str(out / "eval"),
                "--cache-dir", str(out / "cache"), *settings], f"eval of {', '.join(args.methods)} against random, {args.seeds} seeds")
    if args.keep and "rds" in args.methods:
        timed_eval([str(out / "rds"), "--eval-target", str(half_b), "--seeds", str(args.seeds), "--steps", args.keep_steps, "--keep", args.keep,
                    "--output", str(out / "keep"), "--cache-dir", str(out / "cache"), *settings], "keep sweep of the RDS+ scores")
    print(f"eval.json and report.html: {out / 'eval'} and {out / 'keep'}")


if __name__ == "__main__":
    sys.exit(record("eval_gsm8k", main))
