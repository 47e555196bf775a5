"""The selected-rows files (output.write): every selected row, every field, any input format."""
from __future__ import annotations

import datetime
import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from support import write_jsonl

from dataselect.config import build_config
from dataselect.errors import OutputError
from dataselect.io import outputs
from dataselect.io.plan import iter_raw_records
from dataselect.io.samples import sample_id
from dataselect.select.base import Selection


def _write(tmp_path, input_path, positions, fmt, **selection):
    config = build_config({"input": {"path": str(input_path)}, "method": {"name": "random", "budget": 1.0},
                           "output": {"dir": str(tmp_path / "out"), "write": fmt}})
    raws = {raw.position: raw for raw in iter_raw_records(config.input)}
    ids = [sample_id(config.input, raws[p]) for p in positions]  # the ids the score phase gave these records
    chosen = Selection(ids=ids, scores=np.arange(len(positions), 0, -1, dtype=np.float64), positions=np.array(positions), **selection)
    return outputs.write_selected_rows(tmp_path / "out", config, chosen, progress=False)


def test_parquet_keeps_fields_that_appear_only_in_later_rows_and_parts(tmp_path, monkeypatch):
    monkeypatch.setattr(outputs, "PARQUET_PART_ROWS", 3)  # several parts from a few rows
    records = [{"text": f"t{i}", "meta": None} for i in range(5)] + [{"text": "t5", "meta": "x", "source": "wiki"}, {"text": "t6", "year": 2020}]
    path = _write(tmp_path, write_jsonl(tmp_path / "in.jsonl", records), list(range(7)), "parquet")
    table = pq.read_table(path)
    assert table.column_names == ["id", "text", "meta", "rank", "score", "source", "year"]  # id: the selection's, for records without one
    assert table.column("meta").to_pylist() == [None] * 5 + ["x", None]
    assert table.column("source").to_pylist() == [None] * 5 + ["wiki", None]
    assert table.column("year").to_pylist() == [None] * 6 + [2020]
    assert table.column("rank").to_pylist() == list(range(7))
    assert not list((tmp_path / "out").glob("*.parts.*"))  # the parts are cleaned up


@pytest.mark.parametrize("values", [[1, "one"], [{}, {}], [2**64, 1]], ids=["two types", "always-empty dict", "huge int"])
def test_fields_parquet_cannot_hold_are_a_one_line_error(tmp_path, values):
    path = write_jsonl(tmp_path / "in.jsonl", [{"text": "a", "n": values[0]}, {"text": "b", "n": values[1]}])
    with pytest.raises(OutputError, match="output.write: jsonl") as error:
        _write(tmp_path, path, [0, 1], "parquet")
    assert "\n" not in str(error.value) and "'n'" in str(error.value)  # the field is named
    assert not list((tmp_path / "out").iterdir())  # no half-written file


def test_a_field_whose_type_differs_between_parts_is_named(tmp_path, monkeypatch):
    monkeypatch.setattr(outputs, "PARQUET_PART_ROWS", 2)  # ints in the first part, strings in the second
    path = write_jsonl(tmp_path / "in.jsonl", [{"text": "a", "meta": 1}, {"text": "b", "meta": 2}, {"text": "c", "meta": "x"}])
    with pytest.raises(OutputError, match=r"field 'meta' does not fit one parquet column \(it is int64 in some rows and string in others\)"):
        _write(tmp_path, path, [0, 1, 2], "parquet")
    with pytest.raises(OutputError, match=r"field 'meta' does not fit one parquet column \(its values are int and str\)"):
        monkeypatch.setattr(outputs, "PARQUET_PART_ROWS", 4096)
        _write(tmp_path, path, [0, 1, 2], "parquet")


def test_jsonl_writes_parquet_input_types(tmp_path):
    when = datetime.datetime(2024, 5, 1, 12, 30)
    pq.write_table(pa.table({"text": ["a", "b"], "when": [when, when], "blob": [b"\x00\x01", b""]}), tmp_path / "in.parquet")
    rows = [json.loads(line) for line in _write(tmp_path, tmp_path / "in.parquet", [1, 0], "jsonl").read_text().splitlines()]
    assert rows[0] == {"id": "in.parquet:1", "text": "a", "when": "2024-05-01T12:30:00", "blob": "AAE=", "rank": 1, "score": 1.0}
    assert rows[1]["rank"] == 0 and rows[1]["text"] == "b"


def test_chunked_rows_use_the_methods_own_cut(tmp_path):
    path = write_jsonl(tmp_path / "in.jsonl", [{"text": "one two three four five"}])
    selection = {"columns": {"chunk": [1, 0]}, "chunker": lambda record: ["<" + w + ">" for w in record["text"].split(" ", 1)]}
    rows = [json.loads(line) for line in _write(tmp_path, path, [0, 0], "jsonl", **selection).read_text().splitlines()]
    assert [(r["chunk"], r["chunk_text"], r["rank"]) for r in rows] == [(0, "<one>", 1), (1, "<two three four five>", 0)]


def test_an_inputs_own_rank_and_score_are_kept_apart(tmp_path):
    path = write_jsonl(tmp_path / "in.jsonl", [{"text": "a", "score": 0.5, "rank": "high", "input_rank": 7}, {"text": "b"}])
    rows = [json.loads(line) for line in _write(tmp_path, path, [0, 1], "jsonl").read_text().splitlines()]
    assert rows == [{"id": "in.jsonl:1", "text": "a", "input_score": 0.5, "input_input_rank": "high", "input_rank": 7, "rank": 0, "score": 2.0},
                    {"id": "in.jsonl:2", "text": "b", "rank": 1, "score": 1.0}]


def test_a_record_that_is_not_the_one_scored_stops_the_write(tmp_path):
    """Two lines swapped after scoring (same size, time restored, so the store still matches the key): the
    positions now hold other records, and writing them under the scored ids would mislabel every row."""
    path = write_jsonl(tmp_path / "in.jsonl", [{"id": "a1", "text": "one"}, {"id": "b2", "text": "two"}])
    config = build_config({"input": {"path": str(path)}, "method": {"name": "random"}, "output": {"dir": str(tmp_path / "out"), "write": "jsonl"}})
    swapped = Selection(ids=["b2"], scores=np.ones(1), positions=np.array([0]))  # the store says position 0 held b2
    with pytest.raises(OutputError, match=r"in.jsonl:1 holds id 'a1' where the scored pool had 'b2'") as error:
        outputs.write_selected_rows(tmp_path / "out", config, swapped, progress=False)
    assert "\n" not in str(error.value) and not (tmp_path / "out" / "selected.jsonl").exists()


def test_swapped_lines_with_the_time_restored_are_scored_again_end_to_end(tmp_path):
    import os

    import dataselect

    rows = [{"id": f"r{i}", "text": f"text number {i}"} for i in range(10, 30)]  # every line the same length
    path = write_jsonl(tmp_path / "in.jsonl", rows)
    overrides = {"input.path": str(path), "method.name": "random", "method.budget": 20, "output.write": "jsonl",
                 "output.dir": str(tmp_path / "out"), "runtime.cache_dir": str(tmp_path / "cache"), "runtime.progress": False}
    dataselect.run(dataselect.load_config(None, overrides))
    stat = path.stat()
    write_jsonl(path, [rows[1], rows[0], *rows[2:]])
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))  # size and modification time as the store's key had them
    again = dataselect.run(dataselect.load_config(None, overrides))  # the change time and content hash tell: scored again
    assert again.manifest["stages"]["pool"]["cache"] == "miss"
    written = [json.loads(line)["id"] for line in (tmp_path / "out" / "selected.jsonl").read_text().splitlines()]
    assert sorted(written) == sorted(again.ids)  # rows in input order, each under its own id (the writer checks)


@pytest.mark.parametrize("write", ["jsonl", "parquet"])
def test_ids_of_every_type_read_the_same_in_the_selection_and_the_rows(tmp_path, write):
    import dataselect

    lines = ['{"id": [1, 2], "text": "a list id"}', '{"id": {"a": 1}, "text": "an object id"}', '{"id": null, "text": "a null id"}',
             '{"id": NaN, "text": "a NaN id"}', '{"id": true, "text": "a boolean id"}', '{"id": 7, "text": "a number id"}',
             '{"id": "s", "text": "a string id"}', '{"text": "no id"}']
    if write == "parquet":  # an integer id beside the generated text ids would not fit one parquet column
        lines[5] = '{"id": "7", "text": "a number id"}'
    path = tmp_path / "in.jsonl"
    path.write_text("\n".join(lines) + "\n")
    overrides = {"input.path": str(path), "method.name": "random", "method.budget": 1.0, "output.write": write,
                 "output.dir": str(tmp_path / "out"), "runtime.cache_dir": str(tmp_path / "cache"), "runtime.progress": False}
    result = dataselect.run(dataselect.load_config(None, overrides))
    selected = pq.read_table(tmp_path / "out" / "selection.parquet").column("id").to_pylist()
    if write == "jsonl":
        text = (tmp_path / "out" / "selected.jsonl").read_text()
        rows = [json.loads(line, parse_constant=lambda name: pytest.fail(f"{name} in selected.jsonl")) for line in text.splitlines()]
    else:
        rows = pq.read_table(tmp_path / "out" / "selected.parquet").to_pylist()
    assert sorted(str(row["id"]) for row in rows) == sorted(selected) == sorted(result.ids)
    assert {"in.jsonl:1", "in.jsonl:2", "in.jsonl:3", "in.jsonl:4", "in.jsonl:5", "7", "s", "in.jsonl:8"} == set(selected)
