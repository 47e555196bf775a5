"""The score-phase loop's cache (scoring/loop.py): a damaged cached store is rescored, shard by shard, with
a warning naming what it rescored, never trusted and never a traceback; a source edited behind the
engine's back (its modification time restored) is a cache miss."""
from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np
import pytest
from support import executor_config, executor_pool

import dataselect


def _damage_random_bytes(path: Path) -> None:
    data = bytearray(path.read_bytes())
    rng = np.random.default_rng(0)
    middle = len(data) // 2
    data[middle : middle + 16] = rng.integers(0, 256, 16, dtype=np.uint8).tobytes()
    path.write_bytes(bytes(data))


DAMAGES = {
    "random bytes in an array": ("shard-000001.emb.npy", _damage_random_bytes, "shard 1"),
    "random bytes in a shard's metadata": ("shard-000002.meta.parquet", _damage_random_bytes, "shard 2"),
    "a truncated array": ("shard-000000.emb.npy", lambda p: p.write_bytes(p.read_bytes()[:-40]), "shard 0"),
    "a deleted done record": ("shard-000003.done.json", Path.unlink, None),
    "a garbled done record": ("shard-000001.done.json", lambda p: p.write_text("{\"rows\": "), "shard 1"),
    "a deleted index": ("complete.json", Path.unlink, None),
    "random bytes in the consolidated metadata": ("meta.parquet", _damage_random_bytes, "index"),
}


@pytest.mark.parametrize("damage", sorted(DAMAGES))
def test_a_damaged_store_is_rescored_and_the_selection_is_the_clean_runs(tmp_path, tiny_bert_dir, caplog, damage):
    pool, target = executor_pool(tmp_path)
    config = executor_config(tmp_path, "run", tiny_bert_dir, pool, target, {})
    clean = dataselect.run(config, quiet=True)
    expected = (clean.output_dir / "selection.parquet").read_bytes()
    [pool_store] = [p.parent for p in (tmp_path / "run" / "cache").rglob("shard-000003.done.json")]  # the target has one shard
    name, damage_file, named = DAMAGES[damage]
    damage_file(pool_store / name)
    with caplog.at_level(logging.WARNING, logger="dataselect.scoring.loop"):
        again = dataselect.run(config, quiet=True)
    assert (again.output_dir / "selection.parquet").read_bytes() == expected
    assert again.manifest["stages"]["pool"]["cache"] == "partial"
    if named == "index":
        assert any("index is rebuilt" in r.getMessage() for r in caplog.records)
    elif named is not None:
        assert any(f"{named} is damaged" in r.getMessage() and name in r.getMessage() for r in caplog.records), caplog.text


def test_a_source_edited_with_its_modification_time_restored_is_scored_again(tmp_path, tiny_bert_dir):
    pool, target = executor_pool(tmp_path)
    config = executor_config(tmp_path, "run", tiny_bert_dir, pool, target, {"method.budget": 40})
    first = dataselect.run(config, quiet=True)
    lines = pool.read_text().splitlines(keepends=True)
    same = next(i for i in range(1, len(lines)) if len(lines[i]) == len(lines[0]))
    lines[0], lines[same] = lines[same], lines[0]  # same size; only the order differs
    stat = pool.stat()
    pool.write_text("".join(lines))
    os.utime(pool, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    again = dataselect.run(config, quiet=True)
    assert again.manifest["stages"]["pool"]["cache"] == "miss"
    assert sorted(again.ids) == sorted(first.ids)


def test_bad_inputs_are_printed_once_per_file_and_reason_for_the_whole_run_not_per_shard(tmp_path, caplog):
    from support import write_jsonl

    rows = [{"id": f"r{i}", "text": "fine text"} if i % 2 else '{"broken' for i in range(200)]  # 100 bad lines over 20 shards
    pool = write_jsonl(tmp_path / "pool" / "a.jsonl", rows)
    write_jsonl(tmp_path / "pool" / "b.jsonl", [{"id": f"b{i}", "content": "the wrong field"} for i in range(30)])
    pool = pool.parent
    config = dataselect.load_config(None, {"input.path": str(pool), "method.name": "random", "method.budget": 5, "output.dir": str(tmp_path / "out"),
                                           "runtime.cache_dir": str(tmp_path / "cache"), "runtime.shard_size": 10, "runtime.progress": False})
    with caplog.at_level(logging.WARNING):
        result = dataselect.run(config, quiet=True)
    printed = [r.getMessage() for r in caplog.records if r.getMessage().startswith("skipped ")]
    assert result.manifest["counts"]["skipped"] == 130
    assert [line.split(" (")[0] for line in printed] == [
        "skipped bad pool input: a.jsonl:1: malformed JSON", "skipped bad pool input: b.jsonl:1: no text field",
        "skipped 99 more bad pool inputs in a.jsonl: malformed JSON", "skipped 29 more bad pool inputs in b.jsonl: no text field"]


def test_a_killed_runs_temporary_files_are_removed_by_the_next_run(tmp_path, tiny_bert_dir):
    pool, target = executor_pool(tmp_path)
    config = executor_config(tmp_path, "run", tiny_bert_dir, pool, target, {})
    dataselect.run(config, quiet=True)
    [store] = [p.parent for p in (tmp_path / "run" / "cache").rglob("shard-000003.done.json")]
    (store / ".key.json.abc123.tmp").write_text("{\"half")  # what a SIGKILL during atomic_write leaves
    (store / ".shard-000001.emb.npy.x.tmp").write_bytes(b"\x93NUMPY")
    dataselect.run(config, quiet=True)
    assert list(store.glob("*.tmp")) == []


def test_a_full_disk_while_writing_a_store_is_one_line_naming_the_file(tmp_path, tiny_bert_dir, monkeypatch):
    from dataselect.errors import OutputError
    from dataselect.io import shards

    def full(path, array):
        raise OSError("38400 requested and 28608 written")  # what numpy says when the disk fills mid-array

    monkeypatch.setattr(shards, "save_npy", full)
    pool, target = executor_pool(tmp_path)
    config = executor_config(tmp_path, "run", tiny_bert_dir, pool, target, {"runtime.num_workers": 0})
    with pytest.raises(OutputError, match=r"^output error: cannot write .*shard-000000\.emb\.npy: 38400 requested and 28608 written \(free space"):
        dataselect.run(config, quiet=True)


@pytest.fixture
def read_only_view(tmp_path):
    """read_only_view(folder) -> the folder mounted read-only elsewhere (a bind mount; needs root, else skip)."""
    import shutil
    import subprocess

    mounted: list[Path] = []

    def view(folder: Path) -> Path:
        target = tmp_path / f"ro-{len(mounted)}"
        target.mkdir()
        if not shutil.which("mount") or os.geteuid() != 0:
            pytest.skip("a read-only bind mount needs root")
        done = subprocess.run(["mount", "--bind", str(folder), str(target)], capture_output=True)
        if done.returncode:
            pytest.skip(f"cannot bind-mount here: {done.stderr.decode().strip()}")
        mounted.append(target)
        subprocess.run(["mount", "-o", "remount,bind,ro", str(target)], check=True)
        return target

    yield view
    for target in mounted:
        subprocess.run(["umount", str(target)], check=False)


def test_a_read_only_cache_serves_its_complete_stores(tmp_path, tiny_bert_dir, read_only_view):
    from dataselect.errors import ConfigError

    pool, target = executor_pool(tmp_path)
    config = executor_config(tmp_path, "run", tiny_bert_dir, pool, target, {})
    first = dataselect.run(config, quiet=True)
    cache = read_only_view(tmp_path / "run" / "cache")
    again = dataselect.run(config.model_copy(update={"runtime": config.runtime.model_copy(update={"cache_dir": str(cache)})}), quiet=True)
    assert again.ids == first.ids and again.manifest["stages"]["pool"]["cache"] == "hit"
    other = executor_config(tmp_path, "other", tiny_bert_dir, pool, target, {"runtime.cache_dir": str(cache), "runtime.shard_size": 5})
    with pytest.raises(ConfigError, match=r"^config error: runtime.cache_dir: .* is read-only and does not hold this run's complete pool store"):
        dataselect.run(other, quiet=True)


# ---- the progress bar: a total for sources read in one pass, log lines above it, none for a quiet run ----

def _random_run_overrides(tmp_path: Path, pool: Path, **extra) -> dict:
    return {"input.path": str(pool), "method.name": "random", "method.budget": 5, "output.dir": str(tmp_path / "out"),
            "runtime.cache_dir": str(tmp_path / "cache"), "runtime.shard_size": 10, "runtime.num_workers": 0, **extra}


def _last_bar(err: str) -> str:
    return [part for part in err.replace("\n", "\r").split("\r") if "pool: " in part][-1]


@pytest.mark.parametrize("limit", [None, 120])
def test_a_compressed_pool_has_a_total_on_its_bar(tmp_path, capsys, limit):
    import gzip
    import json

    pool = tmp_path / "pool.jsonl.gz"
    with gzip.open(pool, "wt") as handle:
        handle.writelines(json.dumps({"id": f"r{i}", "text": f"sample number {i} " * (1 + i % 7)}) + "\n" for i in range(300))
    dataselect.run(dataselect.load_config(None, _random_run_overrides(tmp_path, pool, **{"input.limit": limit})), quiet=False)
    read = limit or 300
    assert f"{read}/{read}" in _last_bar(capsys.readouterr().err)


def test_the_library_run_is_quiet_by_default_bars_included(tmp_path, capsys):
    from support import write_jsonl

    pool = write_jsonl(tmp_path / "pool.jsonl", [{"id": f"r{i}", "text": f"text {i}"} for i in range(30)])
    dataselect.run(dataselect.load_config(None, _random_run_overrides(tmp_path, pool)))
    captured = capsys.readouterr()
    assert "pool: " not in captured.err and captured.out == ""


def test_a_bad_record_line_starts_its_own_line_when_stderr_is_a_file(tmp_path):
    import subprocess
    import sys

    from support import write_jsonl

    pool = write_jsonl(tmp_path / "pool.jsonl", [{"id": f"r{i}", "text": f"text {i}"} if i != 15 else '{"broken' for i in range(30)])
    sets = [arg for key, value in _random_run_overrides(tmp_path, pool).items() for arg in ("--set", f"{key}={value}")]
    with open(tmp_path / "stderr.txt", "w") as err:
        subprocess.run([sys.executable, "-m", "dataselect.cli", "run", *sets], stderr=err, stdout=subprocess.DEVNULL, check=True, timeout=300,
                       env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])})
    [line] = [line for line in (tmp_path / "stderr.txt").read_text().split("\n") if "skipped bad pool input" in line]
    assert line.split("\r")[-1].startswith("skipped bad pool input: pool.jsonl:16: malformed JSON")
