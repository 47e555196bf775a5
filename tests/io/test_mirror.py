"""The cache in object storage (io/mirror.py, a moto S3 server): with pool, target, cache and output in S3 a
run selects byte for byte what it selects on local files, and another machine (a fresh local mirror) finds
the stores there: a rerun is a cache hit, a killed run resumes its finished shards, and a changed object is
scored again as a damaged local shard is."""
from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys

import pytest
from support import executor_pool, wait_for, write_jsonl
from test_remote import METHODS, layouts, run

pytest.importorskip("s3fs")
CACHE = {"runtime.cache_dir": "s3://bucket/cache"}


def on_machine(monkeypatch, tmp_path, name: str) -> None:
    """This process as machine `name`: its default local cache, where a cache URL's mirror lives, is its own."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / name))


def bucket():
    import fsspec

    fs = fsspec.filesystem("s3")
    fs.invalidate_cache()  # listings afresh: another process writes the store
    return fs


@pytest.mark.parametrize("method", ["rds", "dsir"])
def test_a_run_with_pool_target_cache_and_output_in_s3_selects_what_it_selects_locally(tmp_path, s3, tiny_bert_dir, monkeypatch, method):
    pool, target = layouts(tmp_path)["folder"]
    bucket().put(str(tmp_path / "data"), "bucket/data", recursive=True)
    local = run(tmp_path, "local", str(pool), str(target), tiny_bert_dir, METHODS[method])
    on_machine(monkeypatch, tmp_path, "machine-a")
    first = run(tmp_path, "s3", "s3://bucket/data/pool/", "s3://bucket/data/target.jsonl", tiny_bert_dir, METHODS[method] | CACHE, output="s3://bucket/runs/x")
    expected = (local.output_dir / "selection.parquet").read_bytes()
    assert bucket().cat_file("bucket/runs/x/selection.parquet") == expected
    assert first.manifest["cache"] == {"pool": "miss", "target": "miss"} and first.manifest["cache_dir"] == "s3://bucket/cache"
    assert first.manifest["stages"]["pool"]["store"].startswith("s3://bucket/cache/")
    assert len(bucket().glob("bucket/cache/*/*/complete.json")) == 2  # the pool's store and the target's, in the bucket
    on_machine(monkeypatch, tmp_path, "machine-b")  # nothing local: the stores in S3 alone serve the rerun
    again = run(tmp_path, "s3b", "s3://bucket/data/pool/", "s3://bucket/data/target.jsonl", tiny_bert_dir, METHODS[method] | CACHE)
    assert again.manifest["cache"] == {"pool": "hit", "target": "hit"}
    assert (again.output_dir / "selection.parquet").read_bytes() == expected


def test_a_run_killed_mid_score_with_its_cache_in_s3_resumes_its_finished_shards_elsewhere(tmp_path, s3, tiny_bert_dir, monkeypatch):
    pool, target = executor_pool(tmp_path / "src", copies=6)  # 16 shards of 7 (the last of 3)
    bucket().put(str(pool), "bucket/big/pool.jsonl")
    bucket().put(str(target), "bucket/big/target.jsonl")
    reference = run(tmp_path, "local", str(pool), str(target), tiny_bert_dir, METHODS["rds"])
    on_machine(monkeypatch, tmp_path, "machine-a")
    args = ["--set", "input.path=s3://bucket/big/pool.jsonl", "--set", "target.path=s3://bucket/big/target.jsonl", "--set", f"model.name={tiny_bert_dir}",
            "--set", "method.budget=10", "--set", f"output.dir={tmp_path / 'killed' / 'out'}", "--set", "runtime.cache_dir=s3://bucket/cache",
            "--set", "runtime.shard_size=7", "--set", "runtime.num_workers=0", "-q"]
    process = subprocess.Popen([sys.executable, "-m", "dataselect.cli", "run", *args], start_new_session=True, env=dict(os.environ))

    # shards are written one after another, each uploaded before the next is written: 4 in the mirror, 3 in the store
    mirror = tmp_path / "machine-a" / "dataselect" / "remote"  # machine a's mirror of the cache URL
    wait_for(lambda: len(list(mirror.glob("*/embeddings/*/shard-*.done.json"))) >= 4, process)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    done = len(bucket().glob("bucket/cache/embeddings/*/shard-*.done.json"))  # done records in the store: what another machine can resume
    assert 3 <= done < 16, f"the kill came at {done} finished shards"
    on_machine(monkeypatch, tmp_path, "machine-b")
    resumed = run(tmp_path, "s3", "s3://bucket/big/pool.jsonl", "s3://bucket/big/target.jsonl", tiny_bert_dir, METHODS["rds"] | CACHE)
    assert resumed.manifest["stages"]["pool"]["resumed_shards"] >= done
    assert resumed.manifest["stages"]["pool"]["docs"] == 108 - 7 * resumed.manifest["stages"]["pool"]["resumed_shards"]
    assert (resumed.output_dir / "selection.parquet").read_bytes() == (reference.output_dir / "selection.parquet").read_bytes()


def test_a_changed_object_in_the_store_is_scored_again(tmp_path, s3, tiny_bert_dir, monkeypatch, caplog):
    pool, target = executor_pool(tmp_path / "src")  # 8 shards of 7
    bucket().put(str(pool), "bucket/p/pool.jsonl")
    bucket().put(str(target), "bucket/p/target.jsonl")
    on_machine(monkeypatch, tmp_path, "machine-a")
    first = run(tmp_path, "a", "s3://bucket/p/pool.jsonl", "s3://bucket/p/target.jsonl", tiny_bert_dir, METHODS["rds"] | CACHE)
    [shard] = bucket().glob("bucket/cache/embeddings/*/shard-000001.emb.npy")
    whole = bucket().cat_file(shard)
    bucket().pipe_file(shard, whole[:-8] + bytes(b ^ 0xFF for b in whole[-8:]))  # the same size, other bytes
    on_machine(monkeypatch, tmp_path, "machine-b")
    with caplog.at_level(logging.WARNING):
        again = run(tmp_path, "b", "s3://bucket/p/pool.jsonl", "s3://bucket/p/target.jsonl", tiny_bert_dir, METHODS["rds"] | CACHE)
    assert any("shard 1 is damaged (shard-000001.emb.npy is missing or changed)" in r.getMessage() for r in caplog.records), caplog.text
    assert again.manifest["cache"] == {"pool": "partial", "target": "hit"}
    assert again.manifest["stages"]["pool"]["resumed_shards"] == 7 and again.manifest["stages"]["pool"]["docs"] == 7
    assert (again.output_dir / "selection.parquet").read_bytes() == (first.output_dir / "selection.parquet").read_bytes()
    assert bucket().cat_file(shard) == whole  # the store holds the shard whole again


def test_a_cache_in_a_missing_bucket_is_one_line_naming_the_object(tmp_path, s3, monkeypatch):
    import dataselect

    on_machine(monkeypatch, tmp_path, "machine")
    pool = write_jsonl(tmp_path / "pool.jsonl", [{"id": f"r{i}", "text": f"text {i}"} for i in range(12)])
    overrides = {"input.path": str(pool), "method.name": "random", "method.budget": 3, "runtime.progress": False,
                 "output.dir": str(tmp_path / "out"), "runtime.cache_dir": "s3://no-such-bucket/cache"}
    with pytest.raises(dataselect.DataselectError, match=r"^output error: cannot upload s3://no-such-bucket/cache/samples/\w+/key.json: .*bucket"):
        dataselect.run(dataselect.load_config(None, overrides))
