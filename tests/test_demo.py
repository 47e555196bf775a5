"""`python -m dataselect.demo` is a real command: --help helps, and the shipped data is not overwritten."""
import subprocess
import sys


def test_help_writes_nothing(tmp_path):
    done = subprocess.run([sys.executable, "-m", "dataselect.demo", "--help"], cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and done.stdout.startswith("usage: python -m dataselect.demo")
    assert list(tmp_path.iterdir()) == []


def test_writes_a_small_demo_and_keeps_existing_files(tmp_path, capsys):
    from dataselect.demo import main

    out = tmp_path / "demo"
    assert main([str(out), "--pool-size", "16", "--target-size", "3"]) == 0
    assert len((out / "pool.jsonl").read_text().splitlines()) == 16 and len((out / "target.jsonl").read_text().splitlines()) == 3
    (out / "pool.jsonl").write_text("mine\n")
    assert main([str(out)]) == 2
    assert "already holds pool.jsonl and target.jsonl; pass --force" in capsys.readouterr().err
    assert (out / "pool.jsonl").read_text() == "mine\n"
    assert main([str(out), "--force", "--pool-size", "8"]) == 0
    assert len((out / "pool.jsonl").read_text().splitlines()) == 8
