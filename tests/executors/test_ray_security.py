"""A Ray instance the engine starts authenticates every connection, runs its workers at the driver's priority
(Ray's default niceness 15 starves them on a busy machine), and the process environment is as it was once the
executor closes (issue 27). Run in a fresh interpreter: no other Ray instance in the way."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest

pytest.importorskip("ray")

PROBE = textwrap.dedent("""
    import json, os
    from pathlib import Path
    from dataselect.executors.ray import AUTH_VARIABLES, RayExecutor

    def descendants(root):
        parents = {}
        for entry in (e for e in Path("/proc").iterdir() if e.name.isdigit()):
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except (OSError, IndexError):
                continue
            parents[int(entry.name)] = int(fields[1])
        found, frontier = set(), {root}
        while frontier:
            frontier = {pid for pid, parent in parents.items() if parent in frontier} - found
            found |= frontier
        return found

    before = {name: os.environ.get(name) for name in AUTH_VARIABLES}
    executor = RayExecutor(num_workers=1)
    modes = {}
    for pid in descendants(os.getpid()):
        try:
            name = Path(f"/proc/{pid}/comm").read_text().strip()
            environment = dict(item.split("=", 1) for item in Path(f"/proc/{pid}/environ").read_text().split("\\0") if "=" in item)
        except OSError:
            continue
        if name in ("gcs_server", "raylet"):
            modes[name] = [environment.get("RAY_AUTH_MODE"), bool(environment.get("RAY_AUTH_TOKEN"))]
    worker_niceness = executor.ray.get(executor.ray.remote(lambda: os.nice(0)).remote())
    executor.close()
    after = {name: os.environ.get(name) for name in AUTH_VARIABLES}
    print(json.dumps({"before": before, "after": after, "modes": modes, "niceness": [os.nice(0), worker_niceness]}))
""")

def test_a_local_instance_requires_a_token_runs_its_workers_at_the_drivers_priority_and_restores_the_environment(tmp_path):
    environment = {k: v for k, v in os.environ.items() if not k.startswith("RAY_AUTH")}
    environment["HOME"] = str(tmp_path)  # a token written under the home folder would show here
    done = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, env=environment, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    found = json.loads(done.stdout.strip().splitlines()[-1])
    assert found["modes"] and all(mode == ["token", True] for mode in found["modes"].values()), found
    assert found["before"] == found["after"] == {"RAY_AUTH_MODE": None, "RAY_AUTH_TOKEN": None, "RAY_AUTH_TOKEN_PATH": None}
    assert not (tmp_path / ".ray" / "auth_token").exists()
    driver, worker = found["niceness"]
    assert worker == driver, f"the instance's workers run at niceness {worker}, the driver at {driver}"
