import gzip
import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from support import write_jsonl

from dataselect.config import SourceConfig
from dataselect.errors import InputError
from dataselect.io.plan import iter_raw_records, iter_samples
from dataselect.io.render import TextRenderer, tulu_format
from dataselect.io.sources import text_hash
from dataselect.stats import SourceStats


def _samples(config, tokenizer=None, causal_lm=False):
    stats = SourceStats("pool")
    return list(iter_samples(config, TextRenderer(config, tokenizer, causal_lm), stats)), stats


def test_jsonl_gz_parquet_directory_and_glob_read_in_stable_order(tmp_path):
    write_jsonl(tmp_path / "d" / "a.jsonl", [{"text": "one"}, {"text": "two"}])
    with gzip.open(tmp_path / "d" / "b.jsonl.gz", "wt") as handle:
        handle.write(json.dumps({"text": "three"}) + "\n")
    pq.write_table(pa.table({"text": ["four", "five"], "id": ["x4", "x5"]}), tmp_path / "d" / "c.parquet")
    for path in [str(tmp_path / "d"), str(tmp_path / "d" / "*")]:
        samples, stats = _samples(SourceConfig(path=path))
        assert [s.text for s in samples] == ["one", "two", "three", "four", "five"]
        # samples without an id get one from file and line; parquet ids are kept
        assert [s.id for s in samples] == ["a.jsonl:1", "a.jsonl:2", "b.jsonl.gz:1", "x4", "x5"]
        assert stats.read == 5 and stats.skipped == 0


def test_hf_save_to_disk_folder(tmp_path):
    import datasets

    datasets.Dataset.from_dict({"text": ["alpha", "beta"]}).save_to_disk(str(tmp_path / "saved"))
    for path in [str(tmp_path / "saved"), f"hf:{tmp_path / 'saved'}"]:
        samples, _ = _samples(SourceConfig(path=path))
        assert [s.text for s in samples] == ["alpha", "beta"]
        assert samples[1].id.endswith(":2")
    datasets.DatasetDict({"test": datasets.Dataset.from_dict({"text": ["gamma"]})}).save_to_disk(str(tmp_path / "dd"))
    samples, _ = _samples(SourceConfig(path=f"hf:{tmp_path / 'dd'}:test"))
    assert [s.text for s in samples] == ["gamma"]


def test_bad_records_are_counted_with_file_and_line(tmp_path):
    path = tmp_path / "pool.jsonl"
    write_jsonl(path, [{"text": "fine"}, '{"text": "broken', {"text": "   "}, {"other": 1}, {"text": "word " * 100_000}, {"text": "also fine"}])
    with open(path, "ab") as handle:
        handle.write(b'{"text": "\xff\xfe"}\n')
        handle.write(b'{"text": "lone \\ud800 surrogate"}\n{"text": "a pair \\ud83d\\ude00 is fine"}\n{"id": "\\udfff", "text": "bad id"}\n')
        handle.write(b'{"text": "fine text", "meta": {"note": "x\\uDBFF"}}\n')
    samples, stats = _samples(SourceConfig(path=str(path), text_field="text"))
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
        _samples(SourceConfig(path=str(path), on_error="fail"))


def test_missing_path_is_an_input_error(tmp_path):
    with pytest.raises(InputError, match="no input files"):
        list(iter_raw_records(SourceConfig(path=str(tmp_path / "missing*.jsonl"))))


def test_rendering_of_pairs_and_messages(tmp_path):
    rows = [
        {"prompt": "What is 2+2?", "response": "4"},
        {"messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"}]},
        {"text": "plain"},
    ]
    path = write_jsonl(tmp_path / "mix.jsonl", rows)
    samples, _ = _samples(SourceConfig(path=str(path)), causal_lm=True)  # auto for a causal LM: the Tulu form
    assert samples[0].text == "<|user|>\nWhat is 2+2?\n<|assistant|>\n4"
    assert samples[1].text == "<|system|>\nBe brief.\n<|user|>\nHi\n<|assistant|>\nHello"
    assert samples[2].text == "plain"
    for config in (SourceConfig(path=str(path), render="plain"), SourceConfig(path=str(path))):  # auto for an encoder: plain
        plain, _ = _samples(config)
        assert [s.text for s in plain] == ["What is 2+2?\n\n4", "Be brief.\n\nHi\n\nHello", "plain"]


def test_chat_template_is_used_when_the_tokenizer_has_one(tmp_path):
    class Tokenizer:
        chat_template = "{% for m in messages %}[{{ m.role }}]{{ m.content }}{% endfor %}"
        eos_token = "</s>"

        def apply_chat_template(self, messages, tokenize=False):
            return "".join(f"[{m['role']}]{m['content']}" for m in messages)

    path = write_jsonl(tmp_path / "chat.jsonl", [{"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Yo"}]}])
    samples, _ = _samples(SourceConfig(path=str(path)), Tokenizer())
    assert samples[0].text == "[user]Hi[assistant]Yo"


def test_tulu_eos_and_text_hash():
    assert tulu_format([{"role": "user", "content": " q "}, {"role": "assistant", "content": "a"}], "</s>") == "<|user|>\nq\n<|assistant|>\na</s>"
    assert text_hash("abc") == text_hash("abc") != text_hash("abd")


def test_a_byte_order_mark_does_not_cost_the_first_record(tmp_path):
    path = tmp_path / "bom.jsonl"
    path.write_bytes(b'\xef\xbb\xbf{"text": "first"}\n{"text": "second"}\n')
    samples, stats = _samples(SourceConfig(path=str(path)))
    assert [s.text for s in samples] == ["first", "second"] and stats.skipped == 0


def test_a_file_name_that_is_not_utf8_gives_printable_ids(tmp_path):
    import os

    folder = tmp_path / "pool"
    folder.mkdir()
    (folder / os.fsdecode(b"part\xff.jsonl")).write_text('{"text": "one"}\n', encoding="utf-8")
    samples, stats = _samples(SourceConfig(path=str(folder)))
    assert [s.id for s in samples] == ["part\\xff.jsonl:1"] and stats.skipped == 0
    samples[0].id.encode("utf-8")  # what Arrow needs


# ------------------------------------------------------------------------------------------------
# what a directory or glob yields (issue 9, bug 3)
# ------------------------------------------------------------------------------------------------


def _manifest(folder):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "manifest.json").write_text(json.dumps({"config": {}, "versions": {"dataselect": "0.1.0"}}))
    pq.write_table(pa.table({"id": ["a"], "rank": [0], "score": [1.0]}), folder / "selection.parquet")
    write_jsonl(folder / "selected.jsonl", [{"text": "a selected row"}])


def test_a_directory_yields_data_files_only(tmp_path):
    import datasets

    from dataselect.io.sources import resolve_locations, skipped_files

    data = tmp_path / "data"
    write_jsonl(data / "a.jsonl", [{"text": "one"}])
    (data / "README.txt").write_text("not data\n")
    (data / ".hidden.jsonl").write_text('{"text": "hidden"}\n')
    _manifest(data / "runs" / "x")  # an earlier run's output inside the input folder
    write_jsonl(data / "runs" / "x" / "notes.jsonl", [{"text": "user data beside the outputs"}])
    store = data / "cache" / "embeddings" / "abc"
    store.mkdir(parents=True)
    (store / "key.json").write_text("{}")
    pq.write_table(pa.table({"id": ["s"]}), store / "shard-000000.meta.parquet")
    tagged = data / "cache2"
    tagged.mkdir()
    (tagged / "CACHEDIR.TAG").write_text("Signature: 8a477f597d28d172789f06886806bc55\n")
    write_jsonl(tagged / "stdin-x.jsonl", [{"text": "in a cache"}])
    datasets.Dataset.from_dict({"text": ["saved one", "saved two"]}).save_to_disk(str(data / "saved"))
    datasets.DatasetDict({"train": datasets.Dataset.from_dict({"text": ["dd train"]}),
                          "test": datasets.Dataset.from_dict({"text": ["dd test"]})}).save_to_disk(str(data / "dd"))

    config = SourceConfig(path=str(data))
    kinds = [(kind, str(loc).removeprefix(str(data) + "/")) for kind, loc in resolve_locations(config)]
    assert kinds == [("jsonl", "a.jsonl"), ("hf", "dd:train"), ("hf", "dd:test"), ("jsonl", "runs/x/notes.jsonl"), ("hf", "saved")]
    samples, stats = _samples(config)
    assert sorted(s.text for s in samples) == sorted(["one", "dd train", "dd test", "user data beside the outputs", "saved one", "saved two"])
    assert stats.skipped == 0  # no dataset_info.json or state.json read as JSON Lines
    skipped = {Path(s.path).relative_to(data).as_posix(): s.reason for s in skipped_files(config)}
    assert set(skipped) == {"README.txt", "runs/x/manifest.json", "runs/x/selection.parquet", "runs/x/selected.jsonl"}
    assert skipped["README.txt"].startswith("not a data file")

    everything = SourceConfig(path=str(data / "**" / "*"))  # a glob meets the same rules
    assert {Path(s.path).name for s in skipped_files(everything)} >= {"README.txt", "selected.jsonl"}
    assert resolve_locations(everything) == resolve_locations(config)  # no dataset_info.json, .arrow or cache file
    with pytest.raises(InputError, match=r"skipped 2; the first: .*dataset_info.json: part of the saved dataset .*saved \(name its folder"):
        resolve_locations(SourceConfig(path=str(data / "saved" / "*.json")))


def test_a_named_file_of_unknown_kind_asks_for_input_format(tmp_path):
    from dataselect.errors import ConfigError

    notes = tmp_path / "pool.txt"
    notes.write_text('{"text": "one"}\n')
    with pytest.raises(ConfigError, match=r"^config error: input.format: cannot tell the kind of .*pool.txt from its name; set input.format: jsonl"):
        list(iter_raw_records(SourceConfig(path=str(notes))))
    assert [r.record for r in iter_raw_records(SourceConfig(path=str(notes), format="jsonl"))] == [{"text": "one"}]
    only_text = tmp_path / "only"
    only_text.mkdir()
    (only_text / "README.md").write_text("# hi\n")
    with pytest.raises(InputError, match=r"no input files found at .* \(skipped 1; the first: .*README.md: not a data file"):
        list(iter_raw_records(SourceConfig(path=str(only_text))))


def test_hf_folder_with_a_split_it_does_not_have_is_one_line(tmp_path):
    import datasets

    from dataselect.errors import ConfigError

    datasets.DatasetDict({"train": datasets.Dataset.from_dict({"text": ["a"]})}).save_to_disk(str(tmp_path / "dd"))
    with pytest.raises(ConfigError, match=r"has no split 'nosplit'; it holds \['train'\]"):
        list(iter_raw_records(SourceConfig(path=f"hf:{tmp_path / 'dd'}:nosplit")))


# ------------------------------------------------------------------------------------------------
# inputs people have: compressed JSON Lines, JSON arrays, standard input, hf:NAME:CONFIG:SPLIT
# ------------------------------------------------------------------------------------------------

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
    samples, stats = _samples(SourceConfig(path=str(path)))
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
    samples, stats = _samples(SourceConfig(path=str(tmp_path / "cut")))
    damaged = [b for b in stats.bad if b.reason.startswith("damaged compressed file")]
    assert len(damaged) == 1 and damaged[0].file == f"pool.jsonl{suffix}"
    assert 100 < damaged[0].line < 3000  # where it broke: after the lines that could be read
    assert samples[-1].text == "the next file is read" and len(samples) >= damaged[0].line - 2
    with pytest.raises(InputError, match=rf"^input error: pool.jsonl{suffix}:\d+: damaged compressed file: .*set input.on_error: skip"):
        _samples(SourceConfig(path=str(cut), on_error="fail"))


def test_a_json_array_file_is_read_whole(tmp_path):
    from dataselect.io.plan import plan_shards

    alpaca = [{"instruction": "Add 2 and 3.", "input": "", "output": "5"}, {"instruction": "Name a colour.", "output": "Blue"}, 7]
    path = tmp_path / "alpaca.json"
    path.write_text("\ufeff  \n" + json.dumps(alpaca, indent=2), encoding="utf-8")
    samples, stats = _samples(SourceConfig(path=str(path)))
    assert [s.text for s in samples] == ["Add 2 and 3.\n\n5", "Name a colour.\n\nBlue"]
    assert [s.id for s in samples] == ["alpaca.json:3", "alpaca.json:8"]  # the line each element starts on
    assert [(b.line, b.reason) for b in stats.bad] == [(12, "not a JSON object")]
    assert {spec.kind for spec in plan_shards(SourceConfig(path=str(path)), 1)} == {"records"}
    broken = tmp_path / "broken.json"
    broken.write_text('[{"text": "fine"},\n {"text": oops}]')
    samples, stats = _samples(SourceConfig(path=str(broken)))
    assert [s.text for s in samples] == ["fine"] and stats.bad[0].line == 2 and stats.bad[0].reason.startswith("malformed JSON array")
    lines = tmp_path / "lines.json"  # a .json file of JSON Lines stays JSON Lines
    write_jsonl(lines, [{"text": "a"}, {"text": "b"}])
    assert [s.text for s in _samples(SourceConfig(path=str(lines)))[0]] == ["a", "b"]


def test_standard_input_is_read_as_json_lines_or_an_array(monkeypatch):
    import io
    import sys

    for payload in [b'{"text": "one"}\n\n{"text": "two"}\n', b'[{"text": "one"}, {"text": "two"}]']:
        monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BufferedReader(io.BytesIO(payload))))
        samples, _ = _samples(SourceConfig(path="-"))
        assert [(s.text, s.id) for s in samples] == [("one", "stdin:1"), ("two", "stdin:" + ("3" if b"\n\n" in payload else "1"))]


def test_hf_remote_names_with_a_config(monkeypatch):
    import datasets

    calls = []
    monkeypatch.setattr(datasets, "load_dataset", lambda name, config=None, split=None, streaming=False:
                        calls.append((name, config, split, streaming)) or iter([{"text": "streamed"}]))
    for path in ["hf:org/set", "hf:org/set:test", "hf:org/set:main:validation"]:
        samples, _ = _samples(SourceConfig(path=path))
        assert [s.text for s in samples] == ["streamed"]
    assert calls == [("org/set", None, "train", True), ("org/set", None, "test", True), ("org/set", "main", "validation", True)]
    from dataselect.errors import ConfigError

    with pytest.raises(ConfigError, match="hf:NAME:CONFIG:SPLIT"):
        _samples(SourceConfig(path="hf:a:b:c:d"))
