"""Local worker processes: results in input order, and no worker outlives a parent killed outright."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap

from support import wait_for_exit

from dataselect.scoring.workers import ChunkedWorkerPool


def _lengths(texts):
    return [len(t) for t in texts]


def _concat(parts):
    return [x for part in parts for x in part]


def test_chunks_come_back_in_input_order():
    texts = [str(i) * (i % 7 + 1) for i in range(50)]
    with ChunkedWorkerPool(_lengths, _concat, num_workers=2, chunk_texts=4) as pool:
        assert pool.submit(texts).result() == [len(t) for t in texts]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open(f"/proc/{pid}/stat") as handle:  # a zombie is gone in all but name
        return handle.read().split(") ")[-1][0] != "Z"


def test_workers_exit_when_the_parent_is_killed(tmp_path):
    script = tmp_path / "parent.py"
    script.write_text(textwrap.dedent('''
        import os, sys, time
        from dataselect.scoring.workers import ChunkedWorkerPool

        def work(texts):
            return [os.getpid()]

        if __name__ == "__main__":
            pool = ChunkedWorkerPool(work, lambda parts: [p for part in parts for p in part], num_workers=2, chunk_texts=1)
            pids = set(pool.submit(["a", "b", "c", "d"]).result())
            print(" ".join(map(str, sorted(pids))), flush=True)
            time.sleep(60)
    '''))
    parent = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True, cwd=tmp_path)
    workers = [int(p) for p in parent.stdout.readline().split()]
    assert workers and all(_alive(p) for p in workers)
    parent.send_signal(signal.SIGKILL)
    parent.wait()
    wait_for_exit(workers)  # woken by their exit: no deadline that a loaded machine could miss
    assert not any(_alive(p) for p in workers)
