"""Shard plans: every planned shard opens on its own and, read one after another, the shards give
exactly the records of a plain sequential parse (lines, positions, bad records), whatever the file's
quirks; boundaries depend only on the files, the shard size and the limit."""
from __future__ import annotations

import gzip
import json
import pickle

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from dataselect.config import SourceConfig
from dataselect.io import plan
from dataselect.io.plan import plan_shards
from dataselect.io.readers import read_spec
from dataselect.io.shards import ShardStore
from dataselect.stats import SourceStats

QUIRKY = (
    b"\xef\xbb\xbf" + json.dumps({"id": "a", "text": "first, after a byte-order mark"}).encode() + b"\r\n"
    + b"\n   \n\t\r\n"  # blank and whitespace-only lines hold no record
    + b'{"id": "b", "text": "crlf line"}\r\n'
    + b'{"id": "c", "text": "unterminated\n'  # a malformed line is still a record (a bad one)
    + b"".join(json.dumps({"id": f"n{i}", "text": f"number {i}"}).encode() + b"\n" + (b"\n" if i % 3 == 0 else b"") for i in range(23))
    + b'{"id": "last", "text": "no newline at the end"}'
)


def _sequential(data: bytes, label: str) -> list[tuple]:
    """The reference: a plain line-by-line parse (what the engine read before plans existed)."""
    out = []
    for number, raw in enumerate(data.split(b"\n"), start=1):
        raw = raw.removeprefix(b"\xef\xbb\xbf") if number == 1 else raw
        if raw.strip():
            try:
                out.append((label, number, json.loads(raw), None))
            except json.JSONDecodeError:
                out.append((label, number, None, "bad"))
    return out


def _read(config: SourceConfig, shard_size: int) -> tuple[list, list]:
    specs = list(plan_shards(config, shard_size))
    records = [(r.file, r.line, r.record, None if r.error is None else "bad", r.position) for spec in specs for r in read_spec(spec)]
    return specs, records


@pytest.mark.parametrize("shard_size", [1, 4, 7, 100])
@pytest.mark.parametrize("scan_bytes", [5, 64, 1 << 20])
def test_jsonl_shards_read_back_the_sequential_parse(tmp_path, monkeypatch, shard_size, scan_bytes):
    monkeypatch.setattr(plan, "SCAN_BYTES", scan_bytes)  # records straddle the scan's blocks
    (tmp_path / "a.jsonl").write_bytes(QUIRKY)
    (tmp_path / "b.jsonl").write_bytes(b'{"id": "b0", "text": "second file"}\n\n{"id": "b1", "text": "x"}\n')
    specs, records = _read(SourceConfig(path=str(tmp_path)), shard_size)
    expected = _sequential(QUIRKY, "a.jsonl") + _sequential((tmp_path / "b.jsonl").read_bytes(), "b.jsonl")
    assert [r[:4] for r in records] == expected
    assert [r[4] for r in records] == list(range(len(expected)))  # positions run on across files
    assert all(s.kind == "jsonl" and s.records is None for s in specs)  # opened by byte range, nothing inline
    per_file = {label: [s.count for s in specs if s.label == label] for label in ("a.jsonl", "b.jsonl")}
    for counts in per_file.values():  # full shards, the last of each file may be short; no shard spans files
        assert all(c == shard_size for c in counts[:-1]) and 0 < counts[-1] <= shard_size
    assert [s.index for s in specs] == list(range(len(specs)))


@pytest.mark.parametrize("limit", [1, 5, 26, 27, 29, 1000])
def test_a_limit_cuts_the_plan_at_that_many_records(tmp_path, limit):
    (tmp_path / "a.jsonl").write_bytes(QUIRKY)
    (tmp_path / "b.jsonl").write_bytes(b'{"id": "b0", "text": "second file"}\n{"id": "b1", "text": "x"}\n')
    _, everything = _read(SourceConfig(path=str(tmp_path)), 4)
    specs, records = _read(SourceConfig(path=str(tmp_path), limit=limit), 4)
    assert records == everything[:limit]
    assert sum(s.count for s in specs) == len(records)


def test_each_shard_opens_alone_in_any_order(tmp_path):
    (tmp_path / "a.jsonl").write_bytes(QUIRKY)
    specs = list(plan_shards(SourceConfig(path=str(tmp_path / "a.jsonl")), 3))
    forward = [list(read_spec(s)) for s in specs]
    backward = [list(read_spec(s)) for s in reversed(specs)][::-1]
    assert forward == backward and all(len(f) == s.count for f, s in zip(forward, specs))


def test_compressed_jsonl_is_planned_in_one_sequential_pass(tmp_path):
    (tmp_path / "a.jsonl").write_bytes(QUIRKY)
    with gzip.open(tmp_path / "z.jsonl.gz", "wb") as handle:
        handle.write(QUIRKY)
    _, plain = _read(SourceConfig(path=str(tmp_path / "a.jsonl")), 5)
    specs, zipped = _read(SourceConfig(path=str(tmp_path / "z.jsonl.gz")), 5)
    assert all(s.kind == "records" for s in specs)  # the records travel with the spec ...
    assert all(r.record is None and r.raw is not None for s in specs for r in s.records)  # ... as their lines: the worker parses them
    assert [r[1:] for r in zipped] == [r[1:] for r in plain]
    travelled = [pickle.loads(pickle.dumps(s)) for s in specs]  # what a worker process receives
    assert [(r.file, r.line, r.record, None if r.error is None else "bad", r.position) for s in travelled for r in read_spec(s)] == zipped


def test_parquet_row_ranges_read_only_their_rows(tmp_path):
    rows = [{"id": f"r{i}", "text": f"row {i}"} for i in range(50)]
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "p.parquet", row_group_size=8)  # ranges cross row groups
    specs, records = _read(SourceConfig(path=str(tmp_path / "p.parquet")), 6)
    assert [s.count for s in specs] == [6] * 8 + [2]
    assert [r[2] for r in records] == rows and [r[1] for r in records] == list(range(1, 51))


def test_save_to_disk_index_ranges(tmp_path):
    datasets = pytest.importorskip("datasets")
    rows = [{"id": f"h{i}", "text": f"record {i}"} for i in range(11)]
    datasets.Dataset.from_list(rows).save_to_disk(str(tmp_path / "saved"))
    specs, records = _read(SourceConfig(path=str(tmp_path / "saved")), 4)
    assert [(s.kind, s.start, s.stop) for s in specs] == [("hf-disk", 0, 4), ("hf-disk", 4, 8), ("hf-disk", 8, 11)]
    assert [r[2] for r in records] == rows


def test_a_complete_store_serves_columns_and_rows_from_one_consolidated_file(tmp_path):
    store = ShardStore(tmp_path / "store")
    for index in range(5):
        ids = [f"s{index}-{i}" for i in range(index + 1)]  # shards of 1..5 rows
        store.write_shard(index, pa.table({"id": ids, "n": list(range(len(ids)))}), SourceStats("pool"))
    store.complete(5, {})
    for index in range(5):  # the select phase never needs the per-shard metadata again
        (tmp_path / "store" / f"shard-{index:06d}.meta.parquet").unlink()
    assert store.column("id").to_pylist()[:4] == ["s0-0", "s1-0", "s1-1", "s2-0"]
    assert store.rows().tolist() == [1, 2, 3, 4, 5]
    assert store.take([14, 0, 3, 13], ["id", "n"]) == {"id": ["s4-4", "s0-0", "s2-0", "s4-3"], "n": [4, 0, 0, 3]}
    assert store.read_meta(3, ["id"]).column("id").to_pylist() == ["s3-0", "s3-1", "s3-2", "s3-3"]


def test_lines_many_blocks_long_are_planned_as_the_sequential_parse(tmp_path, monkeypatch):
    monkeypatch.setattr(plan, "SCAN_BYTES", 64)  # each long line spans about twenty blocks
    data = (b" " * 1300 + b"\n" + json.dumps({"id": "long", "text": "word " * 260}).encode() + b"\n\t\n"
            + b'{"id": "short", "text": "after"}\n' + b"\r" * 700 + b'{"id": "tail", "text": "' + b"y" * 900 + b'"}')
    (tmp_path / "a.jsonl").write_bytes(data)
    _, records = _read(SourceConfig(path=str(tmp_path / "a.jsonl")), 2)
    assert [r[:4] for r in records] == _sequential(data, "a.jsonl") and [r[1] for r in records] == [2, 4, 5]
