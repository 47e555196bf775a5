import gzip
import json

import pytest
from support import source_samples, write_jsonl

from dataselect.config import SourceConfig
from dataselect.errors import InputError
from dataselect.io.plan import iter_raw_records


def test_hf_save_to_disk_folder(tmp_path):
    import datasets

    datasets.Dataset.from_dict({"text": ["alpha", "beta"]}).save_to_disk(str(tmp_path / "saved"))
    for path in [str(tmp_path / "saved"), f"hf:{tmp_path / 'saved'}"]:
        samples, _ = source_samples(SourceConfig(path=path))
        assert [s.text for s in samples] == ["alpha", "beta"]
        assert samples[1].id.endswith(":2")
    datasets.DatasetDict({"test": datasets.Dataset.from_dict({"text": ["gamma"]})}).save_to_disk(str(tmp_path / "dd"))
    samples, _ = source_samples(SourceConfig(path=f"hf:{tmp_path / 'dd'}:test"))
    assert [s.text for s in samples] == ["gamma"]


def test_bad_records_are_counted_with_file_and_line(tmp_path):
    path = tmp_path / "pool.jsonl"
    write_jsonl(path, [{"text": "fine"}, '{"text": "broken', {"text": "   "}, {"other": 1}, {"text": "word " * 100_000}, {"text": "also fine"}])
    with open(path, "ab") as handle:
        handle.write(b'{"text": "\xff\xfe"}\n')
        handle.write(b'{"text": "lone \\ud800 surrogate"}\n{"text": "a pair \\ud83d\\ude00 is fine"}\n{"id": "\\udfff", "text": "bad id"}\n')
        handle.write(b'{"text": "fine text", "meta": {"note": "x\\uDBFF"}}\n')
    samples, stats = source_samples(SourceConfig(path=str(path), text_field="text"))
    assert [s.text for s in samples] == ["fine", "also fine", "a pair \U0001F600 is fine"]
    assert stats.read == 11 and stats.skipped == 8
    reasons = {b.line: b.reason for b in stats.bad}
    assert reasons[2].startswith("malformed JSON")
    assert reasons[3] == "empty text"
    assert reasons[4] == "missing field 'text' (the record has: 'other')"
    assert reasons[5].startswith("over-long")
    assert reasons[7] == "not valid UTF-8"
    assert reasons[8] == "a lone surrogate ('\\ud800') in a string, not valid Unicode"
    assert reasons[10] == "a lone surrogate ('\\udfff') in a string, not valid Unicode"
    assert reasons[11] == "a lone surrogate ('\\udbff') in a string, not valid Unicode"  # any field, nested too
    assert all(b.file == "pool.jsonl" for b in stats.bad)


def test_fail_mode_stops_with_file_and_line(tmp_path):
    path = write_jsonl(tmp_path / "pool.jsonl", [{"text": "fine"}, '{"text": oops}'])
    with pytest.raises(InputError, match=r"pool.jsonl:2: malformed JSON"):
        source_samples(SourceConfig(path=str(path), on_error="fail"))


def test_a_byte_order_mark_does_not_cost_the_first_record(tmp_path):
    path = tmp_path / "bom.jsonl"
    path.write_bytes(b'\xef\xbb\xbf{"text": "first"}\n{"text": "second"}\n')
    samples, stats = source_samples(SourceConfig(path=str(path)))
    assert [s.text for s in samples] == ["first", "second"] and stats.skipped == 0


def test_hf_folder_with_a_split_it_does_not_have_is_one_line(tmp_path):
    import datasets

    from dataselect.errors import ConfigError

    datasets.DatasetDict({"train": datasets.Dataset.from_dict({"text": ["a"]})}).save_to_disk(str(tmp_path / "dd"))
    with pytest.raises(ConfigError, match=r"has no split 'nosplit'; it holds \['train'\]"):
        list(iter_raw_records(SourceConfig(path=f"hf:{tmp_path / 'dd'}:nosplit")))


ROWS = [{"id": f"r{i}", "text": f"record number {i}"} for i in range(40)]


def _compressed(path, data: bytes) -> None:
    import bz2
    import lzma

    import zstandard

    openers = {".gz": gzip.compress, ".bz2": lambda d: bz2.compress(d, 1),  # 100k blocks: a cut file has whole ones
                ".xz": lzma.compress, ".zst": zstandard.ZstdCompressor().compress}
    path.write_bytes(openers[path.suffix](data))


@pytest.mark.parametrize("suffix", [".gz", ".bz2", ".xz", ".zst"])
def test_compressed_jsonl_reads_and_plans_sequentially(tmp_path, suffix):
    from dataselect.io.plan import plan_shards

    data = "".join(json.dumps(r) + "\n" for r in ROWS).encode()
    path = tmp_path / f"pool.jsonl{suffix}"
    _compressed(path, data)
    samples, stats = source_samples(SourceConfig(path=str(path)))
    assert [s.id for s in samples] == [r["id"] for r in ROWS] and stats.skipped == 0
    assert {spec.kind for spec in plan_shards(SourceConfig(path=str(path)), 16)} == {"records"}


@pytest.mark.parametrize("suffix", [".gz", ".bz2", ".xz", ".zst"])
def test_a_damaged_compressed_file_is_one_bad_input_where_it_broke(tmp_path, suffix):
    import random

    rng = random.Random(0)
    rows = [{"text": "".join(rng.choice("abcdefghij ") for _ in range(80))} for _ in range(3000)]  # does not compress away
    whole = tmp_path / f"whole.jsonl{suffix}"
    _compressed(whole, "".join(json.dumps(r) + "\n" for r in rows).encode())
    cut = tmp_path / "cut" / f"pool.jsonl{suffix}"
    cut.parent.mkdir()
    cut.write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])
    write_jsonl(tmp_path / "cut" / "zz_after.jsonl", [{"text": "the next file is read"}])
    samples, stats = source_samples(SourceConfig(path=str(tmp_path / "cut")))
    damaged = [b for b in stats.bad if b.reason.startswith("damaged compressed file")]
    assert len(damaged) == 1 and damaged[0].file == f"pool.jsonl{suffix}"
    assert 100 < damaged[0].line < 3000  # where it broke: after the lines that could be read
    assert samples[-1].text == "the next file is read" and len(samples) >= damaged[0].line - 2
    with pytest.raises(InputError, match=rf"^input error: pool.jsonl{suffix}:\d+: damaged compressed file: .*set input.on_error: skip"):
        source_samples(SourceConfig(path=str(cut), on_error="fail"))


def test_a_json_array_file_is_read_whole(tmp_path):
    from dataselect.io.plan import plan_shards

    alpaca = [{"instruction": "Add 2 and 3.", "input": "", "output": "5"}, {"instruction": "Name a colour.", "output": "Blue"}, 7]
    path = tmp_path / "alpaca.json"
    path.write_text("\ufeff  \n" + json.dumps(alpaca, indent=2), encoding="utf-8")
    samples, stats = source_samples(SourceConfig(path=str(path)))
    assert [s.text for s in samples] == ["Add 2 and 3.\n\n5", "Name a colour.\n\nBlue"]
    assert [s.id for s in samples] == ["alpaca.json:3", "alpaca.json:8"]  # the line each element starts on
    assert [(b.line, b.reason) for b in stats.bad] == [(12, "not a JSON object")]
    assert {spec.kind for spec in plan_shards(SourceConfig(path=str(path)), 1)} == {"records"}
    broken = tmp_path / "broken.json"
    broken.write_text('[{"text": "fine"},\n {"text": oops}]')
    samples, stats = source_samples(SourceConfig(path=str(broken)))
    assert [s.text for s in samples] == ["fine"] and stats.bad[0].line == 2 and stats.bad[0].reason.startswith("malformed JSON array")
    lines = tmp_path / "lines.json"  # a .json file of JSON Lines stays JSON Lines
    write_jsonl(lines, [{"text": "a"}, {"text": "b"}])
    assert [s.text for s in source_samples(SourceConfig(path=str(lines)))[0]] == ["a", "b"]


def test_standard_input_is_read_as_json_lines_or_an_array(monkeypatch):
    import io
    import sys

    for payload in [b'{"text": "one"}\n\n{"text": "two"}\n', b'[{"text": "one"}, {"text": "two"}]']:
        monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BufferedReader(io.BytesIO(payload))))
        samples, _ = source_samples(SourceConfig(path="-"))
        assert [(s.text, s.id) for s in samples] == [("one", "stdin:1"), ("two", "stdin:" + ("3" if b"\n\n" in payload else "1"))]


def test_hf_remote_names_with_a_config(monkeypatch):
    import datasets

    calls = []
    monkeypatch.setattr(datasets, "load_dataset", lambda name, config=None, split=None, streaming=False:
                        calls.append((name, config, split, streaming)) or iter([{"text": "streamed"}]))
    for path in ["hf:org/set", "hf:org/set:test", "hf:org/set:main:validation"]:
        samples, _ = source_samples(SourceConfig(path=path))
        assert [s.text for s in samples] == ["streamed"]
    assert calls == [("org/set", None, "train", True), ("org/set", None, "test", True), ("org/set", "main", "validation", True)]
    from dataselect.errors import ConfigError

    with pytest.raises(ConfigError, match="hf:NAME:CONFIG:SPLIT"):
        source_samples(SourceConfig(path="hf:a:b:c:d"))


# ------------------------------------------------------------------------------------------------
# records a JSON parser gives up on, and lines too long to read: each one bad record
# ------------------------------------------------------------------------------------------------

DEEP = "[" * 100_000  # RecursionError in json.loads
HUGE_INT = '{"text": "a number", "n": ' + "7" * 5000 + "}"  # ValueError: more digits than int() converts


@pytest.mark.parametrize("suffix", [".jsonl", ".jsonl.gz"])
def test_a_record_the_parser_gives_up_on_is_one_bad_record(tmp_path, suffix):
    lines = ['{"text": "before"}', DEEP, HUGE_INT, '{"text": "after"}']
    path = tmp_path / f"pool{suffix}"
    opener = gzip.open if suffix.endswith(".gz") else open
    with opener(path, "wt") as handle:
        handle.write("\n".join(lines) + "\n")
    samples, stats = source_samples(SourceConfig(path=str(path)))
    assert [s.text for s in samples] == ["before", "after"] and stats.skipped == 2
    assert {b.line: b.reason for b in stats.bad} == {2: "malformed JSON (nested too deeply to parse)",
                                                     3: "malformed JSON (Exceeds the limit (4300 digits) for integer string conversion: value has 5000 digits)"}
    with pytest.raises(InputError, match=r"pool.jsonl(.gz)?:2: malformed JSON \(nested too deeply"):
        source_samples(SourceConfig(path=str(path), on_error="fail"))


def test_a_json_array_the_parser_gives_up_in_is_one_bad_record_and_its_end(tmp_path):
    path = tmp_path / "pool.json"
    path.write_text('[{"text": "first"},\n' + HUGE_INT + ',\n{"text": "not reached"}]')
    samples, stats = source_samples(SourceConfig(path=str(path)))
    assert [s.text for s in samples] == ["first"] and [(b.line, b.reason.split(" (")[0]) for b in stats.bad] == [(2, "malformed JSON array")]


@pytest.mark.parametrize("suffix", [".jsonl", ".jsonl.gz"])
def test_a_line_longer_than_max_chars_allows_is_skipped_unparsed(tmp_path, suffix):
    from dataselect.io.readers import line_byte_limit

    limit = line_byte_limit(10)
    long_line = json.dumps({"text": "x" * (limit + 10)})
    path = tmp_path / f"pool{suffix}"
    opener = gzip.open if suffix.endswith(".gz") else open
    with opener(path, "wt") as handle:
        handle.write('{"text": "short"}\n' + long_line + '\n{"text": "also short"}\n')
    samples, stats = source_samples(SourceConfig(path=str(path), max_chars=10))
    assert [s.text for s in samples] == ["short", "also short"]
    assert [(b.line, b.reason) for b in stats.bad] == [
        (2, f"over-long line ({len(long_line) + 1:,} bytes, more than the {limit:,} input.max_chars allows); not parsed")]

