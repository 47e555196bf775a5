"""The dry run's checks one by one (the CLI test runs them all with the bundled model)."""
import os
from pathlib import Path

from support import write_jsonl

from dataselect.config import build_config
from dataselect.dryrun import check_folder, check_source, dry_run


def _config(tmp_path, **overrides):
    tree = {"output.dir": str(tmp_path / "out"), "runtime.cache_dir": str(tmp_path / "cache")}
    tree.update({k.replace("__", "."): v for k, v in overrides.items()})
    return build_config({}, tree)


def test_random_needs_no_model_or_target(tmp_path):
    pool = write_jsonl(tmp_path / "pool.jsonl", [{"text": "a"}, {"text": "b"}])
    checks = dry_run(_config(tmp_path, input__path=str(pool), method__name="random"))
    assert [(c.name, c.ok) for c in checks] == [("method", True), ("model", True), ("input", True), ("output", True), ("cache", True)]
    assert checks[1].detail == "not used by method.name: random"
    assert checks[2].detail == "1 location (jsonl); the first 2 records: 2 render, 0 bad"


def test_dsir_reference_features_load_no_model_and_need_a_target(tmp_path):
    pool = write_jsonl(tmp_path / "pool.jsonl", [{"text": "a"}])
    checks = {c.name: c for c in dry_run(_config(tmp_path, input__path=str(pool), method__name="dsir"))}
    assert checks["model"].ok and checks["model"].detail == "not used by method.name: dsir"
    assert not checks["target"].ok and checks["target"].detail == "config error: target.path is required for method.name: dsir"


def test_bad_first_records_fail_when_nothing_renders_or_on_error_is_fail(tmp_path):
    rows = [{"body": "x"}, '{"text": "unterminated', {"text": "fine"}] + [{"text": f"t{i}"} for i in range(5)]
    pool = write_jsonl(tmp_path / "pool.jsonl", rows)
    config = _config(tmp_path, input__path=str(pool), method__name="random", input__text_field="text")
    check = check_source(config, "input", None)
    assert check.ok and check.detail.startswith("1 location (jsonl); the first 5 records: 3 render, 2 bad (the first bad one: pool.jsonl:1: missing field")
    strict = _config(tmp_path, input__path=str(pool), method__name="random", input__text_field="text", input__on_error="fail")
    assert not check_source(strict, "input", None).ok
    all_bad = write_jsonl(tmp_path / "bad.jsonl", [{"body": "x"}])
    check = check_source(_config(tmp_path, input__path=str(all_bad), method__name="random"), "input", None)
    assert not check.ok and check.detail.endswith("the first bad one: bad.jsonl:1: no text field (the record has: 'body'; looked for "
                                                  "'messages', 'conversations', 'prompt'/'response', 'instruction'/'input'/'output' "
                                                  "and 'text'; name it with text_field, prompt_field or messages_field)")
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    check = check_source(_config(tmp_path, input__path=str(empty), method__name="random"), "input", None)
    assert not check.ok and check.detail.endswith("hold no records")


def test_folders_are_checked_without_being_created(tmp_path):
    check = check_folder("output", "output.dir", tmp_path / "a" / "b")
    assert check.ok and "would be created" in check.detail and not (tmp_path / "a").exists()
    (tmp_path / "file").write_text("x")
    check = check_folder("output", "output.dir", tmp_path / "file")
    assert not check.ok and check.detail.endswith("is an existing file, not a folder")
    check = check_folder("output", "output.dir", tmp_path / "file" / "below")
    assert not check.ok and check.detail.endswith("file: not a folder")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file"]  # the probes left nothing behind


def test_a_folder_the_run_could_not_create_fails_the_dry_run_even_as_root(tmp_path):
    check = check_folder("output", "output.dir", Path("/proc/dataselect-out"))
    assert not check.ok and check.detail.startswith("config error: output.dir: cannot create /proc/dataselect-out: /proc: ")


def test_without_an_input_the_run_asks_for_one_before_the_target(tmp_path, capsys):
    from dataselect.cli import main

    assert main(["run", "--set", f"output.dir={tmp_path / 'out'}"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: config error: input.path is required") and "--config configs/rds.yaml" in err
    assert not (tmp_path / "out").exists()
    if os.geteuid() != 0:  # root may write anywhere
        locked = tmp_path / "locked"
        locked.mkdir(mode=0o500)
        assert not check_folder("cache", "runtime.cache_dir", locked / "x").ok
