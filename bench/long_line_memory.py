"""Peak memory of a run whose input holds one enormous line, under `on_error: skip`: the line is one bad
record, skipped unread, and the process stays far below the line's size.

    python -m bench.long_line_memory [--sizes-mb 150,1024]

For each size: a JSON Lines file of 1,000 ordinary records with one record of that many megabytes in the
middle (a single line), then `dataselect run` (method random, no model, so the figure is the input side's)
in a subprocess; its peak resident set size comes from the kernel (getrusage of the child).
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

from bench.common import record, work_folder

CHUNK = 1 << 20
# a fresh parent per size, so that the peak it reports is that run's alone (RUSAGE_CHILDREN keeps a maximum)
MEASURE = ("import resource, subprocess, sys; code = subprocess.run(sys.argv[1:]).returncode; "
           "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss); sys.exit(code)")


def write_pool(path, megabytes: int) -> None:
    with open(path, "wb") as out:
        for i in range(500):
            out.write(json.dumps({"id": f"a{i}", "text": f"an ordinary record number {i}"}).encode() + b"\n")
        out.write(b'{"id": "huge", "text": "')
        for _ in range(megabytes):
            out.write(b"x" * CHUNK)
        out.write(b'"}\n')
        for i in range(500):
            out.write(json.dumps({"id": f"b{i}", "text": f"another ordinary record {i}"}).encode() + b"\n")


def main() -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes-mb", default="150,1024")
    args = parser.parse_args()
    print(f"load average {os.getloadavg()[0]:.2f} at the start")
    runs: list[dict] = []
    for megabytes in [int(s) for s in args.sizes_mb.split(",")]:
        with work_folder("bench-long-line-") as work:
            pool = work / "pool.jsonl"
            write_pool(pool, megabytes)
            command = [sys.executable, "-m", "dataselect.cli", "run", "--set", f"input.path={pool}", "--set", "method.name=random",
                       "--set", "method.budget=10", "--set", f"output.dir={work / 'out'}", "--set", f"runtime.cache_dir={work / 'cache'}",
                       "--set", "runtime.progress=false", "--set", "runtime.num_workers=0", "--set", "output.show_top=0"]
            start = time.perf_counter()
            done = subprocess.run([sys.executable, "-c", MEASURE, *command], capture_output=True, text=True)
            seconds = time.perf_counter() - start
            peak_mb = int(done.stdout.strip().splitlines()[-1]) / 1024  # the run's own peak, in kilobytes on Linux
            manifest = json.loads((work / "out" / "manifest.json").read_text()) if done.returncode == 0 else {}
            bad = (manifest.get("input") or {}).get("bad_inputs") or []
            reasons = [(b.get("line"), b.get("reason")) for b in bad]
            print(f"line of {megabytes:,} MB: exit {done.returncode}, peak RSS {peak_mb:,.0f} MB, {seconds:.1f} s; "
                  f"read {manifest.get('counts', {}).get('read')}, bad: {reasons}")
            if done.returncode:
                print(done.stderr[-2000:])
            runs.append({"line_mb": megabytes, "peak_rss_mb": round(peak_mb), "exit": done.returncode, "seconds": round(seconds, 1),
                         "read": manifest.get("counts", {}).get("read"), "bad": reasons})
    print(f"load average {os.getloadavg()[0]:.2f} at the end")
    largest = max(runs, key=lambda run: run["line_mb"])
    return {"line_mb": largest["line_mb"], "peak_rss_mb": largest["peak_rss_mb"], "exit": largest["exit"], "seconds": largest["seconds"], "runs": runs}


if __name__ == "__main__":
    sys.exit(record("long_line_memory", main))
