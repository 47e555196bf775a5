"""Executors: the same config gives a byte-identical selection in-process and with 2 worker processes
reading the shards in reverse order; a cache never breaks a run's contract; a run killed
with SIGKILL mid-score resumes without rescoring finished shards."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from support import EXECUTOR_METHODS as METHODS
from support import HeavyStage, script_env, unpickled_by, wait_for, write_jsonl
from support import executor_config as _config
from support import executor_pool as _pool
from support import selection_bytes as _selection_bytes

import dataselect
from dataselect.config import RuntimeConfig, SourceConfig
from dataselect.errors import InputError
from dataselect.executors.local import InProcessExecutor, ProcessExecutor
from dataselect.io.render import TextRenderer
from dataselect.scoring.loop import run_stage


class KeptOpen:
    """An executor that outlives the runs given it (a run closes its executor at the end)."""

    def __init__(self, executor: ProcessExecutor) -> None:
        self.executor = executor

    def map(self, task, specs):
        return self.executor.map(task, specs)

    def describe(self) -> dict:
        return self.executor.describe()

    def close(self) -> None:
        pass


@pytest.fixture(scope="module")
def reversed_workers():
    """2 worker processes taking the shards in reverse order, started once for every method's run (spawning
    them and loading torch in each costs several seconds a run; what a worker computes does not depend on it)."""
    executor = ProcessExecutor(2, order=lambda specs: specs[::-1])
    yield KeptOpen(executor)
    executor.close()


@pytest.mark.parametrize("method", sorted(METHODS))
def test_the_selection_is_byte_identical_on_every_local_executor(tmp_path, tiny_bert_dir, method, reversed_workers):
    pool, target = _pool(tmp_path)
    extra = METHODS[method]
    in_process = _selection_bytes(tmp_path, "inproc", InProcessExecutor(), tiny_bert_dir, pool, target, extra)
    # 2 workers taking the shards in reverse order: neither the worker a shard lands on nor the order counts
    workers_reversed = _selection_bytes(tmp_path, "reversed", reversed_workers, tiny_bert_dir, pool, target, extra)
    assert in_process == workers_reversed


def test_a_cached_store_that_skipped_bad_records_stops_a_fail_run(tmp_path, tiny_bert_dir):
    pool, target = _pool(tmp_path, copies=1)
    lines = pool.read_text().splitlines()
    write_jsonl(pool, lines[:5] + ['{"prompt": "unterminated'] + lines[5:])
    skip = _config(tmp_path, "same", tiny_bert_dir, pool, target, {"input.on_error": "skip"})
    assert dataselect.run(skip).manifest["counts"]["skipped"] == 1
    fail = _config(tmp_path, "same", tiny_bert_dir, pool, target, {"input.on_error": "fail"})
    with pytest.raises(InputError, match=r"pool.jsonl:6: malformed JSON"):
        dataselect.run(fail)


def _done_records(cache: Path) -> dict[str, int]:
    """Every finished shard's done record and when it was written (a rescored shard would be rewritten)."""
    return {str(p): p.stat().st_mtime_ns for p in cache.glob("embeddings/*/shard-*.done.json")}


def test_a_run_killed_at_three_moments_resumes_each_time_without_rescoring(tmp_path, tiny_bert_dir):
    pool, target = _pool(tmp_path, copies=20)  # 360 samples: 52 shards of 7
    extra = {"runtime.num_workers": 2}
    reference = dataselect.run(_config(tmp_path, "reference", tiny_bert_dir, pool, target, {"runtime.num_workers": 0}))  # workers give the same bytes
    config = _config(tmp_path, "killed", tiny_bert_dir, pool, target, extra)
    config_file = tmp_path / "config.json"
    config_file.write_text(json.dumps(config.model_dump(mode="json")))
    cache = tmp_path / "killed" / "cache"
    marker = tmp_path / "paused"
    script = tmp_path / "run.py"
    script.write_text(textwrap.dedent(f'''
        import json, sys
        import dataselect, dataselect.pipeline
        from dataselect.executors.local import ProcessExecutor
        from support import PausesAfter
        if __name__ == "__main__":
            config = dataselect.Config.model_validate(json.load(open({str(config_file)!r})))
            dataselect.pipeline.run(config, executor=PausesAfter(ProcessExecutor(2), {str(cache)!r}, int(sys.argv[1]), {str(marker)!r}))
    '''))
    kept: dict[str, int] = {}
    for moment in (1, 20, 45):  # early, middle and late in the pool's 52 shards
        marker.unlink(missing_ok=True)
        process = subprocess.Popen([sys.executable, str(script), str(moment)], cwd=tmp_path, start_new_session=True, env=script_env())
        wait_for(marker.exists, process)  # the run has stopped taking shards after `moment` finished ones
        assert marker.exists(), f"the run ended (code {process.poll()}) before pausing at {moment} shards"
        os.killpg(process.pid, signal.SIGKILL)  # the driver and its workers, mid-score
        process.wait()
        done = _done_records(cache)
        assert moment <= len(done) < 52, f"the kill came at {len(done)} finished shards; it must land inside the score phase"
        assert all(done[path] == written for path, written in kept.items())  # no finished shard was scored again
        kept = done
    resumed = dataselect.run(config)
    pool_stage = resumed.manifest["stages"]["pool"]
    assert pool_stage["cache"] == "partial" and pool_stage["resumed_shards"] == len(kept)
    assert pool_stage["docs"] == 360 - 7 * len(kept)  # only the unfinished shards were scored
    assert all(_done_records(cache)[path] == written for path, written in kept.items())
    assert resumed.ids == reference.ids
    assert (Path(resumed.output_dir) / "selection.parquet").read_bytes() == (Path(reference.output_dir) / "selection.parquet").read_bytes()


def test_a_stage_with_large_state_is_unpickled_once_per_worker_not_once_per_shard(tmp_path):
    pool = write_jsonl(tmp_path / "pool.jsonl", [{"id": f"r{i}", "text": f"sample {i}"} for i in range(100)])
    log = str(tmp_path / "unpickled.log")
    source = SourceConfig(path=str(pool))
    executor = ProcessExecutor(2)
    try:
        scored = run_stage(source, "pool", TextRenderer(source), HeavyStage(log, 200 << 20, 2), RuntimeConfig(shard_size=1, progress=False),
                           tmp_path / "cache", executor)
    finally:
        executor.close()
    assert scored.store.num_shards == 100 and scored.counter("docs") == 100
    unpickled = unpickled_by(log)
    assert len(unpickled) == len(set(unpickled)) == 2  # one unpickle in each of the 2 workers, for 100 shards


TORCH_IMPORT_LOG = """
import os, sys

class _Recorder:  # writes this process's id into the log when anything imports torch
    def find_spec(self, name, path, target=None):
        if name == "torch":
            with open(os.environ["TORCH_IMPORT_LOG"], "a") as handle:
                handle.write(f"{os.getpid()}\\n")
        return None

sys.meta_path.insert(0, _Recorder())
"""


def test_a_dsir_run_with_2_workers_on_a_machine_without_gpus_never_imports_torch(tmp_path):
    """torch costs about 1.5 s to import, in the driver and in each worker; a DSIR run needs none of it."""
    from dataselect.hardware import no_gpu_without_torch

    if not no_gpu_without_torch() and "torch" not in sys.modules:
        pytest.skip("a GPU device node exists here: the executor asks torch how many GPUs it sees")
    pool, target = _pool(tmp_path)
    hook = tmp_path / "hook"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(TORCH_IMPORT_LOG)
    log = tmp_path / "torch-imports.log"
    script = textwrap.dedent(f"""
        import dataselect
        config = dataselect.load_config(None, {{"input.path": {str(pool)!r}, "target.path": {str(target)!r}, "method.name": "dsir",
            "method.dsir.features": "reference", "method.dsir.min_words": 3, "method.budget": 5, "runtime.num_workers": 2,
            "runtime.shard_size": 7, "runtime.cache_dir": {str(tmp_path / "cache")!r}, "output.dir": {str(tmp_path / "out")!r}}})
        dataselect.run(config, quiet=True)
    """)
    env = script_env(TORCH_IMPORT_LOG=str(log))
    env["PYTHONPATH"] = os.pathsep.join([str(hook), env["PYTHONPATH"]])
    subprocess.run([sys.executable, "-c", script], env=env, check=True, timeout=300)
    assert (tmp_path / "out" / "report.html").exists()
    assert not log.exists(), f"torch was imported by {log.read_text().split()} (driver and workers should not need it)"


def test_process_workers_start_when_the_executor_is_made_not_at_its_first_shard():
    import multiprocessing

    from support import wait_for

    executor = ProcessExecutor(2)
    try:
        wait_for(lambda: len(multiprocessing.active_children()) >= 2)  # no map yet: they start while the driver plans and loads
        assert sorted(r for r in executor.map(_double, [1, 2, 3])) == [2, 4, 6]
    finally:
        executor.close()


def _double(value: int) -> int:
    return 2 * value
