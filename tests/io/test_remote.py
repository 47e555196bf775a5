"""Object storage (a moto S3 server): `dataselect run` with its pool (a prefix holding a plain and a gzipped
JSON Lines file, or a parquet file), target and output folder at s3:// URLs selects byte for byte what it
selects from the same files on disk, a rerun is a cache hit, and the output folder is complete only once
its manifest.json is there."""
from __future__ import annotations

import gzip
import json
import shutil
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from support import executor_pool

import dataselect

pytest.importorskip("s3fs")
METHODS = {"rds": {}, "dsir": {"method.name": "dsir", "method.dsir.features": "reference", "method.dsir.min_words": 3}}


def layouts(tmp_path: Path) -> dict[str, tuple[Path, Path]]:
    """name -> (local pool folder or file, local target file): the same records as a folder of a plain and a
    gzipped JSON Lines file, and as one parquet file."""
    pool, target = executor_pool(tmp_path / "src")
    lines = pool.read_text().splitlines(keepends=True)
    folder = tmp_path / "data" / "pool"
    folder.mkdir(parents=True)
    (folder / "a.jsonl").write_text("".join(lines[: len(lines) // 2]))
    with gzip.open(folder / "b.jsonl.gz", "wt") as handle:
        handle.write("".join(lines[len(lines) // 2 :]))
    parquet = tmp_path / "data" / "pool.parquet"
    pq.write_table(pa.Table.from_pylist([json.loads(line) for line in lines]), parquet, row_group_size=5)
    shutil.copy(target, tmp_path / "data" / "target.jsonl")
    return {"folder": (folder, tmp_path / "data" / "target.jsonl"), "parquet": (parquet, tmp_path / "data" / "target.jsonl")}


def run(tmp_path: Path, name: str, pool: str, target: str, model: Path, extra: dict, output: str | None = None):
    overrides = {"input.path": pool, "target.path": target, "model.name": str(model), "method.budget": 10, "output.dir": output or str(tmp_path / name / "out"),
                 "runtime.cache_dir": str(tmp_path / name / "cache"), "runtime.shard_size": 7, "runtime.progress": False, "output.show_top": 0,
                 "runtime.num_workers": 0, **extra}
    return dataselect.run(dataselect.load_config(None, overrides))


@pytest.mark.parametrize("method, layout", [("rds", "folder"), ("dsir", "folder"), ("dsir", "parquet")])
def test_a_run_on_s3_inputs_selects_what_it_selects_locally(tmp_path, s3, tiny_bert_dir, method, layout):
    import fsspec

    pool, target = layouts(tmp_path)[layout]
    fsspec.filesystem("s3").put(str(tmp_path / "data"), "bucket/data", recursive=True)
    remote_pool = "s3://bucket/data/" + pool.relative_to(tmp_path / "data").as_posix() + ("/" if pool.is_dir() else "")
    local = run(tmp_path, "local", str(pool), str(target), tiny_bert_dir, METHODS[method])
    remote = run(tmp_path, "s3", remote_pool, "s3://bucket/data/target.jsonl", tiny_bert_dir, METHODS[method])
    assert (remote.output_dir / "selection.parquet").read_bytes() == (local.output_dir / "selection.parquet").read_bytes()
    assert [s["path"] for s in remote.manifest["input"]["locations"]][:1] == [f"{remote_pool.rstrip('/')}/a.jsonl" if layout == "folder" else remote_pool]
    again = run(tmp_path, "s3", remote_pool, "s3://bucket/data/target.jsonl", tiny_bert_dir, METHODS[method])
    assert again.manifest["cache"] == {"pool": "hit", "target": "hit"}
    assert (again.output_dir / "selection.parquet").read_bytes() == (local.output_dir / "selection.parquet").read_bytes()


def test_an_overwritten_object_is_scored_again_and_a_missing_one_is_one_line(tmp_path, s3, tiny_bert_dir):
    import fsspec

    pool, target = layouts(tmp_path)["folder"]
    fs = fsspec.filesystem("s3")
    fs.put(str(tmp_path / "data"), "bucket/data", recursive=True)
    first = run(tmp_path, "s3", "s3://bucket/data/pool/", "s3://bucket/data/target.jsonl", tiny_bert_dir, METHODS["dsir"])
    fs.pipe_file("bucket/data/pool/a.jsonl", (pool / "a.jsonl").read_bytes().replace(b"apples", b"pears"))
    second = run(tmp_path, "s3", "s3://bucket/data/pool/", "s3://bucket/data/target.jsonl", tiny_bert_dir, METHODS["dsir"])
    assert second.manifest["cache"] == {"pool": first.manifest["cache"]["pool"], "target": "hit"} != first.manifest["cache"]  # the pool anew
    with pytest.raises(dataselect.DataselectError, match=r"no input files found at 's3://bucket/nothing/'"):
        run(tmp_path, "none", "s3://bucket/nothing/", "s3://bucket/data/target.jsonl", tiny_bert_dir, METHODS["dsir"])


def test_an_output_folder_in_s3_holds_the_local_runs_files(tmp_path, s3, tiny_bert_dir):
    import fsspec

    pool, target = layouts(tmp_path)["folder"]
    fs = fsspec.filesystem("s3")
    fs.put(str(tmp_path / "data"), "bucket/data", recursive=True)
    extra = {**METHODS["rds"], "output.write": "jsonl"}
    local = run(tmp_path, "local", str(pool), str(target), tiny_bert_dir, extra)
    fs.pipe_file("bucket/runs/rds/selected.parquet", b"an earlier run's rows")  # an engine output this run does not write: goes
    fs.pipe_file("bucket/runs/rds/notes.txt", b"the user's own file")  # not the engine's: stays
    run(tmp_path, "s3", "s3://bucket/data/pool/", "s3://bucket/data/target.jsonl", tiny_bert_dir, extra, output="s3://bucket/runs/rds")
    for name in ("selection.parquet", "selected.jsonl", "scorer/fitted_scores.npy", "scorer/target_embeddings.npy"):
        assert fs.cat_file(f"bucket/runs/rds/{name}") == (local.output_dir / name).read_bytes()
    assert json.loads(fs.cat_file("bucket/runs/rds/manifest.json"))["config"]["output"]["dir"] == "s3://bucket/runs/rds"
    assert not fs.exists("bucket/runs/rds/selected.parquet") and fs.exists("bucket/runs/rds/notes.txt")
    uploaded = sorted(p.rsplit("/", 1)[-1] for p in fs.find("bucket/runs/rds"))
    assert "report.html" in uploaded and "scores.parquet" in uploaded
    with dataselect.load_scorer("s3://bucket/runs/rds", cache_dir=str(tmp_path / "fetch")) as scorer:  # the uploaded run folder serves its scorer
        assert scorer.tasks == ["target"]


def test_ray_workers_read_s3_inputs_with_the_runs_storage_options(tmp_path, ray_instance, s3, tiny_bert_dir, monkeypatch):
    """The Ray workers never saw the driver's environment: the run's runtime.storage_options must reach them."""
    import fsspec

    from dataselect.executors.ray import RayExecutor

    pool, target = layouts(tmp_path)["folder"]
    fsspec.filesystem("s3").put(str(tmp_path / "data"), "bucket/data", recursive=True)
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")  # nothing listens there: a read without the options fails at once
    options = {"key": "testing", "secret": "testing", "client_kwargs": {"endpoint_url": s3, "region_name": "us-east-1"}}
    local = run(tmp_path, "local", str(pool), str(target), tiny_bert_dir, METHODS["rds"])
    overrides = {"input.path": "s3://bucket/data/pool/", "target.path": "s3://bucket/data/target.jsonl", "model.name": str(tiny_bert_dir),
                 "method.budget": 10, "output.dir": str(tmp_path / "ray" / "out"), "runtime.cache_dir": str(tmp_path / "ray" / "cache"),
                 "runtime.shard_size": 7, "runtime.progress": False, "runtime.storage_options": options}
    on_ray = dataselect.pipeline.run(dataselect.load_config(None, overrides), quiet=True, executor=RayExecutor())
    assert (on_ray.output_dir / "selection.parquet").read_bytes() == (local.output_dir / "selection.parquet").read_bytes()
    assert on_ray.manifest["config"]["runtime"]["storage_options"] == {"key": "<redacted>", "secret": "<redacted>", "client_kwargs": "<redacted>"}


def test_a_run_on_s3_inputs_killed_mid_score_resumes_its_finished_shards(tmp_path, s3, tiny_bert_dir):
    import os
    import signal
    import subprocess
    import sys
    import time

    import fsspec

    pool, target = executor_pool(tmp_path / "src", copies=20)  # 52 shards of 7
    fsspec.filesystem("s3").put(str(pool), "bucket/big/pool.jsonl")
    fsspec.filesystem("s3").put(str(target), "bucket/big/target.jsonl")
    reference = run(tmp_path, "local", str(pool), str(target), tiny_bert_dir, METHODS["rds"])
    args = ["--set", "input.path=s3://bucket/big/pool.jsonl", "--set", "target.path=s3://bucket/big/target.jsonl", "--set", f"model.name={tiny_bert_dir}",
            "--set", "method.budget=10", "--set", f"output.dir={tmp_path / 's3' / 'out'}", "--set", f"runtime.cache_dir={tmp_path / 's3' / 'cache'}",
            "--set", "runtime.shard_size=7", "--set", "runtime.num_workers=0", "-q"]
    process = subprocess.Popen([sys.executable, "-m", "dataselect.cli", "run", *args], start_new_session=True, env=dict(os.environ))
    cache = tmp_path / "s3" / "cache"
    deadline = time.monotonic() + 180
    while len(list(cache.glob("embeddings/*/shard-*.done.json"))) < 3 and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    finished = len(list(cache.glob("embeddings/*/shard-*.done.json")))
    assert 3 <= finished < 52, f"the kill came at {finished} finished shards"
    resumed = run(tmp_path, "s3", "s3://bucket/big/pool.jsonl", "s3://bucket/big/target.jsonl", tiny_bert_dir, METHODS["rds"])
    assert resumed.manifest["stages"]["pool"]["resumed_shards"] >= finished
    assert resumed.manifest["stages"]["pool"]["docs"] == 360 - 7 * resumed.manifest["stages"]["pool"]["resumed_shards"]
    assert (resumed.output_dir / "selection.parquet").read_bytes() == (reference.output_dir / "selection.parquet").read_bytes()
