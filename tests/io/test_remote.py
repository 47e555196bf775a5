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
