"""The CLI conveniences a new user reaches for first."""
import json
import subprocess
import sys

import pyarrow.parquet as pq
import pytest
import yaml
from support import MINILM, write_jsonl

import dataselect
from dataselect.cli import main
from dataselect.config import METHODS, Config, valid_keys


def _pool(tmp_path, n=12):
    return write_jsonl(tmp_path / "pool.jsonl", [{"id": f"p{i}", "text": f"sample number {i} about apples"} for i in range(n)])


def test_version(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["--version"])
    assert exit_.value.code == 0
    assert capsys.readouterr().out.strip() == f"dataselect {dataselect.__version__}"


def test_no_arguments_print_the_help(capsys):
    assert main([]) == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: dataselect") and all(command in out for command in ("run", "config", "methods", "bench"))


def test_the_console_script_without_arguments_helps():
    done = subprocess.run([sys.executable, "-m", "dataselect.cli"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and "usage: dataselect" in done.stdout and "Traceback" not in done.stderr


def test_methods_lists_every_method_with_one_line(capsys):
    assert main(["methods"]) == 0
    lines = capsys.readouterr().out.splitlines()
    names = [line.split()[0] for line in lines]
    assert names == list(METHODS)  # method.name's choices, in order
    assert {"rds", "dsir", "random"} <= set(names)
    for line in lines:
        name = line.split()[0]
        assert len(line.split()) > 3 and name in METHODS and "not in this build" not in line


def _dumped(text: str) -> dict:
    tree = yaml.safe_load(text)

    def leaves(node, prefix=""):
        for key, value in node.items():
            yield prefix + key
            if isinstance(value, dict) and not prefix + key == "method.dsir.target_proportions":
                yield from leaves(value, prefix + key + ".")

    assert sorted(leaves(tree)) == sorted(valid_keys())
    return tree


def test_config_prints_every_key_with_defaults_and_overrides(capsys, tmp_path):
    assert main(["config"]) == 0
    assert _dumped(capsys.readouterr().out) == Config().model_dump(mode="json")
    config = tmp_path / "c.yaml"
    config.write_text("method:\n  name: dsir\n  budget: 7\n")
    assert main(["config", "--config", str(config), "--set", "method.seed=3", "--set", "output.dir=2024-01-01"]) == 0
    tree = _dumped(capsys.readouterr().out)
    assert (tree["method"]["name"], tree["method"]["budget"], tree["method"]["seed"]) == ("dsir", 7, 3)
    assert tree["output"]["dir"] == "2024-01-01" and tree["model"]["name"] == MINILM  # a default, still shown


def test_config_and_print_config_never_print_storage_credentials(capsys):
    secret = {"key": "AKIAEXAMPLE", "secret": "s3cr3t-value", "client_kwargs": {"endpoint_url": "http://127.0.0.1:9000"}}
    for command in (["config"], ["run", "--set", "method.name=random", "--print-config"]):
        assert main([*command, "--set", f"runtime.storage_options={json.dumps(secret)}"]) == 0
        out = capsys.readouterr().out
        assert "s3cr3t-value" not in out and "AKIAEXAMPLE" not in out
        assert yaml.safe_load(out)["runtime"]["storage_options"] == {"key": "<redacted>", "secret": "<redacted>", "client_kwargs": "<redacted>"}


def test_run_print_config_prints_and_runs_nothing(capsys, tmp_path):
    out_dir = tmp_path / "out"
    assert main(["run", "--set", f"output.dir={out_dir}", "--set", "method.name=random", "-q", "--print-config"]) == 0
    tree = _dumped(capsys.readouterr().out)
    assert tree["runtime"]["progress"] is False  # -q turns the bars off
    assert not out_dir.exists()


def test_run_with_only_set_and_quiet_silences_the_bars(capfd, tmp_path):
    pool = _pool(tmp_path)
    code = main(["run", "--set", f"input.path={pool}", "--set", "method.name=random", "--set", "method.budget=3",
                 "--set", f"output.dir={tmp_path / 'out'}", "--set", f"runtime.cache_dir={tmp_path / 'cache'}",
                 "--set", "runtime.num_workers=0", "-q"])
    captured = capfd.readouterr()
    assert code == 0, captured.err
    assert captured.out == "" and captured.err == ""  # no summary, no progress bar
    assert pq.read_table(tmp_path / "out" / "selection.parquet").num_rows == 3
    assert json.loads((tmp_path / "out" / "manifest.json").read_text())["config"]["runtime"]["progress"] is False


def test_run_without_config_or_input_is_one_line(capsys):
    assert main(["run", "--set", "method.name=random"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: config error: input.path is required") and err.count("\n") == 1


@pytest.mark.parametrize("setting, expected", [
    ("model.name=./no/such/model", "error: config error: model.name: no such model folder"),
    ("output.dir={file}", "error: config error: output.dir: {file} is an existing file, not a folder"),
    ("method.budget=true", "error: config error: method.budget: must be a count"),
])
def test_bad_paths_and_values_are_one_line(capsys, tmp_path, setting, expected):
    taken = tmp_path / "taken.txt"
    taken.write_text("x")
    assert main(["run", "--set", setting.format(file=taken), "--set", "method.name=random"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(expected.format(file=taken)) and err.count("\n") == 1


def test_a_yaml_error_in_the_config_file_names_line_and_column(capsys, tmp_path):
    config = tmp_path / "c.yaml"
    config.write_text("input:\n  path: pool.jsonl\n method: {name: rds\n")
    assert main(["run", "--config", str(config)]) == 2
    assert "is not valid YAML at line 3, column " in capsys.readouterr().err


def test_dry_run_checks_without_scoring_or_creating(capsys, tmp_path):
    pool = _pool(tmp_path)
    target = write_jsonl(tmp_path / "target.jsonl", [{"text": "how many apples"}])
    out_dir, cache = tmp_path / "out", tmp_path / "cache"
    args = ["run", "--set", f"input.path={pool}", "--set", f"target.path={target}", "--set", f"model.name={MINILM}",
            "--set", f"output.dir={out_dir}", "--set", f"runtime.cache_dir={cache}", "--dry-run"]
    assert main(args) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[:2] for line in lines[:-1]] == [["ok", name] for name in ("method", "model", "input", "target", "output", "cache")]
    assert "5 render, 0 bad" in lines[2] and lines[-1] == "dry run: 6 of 6 checks passed"
    assert not out_dir.exists() and not cache.exists()
    assert main(args + ["--set", f"target.path={tmp_path / 'missing.jsonl'}", "--set", "model.max_length=100000"]) == 2
    lines = capsys.readouterr().out.splitlines()
    failed = [line.split()[1] for line in lines if line.startswith("FAIL")]
    assert failed == ["model", "target"] and "model.max_length" in lines[1]
    assert lines[-1] == "dry run: 4 of 6 checks passed; failed: model, target"


def test_the_exit_codes_page_lists_every_code_the_command_returns():
    import re
    from pathlib import Path

    from dataselect import cli

    page = (Path(__file__).resolve().parents[1] / "docs" / "exit-codes.md").read_text(encoding="utf-8")
    documented = {int(code) for code in re.findall(r"^\| `(\d+)` \|", page, re.MULTILINE)}
    codes = {value for name, value in vars(cli).items() if name.startswith("EXIT_")}
    assert documented == codes == {0, 1, 2, 130}
    assert all(name in page for name in vars(cli) if name.startswith("EXIT_"))


def test_an_interrupted_run_exits_130_and_a_bad_config_2(tmp_path, capsys, monkeypatch):
    from support import write_jsonl

    from dataselect import pipeline

    pool = write_jsonl(tmp_path / "pool.jsonl", [{"text": f"t{i}"} for i in range(5)])
    args = ["run", "--set", f"input.path={pool}", "--set", "method.name=random", "--set", f"output.dir={tmp_path / 'out'}", "-q"]
    monkeypatch.setattr(pipeline, "_run_in", lambda *a: (_ for _ in ()).throw(KeyboardInterrupt))
    assert main(args) == 130 and "interrupted" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()  # nothing was written, so no empty folder stays behind
    assert main(args + ["--set", "method.budget=-1"]) == 2
