"""Run a command and measure it as a whole process tree: wall time, the peak of the tree's summed
resident memory (the command and every worker process it starts), sampled from /proc (Linux), its CPU
seconds, and the machine's 1-minute load average before and after."""
from __future__ import annotations

import os
import resource
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path


def _children(pid: int) -> list[int]:
    out = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            out += [int(c) for c in (task / "children").read_text().split()]
        except OSError:
            pass
    return out


def tree_rss(pid: int) -> int:
    """Resident bytes of `pid` and all its descendants now."""
    total, stack, page = 0, [pid], os.sysconf("SC_PAGE_SIZE")
    while stack:
        current = stack.pop()
        try:
            total += int(Path(f"/proc/{current}/statm").read_text().split()[1]) * page
        except (OSError, IndexError, ValueError):
            continue
        stack += _children(current)
    return total


@dataclass
class Measured:
    returncode: int
    wall_s: float
    peak_rss_bytes: int
    output: str
    cpu_s: float  # user + system seconds of the tree's waited-for processes
    load_before: float  # 1-minute load average
    load_after: float

    @property
    def peak_rss_gb(self) -> float:
        return self.peak_rss_bytes / 1e9


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run_measured(command: list[str], interval: float = 0.05, env: dict | None = None) -> Measured:
    load_before, cpu_before = os.getloadavg()[0], _children_cpu()
    start = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    peak = [0]
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            peak[0] = max(peak[0], tree_rss(process.pid))
            time.sleep(interval)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    output = process.communicate()[0]
    done.set()
    sampler.join()
    wall = time.perf_counter() - start
    return Measured(process.returncode, wall, peak[0], output, _children_cpu() - cpu_before, load_before, os.getloadavg()[0])
