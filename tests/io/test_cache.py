"""`dataselect cache list|clean` (io/cache.py): every entry listed with its size and state; clean removes
what was asked (old, unfinished, or all) and never a store a running run holds."""
from __future__ import annotations

import fcntl
import os
import time

from support import write_jsonl

import dataselect
from dataselect.cli import main
from dataselect.io.cache import clean_cache, entries


def _cache(tmp_path):
    """A cache holding three pool stores of the random method (no model needed): a's and b's complete, c's
    left unfinished as an interrupted run leaves it."""
    for name in ("a", "b", "c"):
        pool = write_jsonl(tmp_path / f"{name}.jsonl", [{"id": f"{name}{i}", "text": f"text {name} {i}"} for i in range(12)])
        dataselect.run(dataselect.load_config(None, {"input.path": str(pool), "method.name": "random", "method.budget": 3,
                                                     "output.dir": str(tmp_path / f"out-{name}"), "runtime.cache_dir": str(tmp_path / "cache")}))
    by_source = {e.source: e for e in entries(tmp_path / "cache")}
    (by_source["c.jsonl"].path / "complete.json").unlink()
    return tmp_path / "cache", sorted(entries(tmp_path / "cache"), key=lambda e: e.source)


def test_list_shows_each_store_with_its_source_state_and_size(tmp_path, capsys):
    cache, stores = _cache(tmp_path)
    assert [(e.source, e.state) for e in stores] == [("a.jsonl", "complete"), ("b.jsonl", "complete"), ("c.jsonl", "partial")]
    assert main(["cache", "list", "--cache-dir", str(cache)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[1].split() == ["kind", "name", "source", "state", "size", "last", "used"]
    assert any(stores[0].path.name in line and "a.jsonl" in line and "complete" in line for line in out)
    assert out[-1].startswith("3 entries, ")


def test_clean_removes_the_partial_then_the_old_and_never_one_in_use(tmp_path, capsys):
    cache, (a, b, c) = _cache(tmp_path)
    assert main(["cache", "clean", "--partial", "--cache-dir", str(cache)]) == 0
    assert not c.path.exists() and a.path.exists() and b.path.exists()
    assert capsys.readouterr().out.splitlines()[-1].startswith("removed 1 entries")
    removed, _ = clean_cache(cache, older_than_days=1)
    assert removed == []  # both were used a moment ago
    old = time.time() - 3 * 86400
    for path in a.path.rglob("*"):
        os.utime(path, (old, old))
    for path in b.path.rglob("*"):
        os.utime(path, (old, old))
    with open(b.path / ".lock", "a+") as held:  # a running run holds b
        fcntl.flock(held, fcntl.LOCK_EX)
        assert main(["cache", "clean", "--older-than", "2", "--dry-run", "--cache-dir", str(cache)]) == 0
        assert a.path.exists() and "would remove 1 entries" in capsys.readouterr().out
        removed, busy = clean_cache(cache, older_than_days=2)
    assert [e.path for e in removed] == [a.path] and [e.path for e in busy] == [b.path] and b.path.exists()
    clean_cache(cache)
    assert entries(cache) == [] and (cache / "CACHEDIR.TAG").exists()


def test_a_cache_in_s3_lists_its_stores_and_cleans_the_unfinished_one_with_its_mirror(tmp_path, s3, monkeypatch, capsys):
    import fsspec

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "machine"))  # the cache URL's local mirror
    for name in ("a", "b"):
        pool = write_jsonl(tmp_path / f"{name}.jsonl", [{"id": f"{name}{i}", "text": f"text {name} {i}"} for i in range(12)])
        dataselect.run(dataselect.load_config(None, {"input.path": str(pool), "method.name": "random", "method.budget": 3, "runtime.progress": False,
                                                     "output.dir": str(tmp_path / f"out-{name}"), "runtime.cache_dir": "s3://bucket/cache"}))
    by_source = {e.source: e for e in entries("s3://bucket/cache")}
    fsspec.filesystem("s3").rm_file(f"{by_source['b.jsonl'].path}/complete.json")  # as an interrupted run leaves it
    assert by_source["b.jsonl"].local.is_dir()
    assert main(["cache", "list", "--cache-dir", "s3://bucket/cache"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "s3://bucket/cache:" and out[-1].startswith("2 entries, ")
    assert any("a.jsonl" in line and "complete" in line for line in out) and any("b.jsonl" in line and "partial" in line for line in out)
    assert main(["cache", "clean", "--partial", "--cache-dir", "s3://bucket/cache"]) == 0
    assert [e.source for e in entries("s3://bucket/cache")] == ["a.jsonl"] and not by_source["b.jsonl"].local.exists()
    assert [e.state for e in entries(tmp_path / "machine" / "dataselect")] == ["mirror"]  # the local default cache: the URL's folder
