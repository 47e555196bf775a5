"""Executors: the same config gives a byte-identical selection in-process, with 2 worker processes, and
with 2 workers reading the shards in reverse order; a cache never breaks a run's contract; a run killed
with SIGKILL mid-score resumes without rescoring finished shards."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from support import MATH, OTHER, write_jsonl

import dataselect
from dataselect.errors import InputError
from dataselect.executors.local import InProcessExecutor, ProcessExecutor

METHODS = {
    "rds": {},
    "dsir-reference": {"method.name": "dsir", "method.dsir.features": "reference", "method.dsir.min_words": 3},
    "dsir-tokens": {"method.name": "dsir", "method.dsir.features": "tokens", "method.dsir.min_words": 3},
    "random": {"method.name": "random"},
    "cluster": {"method.name": "cluster", "method.cluster.num_clusters": 4},
    "semdedup": {"method.name": "semdedup", "method.cluster.num_clusters": 4, "method.semdedup.eps": 0.2, "method.budget": 1.0},
}


def _pool(tmp_path: Path, copies: int = 3) -> tuple[Path, Path]:
    rows = [{"id": f"p{c}-{i}", "prompt": f"{t} (variant {c})", "response": f"Answer {i}."} for c in range(copies) for i, t in enumerate(MATH + OTHER)]
    target = [{"id": "t0", "prompt": "Lea has 4 pears and buys 5 more. How many pears?", "response": "9"}]
    return write_jsonl(tmp_path / "pool.jsonl", rows), write_jsonl(tmp_path / "target.jsonl", target)


def _config(tmp_path: Path, name: str, model: Path, pool: Path, target: Path, extra: dict) -> dataselect.Config:
    overrides = {
        "input.path": str(pool), "target.path": str(target), "model.name": str(model), "method.budget": 10,
        "output.dir": str(tmp_path / name / "out"), "runtime.cache_dir": str(tmp_path / name / "cache"),
        "runtime.shard_size": 7, "runtime.progress": False, "output.show_top": 0, **extra,
    }
    return dataselect.load_config(None, overrides)


def _selection_bytes(tmp_path, name, executor, model, pool, target, extra) -> bytes:
    result = dataselect.pipeline.run(_config(tmp_path, name, model, pool, target, extra), quiet=True, executor=executor)
    return (Path(result.output_dir) / "selection.parquet").read_bytes()


@pytest.mark.parametrize("method", sorted(METHODS))
def test_the_selection_is_byte_identical_on_every_local_executor(tmp_path, tiny_bert_dir, method):
    import dataselect.pipeline  # noqa: F401

    pool, target = _pool(tmp_path)
    extra = METHODS[method]
    in_process = _selection_bytes(tmp_path, "inproc", InProcessExecutor(), tiny_bert_dir, pool, target, extra)
    workers = _selection_bytes(tmp_path, "workers", ProcessExecutor(2), tiny_bert_dir, pool, target, extra)
    reversed_order = _selection_bytes(tmp_path, "reversed", ProcessExecutor(2, order=lambda specs: specs[::-1]), tiny_bert_dir, pool, target, extra)
    assert in_process == workers == reversed_order


def test_a_cached_store_that_skipped_bad_records_stops_a_fail_run(tmp_path, tiny_bert_dir):
    pool, target = _pool(tmp_path, copies=1)
    lines = pool.read_text().splitlines()
    write_jsonl(pool, lines[:5] + ['{"prompt": "unterminated'] + lines[5:])
    skip = _config(tmp_path, "same", tiny_bert_dir, pool, target, {"input.on_error": "skip"})
    assert dataselect.run(skip).manifest["counts"]["skipped"] == 1
    fail = _config(tmp_path, "same", tiny_bert_dir, pool, target, {"input.on_error": "fail"})
    with pytest.raises(InputError, match=r"pool.jsonl:6: malformed JSON"):
        dataselect.run(fail)


def _done_shards(cache: Path) -> int:
    return len(list(cache.glob("embeddings/*/shard-*.done.json")))


def test_a_run_killed_mid_score_resumes_without_rescoring(tmp_path, tiny_bert_dir):
    pool, target = _pool(tmp_path, copies=20)  # 360 samples: 52 shards of 7
    extra = {"runtime.num_workers": 2}
    reference = dataselect.run(_config(tmp_path, "reference", tiny_bert_dir, pool, target, extra))
    config = _config(tmp_path, "killed", tiny_bert_dir, pool, target, extra)
    config_file = tmp_path / "config.json"
    config_file.write_text(json.dumps(config.model_dump(mode="json")))
    script = tmp_path / "run.py"
    script.write_text(textwrap.dedent(f'''
        import json, dataselect
        if __name__ == "__main__":
            dataselect.run(dataselect.Config.model_validate(json.load(open({str(config_file)!r}))))
    '''))
    cache = tmp_path / "killed" / "cache"
    process = subprocess.Popen([sys.executable, str(script)], cwd=tmp_path, start_new_session=True)
    deadline = time.monotonic() + 120
    while _done_shards(cache) < 3 and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    os.killpg(process.pid, signal.SIGKILL)  # the driver and its workers, mid-score
    process.wait()
    finished = _done_shards(cache)
    assert 3 <= finished < 52, f"the kill came at {finished} finished shards; it must land inside the score phase"
    resumed = dataselect.run(config)
    pool_stage = resumed.manifest["stages"]["pool"]
    assert pool_stage["cache"] == "partial"
    assert pool_stage["resumed_shards"] >= finished  # every shard finished before the kill is kept...
    assert pool_stage["docs"] == 360 - 7 * pool_stage["resumed_shards"]  # ...and not scored again
    assert resumed.ids == reference.ids
    assert (Path(resumed.output_dir) / "selection.parquet").read_bytes() == (Path(reference.output_dir) / "selection.parquet").read_bytes()
