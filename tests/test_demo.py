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


def test_the_shipped_demo_pool_is_the_generators_and_holds_no_sample_twice(tmp_path):
    import json
    from pathlib import Path

    from dataselect.demo import make_demo

    shipped = Path(__file__).resolve().parents[1] / "configs" / "demo"
    make_demo(tmp_path)
    for name in ("pool.jsonl", "target.jsonl"):
        assert (tmp_path / name).read_bytes() == (shipped / name).read_bytes()  # `python -m dataselect.demo --force` rewrites it as shipped
    pool = [json.loads(line) for line in (shipped / "pool.jsonl").read_text().splitlines()]
    target = [json.loads(line) for line in (shipped / "target.jsonl").read_text().splitlines()]
    texts = {(row["prompt"], row["response"]) for row in pool}
    assert len(pool) == 1200 and len(texts) == 1200
    assert not texts & {(row["prompt"], row["response"]) for row in target}  # no target sample is in the pool
