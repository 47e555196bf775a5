"""`dataselect apply` killed with SIGKILL mid-stream and run again, on real data: the rerun resumes the
shards the killed one finished, and its output holds every passing id exactly once, the same ids and
scores as an apply that was never interrupted.

    python -m bench.apply_sigkill [--pool ../shared/data/instruct_pool.jsonl.gz]
                                  [--target ../shared/data/targets/gsm8k_test.jsonl.gz] [--n 3000] [--shard-size 200]

An RDS+ run on the first N pool samples writes the scorer; those samples, as plain JSON Lines, go through
`dataselect apply --keep 0.1` three times in subprocesses: once clean, once killed (SIGKILL to its process
group) after a few shards are in its cache, and once more on the killed run's output and cache.
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq

import dataselect
from bench.common import SHARED_DATA, data_file, record, work_folder
from dataselect.config import SourceConfig
from dataselect.io.plan import iter_raw_records


def apply_command(work: Path, pool: Path, name: str, shard_size: int) -> list[str]:
    return [sys.executable, "-m", "dataselect.cli", "apply", "--scorer", str(work / "rds"), "--input", str(pool), "--output", str(work / name),
            "--keep", "0.1", "-q", "--set", f"runtime.cache_dir={work / f'cache-{name}'}", "--set", f"runtime.shard_size={shard_size}",
            "--set", "runtime.num_workers=0"]


def finished_shards(cache: Path) -> int:
    return sum(1 for _ in cache.rglob("shard-*.meta.parquet")) if cache.exists() else 0


def passing(folder: Path) -> tuple[list[str], dict[str, float]]:
    """(ids of the written passing records in order, score by id from the scores side file)."""
    ids = [str(json.loads(line)["id"]) for line in (folder / "selected.jsonl").read_text().splitlines()]
    scores = {row["id"]: row["score"] for row in pq.read_table(folder / "scores.parquet").to_pylist()}
    return ids, scores


def main() -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pool", default=SHARED_DATA / "instruct_pool.jsonl.gz")
    parser.add_argument("--target", default=SHARED_DATA / "targets" / "gsm8k_test.jsonl.gz")
    parser.add_argument("--n", type=int, default=3000)
    parser.add_argument("--shard-size", type=int, default=200)
    parser.add_argument("--kill-after", type=int, default=4, help="finished shards in the killed run's cache before the kill")
    args = parser.parse_args()
    source, target = data_file(args.pool, "--pool"), data_file(args.target, "--target")
    print(f"load average {os.getloadavg()[0]:.2f} at the start")
    with work_folder("bench-apply-kill-") as work:
        pool = work / "pool.jsonl"
        with open(pool, "w", encoding="utf-8") as out:
            for raw in iter_raw_records(SourceConfig(path=str(source), limit=args.n)):
                out.write(json.dumps(raw.record, ensure_ascii=False) + "\n")
        dataselect.run(dataselect.load_config(None, {
            "input.path": str(pool), "target.path": str(target), "method.name": "rds", "method.budget": 0.1, "output.dir": str(work / "rds"),
            "runtime.cache_dir": str(work / "cache-rds"), "runtime.progress": False}), quiet=True)

        subprocess.run(apply_command(work, pool, "clean", args.shard_size), check=True)
        killed = subprocess.Popen(apply_command(work, pool, "killed", args.shard_size), start_new_session=True)
        while finished_shards(work / "cache-killed") < args.kill_after and killed.poll() is None:
            time.sleep(0.05)
        done_at_kill = finished_shards(work / "cache-killed")
        os.killpg(killed.pid, signal.SIGKILL)
        killed.wait()
        print(f"killed with SIGKILL after {done_at_kill} of {-(-args.n // args.shard_size)} shards (exit {killed.returncode}); "
              f"output folder then: {sorted(p.name for p in (work / 'killed').iterdir()) if (work / 'killed').exists() else 'none'}")
        subprocess.run(apply_command(work, pool, "killed", args.shard_size), check=True)
        manifest = json.loads((work / "killed" / "manifest.json").read_text())
        stage = next(iter(manifest["stages"].values()))
        clean_ids, clean_scores = passing(work / "clean")
        ids, scores = passing(work / "killed")
        print(f"rerun: {stage['resumed_shards']} of {stage['shards']} shards resumed from the killed run")
        print(f"passing records: clean {len(clean_ids):,}, killed and rerun {len(ids):,}; each id once: {len(ids) == len(set(ids))}; "
              f"same ids in the same order: {ids == clean_ids}; scores side file equal: {scores == clean_scores} ({len(scores):,} ids)")
    print(f"load average {os.getloadavg()[0]:.2f} at the end")
    return {"same_ids_in_order": ids == clean_ids, "scores_equal": scores == clean_scores, "each_id_once": len(ids) == len(set(ids)),
            "resumed_shards": stage["resumed_shards"], "shards": stage["shards"], "shards_at_kill": done_at_kill,
            "passing_clean": len(clean_ids), "passing_rerun": len(ids), "killed_exit": killed.returncode, "scored_ids": len(scores), "n": args.n}


if __name__ == "__main__":
    sys.exit(record("apply_sigkill", main))
