import gzip
import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from support import source_samples, write_jsonl

from dataselect.config import SourceConfig
from dataselect.errors import InputError
from dataselect.io.plan import iter_raw_records


def test_jsonl_gz_parquet_directory_and_glob_read_in_stable_order(tmp_path):
    write_jsonl(tmp_path / "d" / "a.jsonl", [{"text": "one"}, {"text": "two"}])
    with gzip.open(tmp_path / "d" / "b.jsonl.gz", "wt") as handle:
        handle.write(json.dumps({"text": "three"}) + "\n")
    pq.write_table(pa.table({"text": ["four", "five"], "id": ["x4", "x5"]}), tmp_path / "d" / "c.parquet")
    for path in [str(tmp_path / "d"), str(tmp_path / "d" / "*")]:
        samples, stats = source_samples(SourceConfig(path=path))
        assert [s.text for s in samples] == ["one", "two", "three", "four", "five"]
        # samples without an id get one from file and line; parquet ids are kept
        assert [s.id for s in samples] == ["a.jsonl:1", "a.jsonl:2", "b.jsonl.gz:1", "x4", "x5"]
        assert stats.read == 5 and stats.skipped == 0


def test_missing_path_is_an_input_error(tmp_path):
    with pytest.raises(InputError, match="no input files"):
        list(iter_raw_records(SourceConfig(path=str(tmp_path / "missing*.jsonl"))))


def test_a_file_name_that_is_not_utf8_gives_printable_ids(tmp_path):
    import os

    folder = tmp_path / "pool"
    folder.mkdir()
    (folder / os.fsdecode(b"part\xff.jsonl")).write_text('{"text": "one"}\n', encoding="utf-8")
    samples, stats = source_samples(SourceConfig(path=str(folder)))
    assert [s.id for s in samples] == ["part\\xff.jsonl:1"] and stats.skipped == 0
    samples[0].id.encode("utf-8")  # what Arrow needs


def _manifest(folder):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "manifest.json").write_text(json.dumps({"config": {}, "versions": {"dataselect": "0.1.0"}}))
    pq.write_table(pa.table({"id": ["a"], "rank": [0], "score": [1.0]}), folder / "selection.parquet")
    write_jsonl(folder / "selected.jsonl", [{"text": "a selected row"}])


def test_a_directory_yields_data_files_only(tmp_path):
    import datasets

    from dataselect.io.locate import resolve_locations, skipped_files

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
    samples, stats = source_samples(config)
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


# ------------------------------------------------------------------------------------------------
# a run resolves each source once
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("method", ["rds", "dsir-reference"])
def test_a_run_resolves_each_source_once_and_reads_the_files_it_pinned(tmp_path, monkeypatch, method):
    from support import EXECUTOR_METHODS, MATH, OTHER, base_overrides

    import dataselect
    from dataselect.io import locate

    pool = tmp_path / "pool"
    write_jsonl(pool / "a.jsonl", [{"id": f"a{i}", "text": t} for i, t in enumerate(MATH)])
    write_jsonl(pool / "b.jsonl", [{"id": f"b{i}", "text": t} for i, t in enumerate(OTHER)])
    target = write_jsonl(tmp_path / "target.jsonl", [{"text": t} for t in MATH[:2]])
    resolved: list[str] = []
    real = locate._resolve

    def counting(config):
        resolved.append(str(config.path))
        found = real(config)
        # a file that appears once the run has resolved its pool is not part of this run
        write_jsonl(pool / "late.jsonl", [{"id": "late", "text": "a record written while the run goes on"}])
        return found

    monkeypatch.setattr(locate, "_resolve", counting)
    config = dataselect.load_config(None, base_overrides(tmp_path, pool, target, **EXECUTOR_METHODS[method]))
    result = dataselect.run(config, quiet=True)
    assert sorted(resolved) == sorted([str(pool), str(target)]) and len(result.ids) == 4
    assert "late" not in result.ids and result.manifest["counts"]["read"] == len(MATH + OTHER)


def test_a_pinned_source_keeps_its_files_and_another_path_resolves_anew(tmp_path):
    from dataselect.io.locate import located, pin

    folder = tmp_path / "pool"
    write_jsonl(folder / "a.jsonl", [{"text": "one"}])
    config = SourceConfig(path=str(folder))
    assert [Path(loc).name for _, loc in pin(config).locations] == ["a.jsonl"]
    write_jsonl(folder / "b.jsonl", [{"text": "two"}])
    assert [Path(loc).name for _, loc in located(config).locations] == ["a.jsonl"]
    assert [Path(loc).name for _, loc in located(config.model_copy()).locations] == ["a.jsonl"]  # a worker's copy too
    assert [Path(loc).name for _, loc in located(SourceConfig(path=str(folder))).locations] == ["a.jsonl", "b.jsonl"]
    config.path = str(folder / "b.jsonl")
    assert [Path(loc).name for _, loc in located(config).locations] == ["b.jsonl"]
