"""Faults a long run meets: an input file that disappears mid-run, a disk that fills while shards are
written. Each ends in one clear line and leaves no half-written shard or output behind; a rerun resumes.
(A worker that dies: tests/executors/test_ray.py, where Ray retries the shard.)"""
from __future__ import annotations

import errno
from pathlib import Path

import pytest
from support import executor_config as _config
from support import executor_pool as _pool

import dataselect
import dataselect.pipeline
from dataselect.cli import main as cli_main
from dataselect.errors import InputError
from dataselect.executors.local import InProcessExecutor


def _leftovers(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.name.endswith(".tmp") or ".parts." in p.name]


def test_an_input_file_that_disappears_mid_run_is_one_input_error(tmp_path, tiny_bert_dir, monkeypatch):
    import dataselect.scoring.samples as samples

    pool, target = _pool(tmp_path, copies=10)  # 26 shards of 7
    original = samples.SampleStage.score
    calls = []

    def score_then_delete(self, shard):
        calls.append(1)
        if len(calls) == 3:
            pool.unlink()  # gone while the run is in its score phase
        return original(self, shard)

    monkeypatch.setattr(samples.SampleStage, "score", score_then_delete)
    config = _config(tmp_path, "gone", tiny_bert_dir, pool, target, {"method.name": "random"})
    with pytest.raises(InputError, match=rf"input error: cannot read {pool}: .*No such file"):
        dataselect.pipeline.run(config, quiet=True, executor=InProcessExecutor())
    assert not (tmp_path / "gone" / "out" / "selection.parquet").exists()
    assert _leftovers(tmp_path / "gone") == []


def test_a_disk_that_fills_while_writing_shards_is_one_line_and_resumes(tmp_path, tiny_bert_dir, monkeypatch, capsys):
    import dataselect.io.shards as shards

    pool, target = _pool(tmp_path, copies=5)
    original = shards.save_npy
    writes = []

    def fills_up(path, array):
        writes.append(path)
        if len(writes) == 4:
            with open(path, "wb") as handle:
                handle.write(b"partial")  # half an array reached the disk before it filled
            raise OSError(errno.ENOSPC, "No space left on device")
        return original(path, array)

    monkeypatch.setattr(shards, "save_npy", fills_up)
    overrides = {"input.path": str(pool), "target.path": str(target), "model.name": str(tiny_bert_dir), "method.budget": 5,
                 "output.dir": str(tmp_path / "out"), "runtime.cache_dir": str(tmp_path / "cache"), "runtime.shard_size": 7,
                 "runtime.progress": "false", "runtime.num_workers": 0}
    code = cli_main(["run", "-q", *[f"--set={k}={v}" for k, v in overrides.items()]])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "No space left on device" in err[0]
    assert _leftovers(tmp_path) == [] and not (tmp_path / "out" / "selection.parquet").exists()
    done = len(list((tmp_path / "cache").rglob("*.done.json")))
    assert done == 3  # the three shards before the failure are whole and recorded

    monkeypatch.setattr(shards, "save_npy", original)
    assert cli_main(["run", "-q", *[f"--set={k}={v}" for k, v in overrides.items()]]) == 0
    manifest = (tmp_path / "out" / "manifest.json").read_text()
    assert '"resumed_shards": 3' in manifest
