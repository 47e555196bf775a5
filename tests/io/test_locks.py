"""Two runs at once (io/locks.py): on one output folder the second stops with one line naming the holder;
on one cache with different output folders the second waits for the store and finds it complete, so the
store is scored once and both selections are the single run's."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from support import executor_pool

from dataselect.errors import ConfigError
from dataselect.io.locks import output_lock


def _run(tmp_path: Path, model: Path, pool: Path, target: Path, out: str) -> subprocess.Popen:
    overrides = {"input.path": pool, "target.path": target, "model.name": model, "method.budget": 10, "output.dir": tmp_path / out,
                 "runtime.cache_dir": tmp_path / "cache", "runtime.shard_size": 7, "runtime.progress": "false", "runtime.num_workers": 0}
    command = [sys.executable, "-m", "dataselect.cli", "run", "-q", *[f"--set={k}={v}" for k, v in overrides.items()]]
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env={**os.environ, "HF_HUB_OFFLINE": "1"})


def test_a_second_run_on_a_held_output_folder_stops_with_one_line(tmp_path):
    folder = tmp_path / "out"
    folder.mkdir()
    cache = tmp_path / "cache"
    with output_lock(folder, cache):
        with pytest.raises(ConfigError, match=r"^config error: output.dir: .*out is in use by another run \(pid \d+\); wait for it"):
            with output_lock(folder, cache):
                pass
    with output_lock(folder, cache):  # released: free again
        pass
    assert list(folder.iterdir()) == []  # the lock lives in the cache, not among the outputs


def test_two_runs_started_together_score_the_store_once(tmp_path, tiny_bert_dir):
    pool, target = executor_pool(tmp_path)
    runs = [_run(tmp_path, tiny_bert_dir, pool, target, out) for out in ("a", "a", "b")]
    results = [(run.wait(timeout=600), run.stderr.read()) for run in runs]
    codes = [code for code, _ in results]
    assert codes.count(0) >= 2 and codes[2] == 0, results
    for code, stderr in results:
        if code:
            assert stderr.strip().splitlines()[-1].startswith("error: config error: output.dir:") and "in use by another run" in stderr
    misses = [json.loads((tmp_path / out / "manifest.json").read_text())["stages"]["pool"]["cache"] for out in ("a", "b")]
    assert sorted(misses) == ["hit", "miss"]  # one scored the store, the other waited for it and read it
    assert (tmp_path / "a" / "selection.parquet").read_bytes() == (tmp_path / "b" / "selection.parquet").read_bytes()
