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


def timed_eval(arguments: list[str], label: str) -> float:
    """One `dataselect eval` as a measured process tree; prints its table and wall time, returns the wall seconds."""
    measured = run_measured([sys.executable, "-m", "dataselect.cli", "eval", *arguments])
    shown = [line for line in measured.output.split("\n") if line.strip() and "\r" not in line and "\x1b" not in line]  # not the progress bars
    print(measured.output if measured.returncode else "\n".join(shown))
    if measured.returncode:
        raise SystemExit(f"{label} failed")
    print(f"{label}: wall {measured.wall_s:.1f}s, CPU {measured.cpu_s:.0f}s (process tree, peak RSS {measured.peak_rss_gb:.2f} GB); "
          f"1-min load average before {measured.load_before:.2f}, after {measured.load_after:.2f}")
    return measured.wall_s


def _interval(values: list[float] | None) -> str | None:
    return None if values is None else f"[{values[0]:.4f}, {values[1]:.4f}]"


def eval_figures(out: Path) -> dict:
    """The figures of OUT/eval/eval.json and OUT/keep/eval.json: one table row per compared arm and per keep-sweep
    point (bits per byte with its interval; the gap to random for the arms), and the best keep fraction per step count."""
    table: list[dict] = []
    figures: dict = {}
    compared = out / "eval" / "eval.json"
    if compared.exists():
        for arm in json.loads(compared.read_text())["arms"]:
            table.append({"part": "comparison", "arm": arm["name"], "steps": arm.get("steps"), "size": arm["size"], "bpb_mean": round(arm["mean"], 4),
                          "ci95": _interval(arm["ci95"]), "gap_to_random": None if arm.get("gap_to_random") is None else round(arm["gap_to_random"], 4),
                          "gap_ci95": _interval(arm.get("gap_ci95")), "snr": None if arm.get("snr") is None else round(arm["snr"], 3), "best": None})
            if arm.get("gap_ci95") is not None and arm["name"] != "random":
                figures[f"{arm['name']}_better_than_random"] = bool(arm["gap_ci95"][0] > 0)
    swept = out / "keep" / "eval.json"
    if swept.exists():
        for sweep in json.loads(swept.read_text())["keep_sweep"]:
            best = {(b["steps"], b["keep"]) for b in sweep["best"]}
            for point in sweep["points"]:
                table.append({"part": "keep sweep", "arm": f"top {point['keep']}", "steps": point["steps"], "size": point["size"],
                              "bpb_mean": round(point["mean"], 4), "ci95": _interval(point["ci95"]), "gap_to_random": None, "gap_ci95": None,
                              "snr": None, "best": "best at these steps" if (point["steps"], point["keep"]) in best else None})
            figures |= {f"best_keep_at_{b['steps']}_steps": b["keep"] for b in sweep["best"]}
            if sweep.get("fit"):
                figures["fit_best_keep"] = "; ".join(f"{b['keep']} at {b['steps']} steps" for b in sweep["fit"]["best_keep"])
    return figures | {"table": table}


def main() -> dict:
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
    figures: dict = {}
    for method in args.methods:
        if (out / method / "manifest.json").exists():
            print(f"{method}: selection found in {out / method} (delete it to select again)")
            continue
        selected = run_method(method, common, out / method, source_of)
        figures |= {f"{method}_share_gsm8k": round(selected["share"], 4), f"{method}_select_wall_s": round(selected["wall_s"], 1),
                    f"{method}_select_peak_rss_gb": round(selected["peak_rss_gb"], 2)}
    settings = [f"--set={item}" for item in args.eval_set]
    runs = [str(out / method) for method in args.methods]
    figures["comparison_wall_s"] = round(timed_eval(
        [*runs, "--eval-target", str(half_b), "--seeds", str(args.seeds), "--steps", args.steps, "--output", str(out / "eval"),
         "--cache-dir", str(out / "cache"), *settings], f"eval of {', '.join(args.methods)} against random, {args.seeds} seeds"), 1)
    if args.keep and "rds" in args.methods:
        figures["keep_sweep_wall_s"] = round(timed_eval(
            [str(out / "rds"), "--eval-target", str(half_b), "--seeds", str(args.seeds), "--steps", args.keep_steps, "--keep", args.keep,
             "--output", str(out / "keep"), "--cache-dir", str(out / "cache"), *settings], "keep sweep of the RDS+ scores"), 1)
    print(f"eval.json and report.html: {out / 'eval'} and {out / 'keep'}")
    return figures | eval_figures(out)


if __name__ == "__main__":
    sys.exit(record("eval_gsm8k", main))
