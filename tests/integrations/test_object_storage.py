"""A saved scorer in object storage (a moto S3 server): loaded by URL with the same scores as the local
folder, copied once into the cache and checked there, and usable from `dataselect apply` (its input and
output in S3 too: the same kept ids as locally) and from a host's step."""
from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest
from integration_cases import KEEP

import dataselect
from dataselect.cli import main
from dataselect.errors import ScorerError
from dataselect.integrations.ray_data import ScoreBatches

pytest.importorskip("s3fs")


def upload(case, url: str) -> None:
    """The run folder holding the case's scorer, put under `url`."""
    import fsspec

    fs, path = fsspec.core.url_to_fs(url)
    fs.put(str(case.scorer), f"{path}/scorer", recursive=True)


def test_a_scorer_in_s3_scores_as_the_local_one_and_is_fetched_once(tmp_path, s3, case):
    upload(case, "s3://bucket/runs/fit")
    for _ in range(2):  # the second load reads the cached copy
        with dataselect.load_scorer("s3://bucket/runs/fit", cache_dir=str(tmp_path / "cache")) as scorer:  # the run folder: its scorer/
            np.testing.assert_array_equal(scorer.score(case.records), case.scores)
    copies = list((tmp_path / "cache" / "scorers").iterdir())
    assert len(copies) == 1 and sorted(p.name for p in copies[0].iterdir()) == sorted(p.name for p in case.scorer.iterdir())


def test_a_changed_remote_array_is_refused_naming_the_file(tmp_path, s3, saved_scorers):
    import fsspec

    case = saved_scorers["dsir"]
    upload(case, "s3://bucket/runs/fit")
    fs = fsspec.filesystem("s3")
    data = bytearray(fs.cat_file("bucket/runs/fit/scorer/log_ratio.npy"))
    data[-8:] = bytes(b ^ 0xFF for b in data[-8:])
    fs.pipe_file("bucket/runs/fit/scorer/log_ratio.npy", bytes(data))
    with pytest.raises(ScorerError, match="log_ratio.npy: its content differs"):
        dataselect.load_scorer("s3://bucket/runs/fit/scorer", cache_dir=str(tmp_path / "cache"))
    with pytest.raises(ScorerError, match="no scorer.json there"):
        dataselect.load_scorer("s3://bucket/runs/absent", cache_dir=str(tmp_path / "cache"))


def test_apply_from_s3_and_a_hosts_step_read_the_scorer_from_s3(tmp_path, s3, case):
    import fsspec

    upload(case, "s3://bucket/runs/fit")
    fsspec.filesystem("s3").put(str(case.pool), "bucket/new/pool.jsonl")
    assert main(["apply", "--scorer", "s3://bucket/runs/fit/scorer", "--input", "s3://bucket/new/pool.jsonl", "--output", "s3://bucket/applied",
                 "--keep", str(KEEP), "--quiet", "--set", f"runtime.cache_dir={tmp_path / 'cache'}"]) == 0
    import io

    import pyarrow.parquet as pq

    selection = pq.read_table(io.BytesIO(fsspec.filesystem("s3").cat_file("bucket/applied/selection.parquet")))
    assert sorted(selection.column("id").to_pylist()) == sorted(case.kept)
    # a worker elsewhere names the store by storage_options rather than by its environment
    options = {"key": "testing", "secret": "testing", "client_kwargs": {"endpoint_url": s3}}
    step = ScoreBatches("s3://bucket/runs/fit/scorer", keep=KEEP, storage_options=options, cache_dir=str(tmp_path / "worker-cache"))
    assert step(pa.Table.from_pylist(case.records)).column("id").to_pylist() == case.kept
