"""The benchmark scripts as a clone meets them: data paths are arguments, a missing default is one line,
no temporary folder outlives a run, every run appends its row to bench/results, and every script uses
bench/common.py alone (no sys.path edits, no script importing another)."""
import ast
import gzip
import json
import tempfile
from pathlib import Path

import pytest

from dataselect import cli


@pytest.mark.parametrize("name, flag", [("rds_gsm8k", "--pool"), ("embed_vs_st", "--pool"), ("dsir_vs_package", "--target"),
                                        ("token_memo", "--pool"), ("rds_quality", "--pool"), ("quality_dclm", "--pool"),
                                        ("quality_fineweb_edu", "--pool"), ("quality_temperature", "--pool"),
                                        ("eval_gsm8k", "--pool"), ("less_quad_gsm8k", "--pool"), ("rds_cpu_dtype", "--pool")])
def test_a_missing_data_file_is_one_line_naming_the_argument(tmp_path, name, flag):
    with pytest.raises(SystemExit) as stop:
        cli.main(["bench", name, flag, str(tmp_path / "missing.jsonl.gz")])
    message = str(stop.value.code)
    assert message.startswith(f"error: {tmp_path / 'missing.jsonl.gz'} not found; pass {flag} PATH") and "\n" not in message


@pytest.fixture(autouse=True)
def results_here(tmp_path, monkeypatch):
    """The rows a bench run here appends go to tmp_path/results, never into the checkout's bench/results."""
    import bench.common

    monkeypatch.setattr(bench.common, "RESULTS_DIR", tmp_path / "results")


def test_benchmarks_leave_no_temporary_folders_and_append_their_rows(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))
    (tmp_path / "tmp").mkdir()
    rows = [{"id": f"p{i}", "source": "gsm8k" if i % 2 else "other", "prompt": f"Sam has {i} apples.", "response": "ok"} for i in range(12)]
    for name, data in [("pool.jsonl.gz", rows), ("target.jsonl.gz", rows[:2])]:
        with gzip.open(tmp_path / name, "wt") as handle:
            handle.write("".join(json.dumps(r) + "\n" for r in data))
    common = ["--set", "runtime.progress=false", "--set", "runtime.num_workers=0"]
    cli.main(["bench", "rds_gsm8k", "--pool", str(tmp_path / "pool.jsonl.gz"), "--target", str(tmp_path / "target.jsonl.gz"),
              "--budget", "3", "--out", str(tmp_path / "out"), *common])
    cli.main(["bench", "throughput", "--n", "40", *common])
    out = capsys.readouterr().out
    assert "share with source 'gsm8k'" in out and "docs/s" in out
    left = [p.name for p in (tmp_path / "tmp").iterdir() if not p.name.startswith("torchinductor")]  # torch's own cache stays
    assert left == []  # the bench caches and work folders are gone
    assert (tmp_path / "out" / "selection.parquet").exists()  # the output asked for stays
    for name in ("rds_gsm8k", "throughput"):  # each run appended one row of data
        [row] = [json.loads(line) for line in (tmp_path / "results" / f"{name}.jsonl").read_text().splitlines()]
        assert {"date", "commit", "machine", "load_average", "command", "figures", "output"} <= row.keys()
        assert row["command"].startswith(f"python -m bench.{name} ") and row["machine"]["cores"] and len(row["load_average"]) == 3
    rds_row = json.loads((tmp_path / "results" / "rds_gsm8k.jsonl").read_text())
    assert any("share with source 'gsm8k'" in line for line in rds_row["output"])
    assert f"share with source 'gsm8k': {rds_row['figures']['share_gsm8k']:.4f}" in out  # the row's figure is the printed one


def test_a_bench_script_run_inside_another_benchs_measurement_writes_no_row(tmp_path):
    import subprocess
    import sys

    from bench.common import run_measured

    script = ("import sys; from pathlib import Path; import bench.common; bench.common.RESULTS_DIR = Path(sys.argv[1]); "
              "sys.exit(bench.common.record('child', lambda: {'figure': 1}))")
    inside, alone = tmp_path / "inside", tmp_path / "alone"
    assert run_measured([sys.executable, "-c", script, str(inside)]).returncode == 0
    assert not (inside / "child.jsonl").exists()  # a step of a measured run (select_millions' --step processes)
    subprocess.run([sys.executable, "-c", script, str(alone)], check=True)
    assert json.loads((alone / "child.jsonl").read_text())["figures"] == {"figure": 1}  # run by hand, it writes its row


def test_a_rows_kept_output_holds_no_path_of_this_machine():
    import bench.common

    def main() -> dict:
        print(f"report: {Path(tempfile.gettempdir()) / 'tmpab12' / 'out' / 'report.html'}")
        print(f"store: {bench.common.ROOT / 'runs' / 'cache'}")
        return {"figure": 1}

    assert bench.common.record("alone", main) == 0
    [row] = [json.loads(line) for line in (bench.common.RESULTS_DIR / "alone.jsonl").read_text().splitlines()]
    assert row["figures"] == {"figure": 1}
    assert row["output"] == ["report: $TMPDIR/tmpab12/out/report.html", "store: ./runs/cache"]


BENCH = Path(__file__).resolve().parents[1] / "bench"
SCRIPTS = sorted(p for p in BENCH.glob("*.py") if p.stem not in ("__init__", "common", "results"))


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.stem)
def test_every_bench_script_records_its_rows_and_imports_only_bench_common(script):
    tree = ast.parse(script.read_text())
    imported = {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.module}
    imported |= {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
    assert not {name for name in imported if name.startswith("bench") and name != "bench.common"}  # no script imports another
    assert not (imported & {p.stem for p in SCRIPTS})
    assert "sys.path" not in script.read_text()
    if script.stem == "kernels_vs_torch":  # one row per kernel and variant, its own format (tests/kernels/test_bench_kernels.py)
        assert 'RESULTS_DIR / "kernels.jsonl"' in script.read_text()
        return
    main_block = next(node for node in tree.body if isinstance(node, ast.If) and "__main__" in ast.unparse(node.test))
    assert ast.unparse(main_block.body[0]) == f"sys.exit(record('{script.stem}', main))"


def test_the_quality_bench_holds_out_targets_and_reuses_its_embeddings(tmp_path, capsys):
    topics = {"math": "Sam has {} apples and eats one. How many are left?", "code": "Write a Python function that returns {}.",
              "food": "Give a recipe that uses {} eggs."}
    rows = [{"id": f"{name}{i}", "source": name, "prompt": text.format(i), "response": f"answer {i}"}
            for name, text in topics.items() for i in range(8)]
    with gzip.open(tmp_path / "pool.jsonl.gz", "wt") as handle:
        handle.write("".join(json.dumps(r) + "\n" for r in rows))
    args = ["bench", "rds_quality", "--pool", str(tmp_path / "pool.jsonl.gz"), "--work", str(tmp_path / "work"), "--sources", "math,code",
            "--per-source", "2", "--renders", "plain", "--aggregations", "max,topk_mean:2", "--no-pipeline",
            "--set", "runtime.progress=false", "--set", "runtime.num_workers=0"]
    cli.main(args)
    first = capsys.readouterr().out
    pool = next((tmp_path / "work" / "data").glob("pool-*.jsonl"))
    mtime = pool.stat().st_mtime_ns
    cli.main(args)
    again = capsys.readouterr().out
    assert "R per target: math 6, code 6" in first  # 2 of each development source held out of the pool
    assert len(pool.read_text().splitlines()) == 24 - 4 and pool.stat().st_mtime_ns == mtime  # unchanged: the cache key holds
    assert "engine plain, max: " in first and "cache {'pool': 'miss', 'target': 'miss'}" in first
    assert again.count("cache {'pool': 'hit', 'target': 'hit'}") == 2  # every run of the second pass: no embedding
    assert "| engine plain, topk_mean:2 |" in again and "r_precision" in again
    assert len((tmp_path / "results" / "rds_quality.jsonl").read_text().splitlines()) == 2  # a row per run


def test_results_md_has_a_section_per_bench_with_its_latest_command_and_rows(tmp_path):
    import bench.common
    from bench.results import render

    for number in range(5):
        bench.common.append_row("rds_gsm8k", {"share": 0.5 + number / 100}, command=["python", "-m", "bench.rds_gsm8k", f"--budget={number}"])
    (tmp_path / "results" / "el2n_noise.jsonl").write_text(json.dumps(
        {"bench": "el2n_noise", "date": None, "command": "old command", "figures": {}, "title": "Earlier", "recorded": "| auroc | 0.93 |\n",
         "source": "converted from the hand-written RESULTS.md"}) + "\n")
    text = render(tmp_path / "results", latest=3)
    rds = text.split("## rds_gsm8k\n")[1].split("\n## ")[0]
    assert "Command: `python -m bench.rds_gsm8k --budget=4`" in rds  # the latest run's command
    assert [f"share {0.5 + n / 100:.4g} |" in rds for n in range(5)] == [False, False, True, True, True]  # its latest 3 rows
    assert "| auroc | 0.93 |" in text.split("## el2n_noise\n")[1]  # the converted history, kept as it was
    assert "## throughput\n\nCommand: `python -m bench.throughput`\n\nNo rows yet." in text  # every script has its section


def test_results_md_shows_the_latest_rows_table_figure(tmp_path):
    import bench.common
    from bench.results import render

    variants = [{"variant": "engine bf16", "docs_s": 2.0, "skipped": None},
                {"variant": "st-onnx fp32", "docs_s": None, "skipped": "package missing: onnxruntime"}]
    bench.common.append_row("embed_vs_st", {"best_peer": None, "table": variants})
    section = render(tmp_path / "results").split("## embed_vs_st\n")[1].split("\n## ")[0]
    assert "| variant | docs_s | skipped |\n|---|---|---|\n| engine bf16 | 2 |  |\n| st-onnx fp32 |  | package missing: onnxruntime |" in section


def test_embed_vs_st_reports_a_missing_backend_as_skipped_and_judges_peers_against_the_engine_bf16():
    import numpy as np

    from bench.embed_vs_st import Variant, st_missing, table

    assert [(v.name, v.skipped) for v in st_missing(["st-onnx fp32"], "json", "no_such_backend.onnxruntime")] == [
        ("st-onnx fp32", "package missing: no_such_backend.onnxruntime")]
    assert st_missing(["st-torch fp32"], "json") is None
    reference = np.eye(4, 8, dtype=np.float32) + 0.1
    bent = reference.copy()
    bent[:, 7] += 0.5  # cosine about 0.92 to the reference: not the same quality
    variants = [Variant("engine fp32", times=[4.0], vectors=reference), Variant("engine bf16", times=[2.0], vectors=reference),
                Variant("fast peer", times=[1.0], vectors=reference), Variant("slow peer", times=[1.8], vectors=reference),
                Variant("fast bent peer", times=[1.0], vectors=bent), Variant("gone", skipped="package missing: openvino")]
    rows = {r["variant"]: r for r in table(variants, n=8)}
    assert rows["engine bf16"]["docs_s"] == 4.0 and rows["engine fp32"]["vs_engine_bf16"] == 0.5 and rows["engine fp32"]["adopt"] is None
    assert (rows["fast peer"]["vs_engine_bf16"], rows["fast peer"]["adopt"]) == (2.0, True)
    assert (rows["slow peer"]["vs_engine_bf16"], rows["slow peer"]["adopt"]) == (1.111, False)  # under 1.3x
    assert rows["fast bent peer"]["cosine_mean"] < 0.95 and rows["fast bent peer"]["adopt"] is False
    assert rows["gone"]["docs_s"] is None and rows["gone"]["skipped"] == "package missing: openvino"
