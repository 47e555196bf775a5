import gzip
import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from support import write_jsonl

from dataselect.config import SourceConfig
from dataselect.errors import InputError
from dataselect.io.render import TextRenderer, tulu_format
from dataselect.io.sources import iter_raw_records, iter_samples, text_hash
from dataselect.stats import SourceStats


def _samples(config, tokenizer=None):
    stats = SourceStats("pool")
    return list(iter_samples(config, TextRenderer(config, tokenizer), stats)), stats


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
    samples, _ = _samples(SourceConfig(path=str(path)))
    assert samples[0].text == "<|user|>\nWhat is 2+2?\n<|assistant|>\n4"
    assert samples[1].text == "<|system|>\nBe brief.\n<|user|>\nHi\n<|assistant|>\nHello"
    assert samples[2].text == "plain"
    plain, _ = _samples(SourceConfig(path=str(path), render="plain"))
    assert plain[0].text == "What is 2+2?\n\n4"


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
