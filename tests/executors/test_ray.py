"""`runtime.executor: ray` on a local Ray instance: the same selection as the local executor, resume
after SIGKILL, a worker that dies is retried, and clear errors."""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

import pytest
from support import EXECUTOR_METHODS as METHODS
from support import executor_config as _config
from support import executor_pool as _pool
from support import script_env, wait_for, wait_for_exit
from support import selection_bytes as _selection_bytes

import dataselect
import dataselect.pipeline
from dataselect.executors.local import InProcessExecutor

ray = pytest.importorskip("ray")


def _ray_executor():
    from dataselect.executors.ray import RayExecutor

    return RayExecutor()  # joins the running instance, leaves it running


@pytest.mark.parametrize("method", sorted(METHODS))
def test_ray_gives_the_local_executors_selection(tmp_path, tiny_bert_dir, ray_instance, method):
    pool, target = _pool(tmp_path)
    extra = METHODS[method]
    local = _selection_bytes(tmp_path, "local", InProcessExecutor(), tiny_bert_dir, pool, target, extra)
    on_ray = _selection_bytes(tmp_path, "ray", _ray_executor(), tiny_bert_dir, pool, target, extra)
    assert local == on_ray


def test_ray_with_its_store_in_s3_needs_no_shared_folder(tmp_path, tiny_bert_dir, ray_instance, s3, monkeypatch):
    pool, target = _pool(tmp_path)
    local = _selection_bytes(tmp_path, "local", InProcessExecutor(), tiny_bert_dir, pool, target, {})
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "driver"))  # the driver's mirror; the workers have their own (ray_instance)
    # the workers never saw the test's environment: the run's storage options reach them
    options = {"key": "testing", "secret": "testing", "client_kwargs": {"endpoint_url": s3, "region_name": "us-east-1"}}
    extra = {"runtime.cache_dir": "s3://bucket/cache", "runtime.storage_options": options}
    assert _selection_bytes(tmp_path, "ray", _ray_executor(), tiny_bert_dir, pool, target, extra) == local
    driver = sorted(p.name for p in (tmp_path / "driver").glob("dataselect/remote/*/embeddings/*/shard-*"))
    workers = sorted(p.name for p in ray_instance.glob("dataselect/remote/*/embeddings/*/shard-*"))
    assert workers and driver == workers  # each wrote or fetched every shard; the store in S3 was the only thing shared


class DiesOnce:
    """A sample stage whose worker process dies (os._exit) on its first shard: Ray must retry the shard."""

    kind = "samples"
    token_unit = "tokens"

    def __init__(self, marker: str) -> None:
        from dataselect.scoring.stage import Resources

        self.marker = marker
        self.resources = Resources()

    def identity(self):
        # its own stage token: Ray workers reused from an earlier test hold a set-up SampleStage (identity {}),
        # which `ready` would hand back instead of this stage
        return {"dies_once": self.marker}

    def setup(self, device):
        pass

    def score(self, samples):
        from dataselect.scoring.stage import ShardOutput

        if not os.path.exists(self.marker):
            open(self.marker, "w").close()
            os._exit(1)  # the worker process dies mid-shard
        return ShardOutput()

    def close(self):
        pass


def test_a_ray_worker_that_dies_is_retried(tmp_path, tiny_bert_dir, ray_instance, monkeypatch):
    import dataselect.select.random as random_method

    pool, target = _pool(tmp_path, copies=1)
    reference = _selection_bytes(tmp_path, "ref", InProcessExecutor(), tiny_bert_dir, pool, target, {"method.name": "random"})
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])  # the workers cannot import this test module
    monkeypatch.setattr(random_method, "SampleStage", lambda: DiesOnce(str(tmp_path / "died")))
    got = _selection_bytes(tmp_path, "dies", _ray_executor(), tiny_bert_dir, pool, target, {"method.name": "random"})
    assert (tmp_path / "died").exists() and got == reference


def test_on_ray_a_stage_with_large_state_is_unpickled_once_per_worker_not_once_per_shard(tmp_path, ray_instance):
    import support

    from dataselect.config import RuntimeConfig, SourceConfig
    from dataselect.io.render import TextRenderer
    from dataselect.scoring.loop import run_stage

    ray.cloudpickle.register_pickle_by_value(support)  # the Ray workers cannot import the tests' support module
    pool = support.write_jsonl(tmp_path / "pool.jsonl", [{"id": f"r{i}", "text": f"sample {i}"} for i in range(40)])
    log = str(tmp_path / "unpickled.log")
    source = SourceConfig(path=str(pool))
    executor = _ray_executor()
    scored = run_stage(source, "pool", TextRenderer(source), support.HeavyStage(log, 8 << 20, 2), RuntimeConfig(shard_size=1, progress=False),
                       tmp_path / "cache", executor)
    executor.close()
    assert scored.store.num_shards == 40 and scored.counter("docs") == 40
    unpickled = support.unpickled_by(log)
    assert len(unpickled) == len(set(unpickled)) == 2  # one fetch in each of the instance's 2 workers, for 40 shards


def test_an_unreachable_cluster_is_one_line(tmp_path, monkeypatch):
    from dataselect.errors import ConfigError
    from dataselect.executors.ray import RayExecutor

    monkeypatch.setattr(ray, "is_initialized", lambda: False)
    with pytest.raises(ConfigError, match="runtime.ray_address: cannot start or reach Ray at 127.0.0.1:1"):
        RayExecutor(address="127.0.0.1:1")


def _kill_recorded(pids_file: Path) -> None:
    """SIGKILL the processes whose ids the run recorded in `pids_file` (its Ray instance: GCS, raylet, ...)
    and their descendants, found from those ids alone; nothing else on the machine (another run's Ray) is touched."""
    pids = [int(p) for p in pids_file.read_text().split()]
    tree, stack = [], list(pids)
    while stack:
        pid = stack.pop()
        tree.append(pid)
        for task in Path(f"/proc/{pid}/task").glob("*"):
            try:
                stack += [int(c) for c in (task / "children").read_text().split()]
            except OSError:
                pass
    for pid in tree:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    wait_for_exit(tree)


def test_a_run_on_ray_killed_mid_score_resumes(tmp_path, tiny_bert_dir):
    pool, target = _pool(tmp_path, copies=20)  # 52 shards
    extra = {"runtime.executor": "ray", "runtime.num_workers": 2}
    config = _config(tmp_path, "killed", tiny_bert_dir, pool, target, extra)
    reference = dataselect.pipeline.run(_config(tmp_path, "ref", tiny_bert_dir, pool, target, {}), quiet=True, executor=InProcessExecutor())
    cache, marker, pids_file = tmp_path / "killed" / "cache", tmp_path / "paused", tmp_path / "ray.pids"
    script = tmp_path / "run.py"
    script.write_text(textwrap.dedent(f'''
        import os
        os.environ["RAY_AUTH_MODE"] = "disabled"
        import ray, dataselect, dataselect.pipeline
        from dataselect.executors.ray import RayExecutor
        from support import PausesAfter
        if __name__ == "__main__":
            executor = RayExecutor()  # starts this run's own local instance
            with open({str(pids_file)!r}, "w") as handle:  # its processes, for the test to kill by id
                handle.write(" ".join(str(process.pid) for _, process in ray._private.worker._global_node.live_processes()))
            config = dataselect.Config.model_validate_json({config.model_dump_json()!r})
            dataselect.pipeline.run(config, quiet=True, executor=PausesAfter(executor, {str(cache)!r}, 3, {str(marker)!r}))
    '''))
    ray_dir = tempfile.mkdtemp(prefix="ray-", dir="/tmp")  # this test's own instance folder (short: Ray's socket paths cap it)
    try:
        process = subprocess.Popen([sys.executable, str(script)], cwd=tmp_path, start_new_session=True, env=script_env(RAY_TMPDIR=ray_dir))
        wait_for(marker.exists, process)  # 3 shards finished and the run takes no more
        assert marker.exists(), f"the run ended (code {process.poll()}) before pausing at 3 shards"
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
        _kill_recorded(pids_file)  # the killed driver's Ray instance (raylet, GCS) outlives it
    finally:
        shutil.rmtree(ray_dir, ignore_errors=True)
    finished = len(list(cache.glob("embeddings/*/shard-*.done.json")))
    assert 3 <= finished < 52, f"the kill came at {finished} finished shards"
    resumed = dataselect.pipeline.run(config.model_copy(update={"runtime": config.runtime.model_copy(update={"executor": "local"})}), quiet=True)
    assert resumed.manifest["stages"]["pool"]["resumed_shards"] >= finished
    assert resumed.manifest["stages"]["pool"]["docs"] == 360 - 7 * resumed.manifest["stages"]["pool"]["resumed_shards"]
    assert (Path(resumed.output_dir) / "selection.parquet").read_bytes() == (Path(reference.output_dir) / "selection.parquet").read_bytes()
