"""`dataselect apply` (method.name: apply): a saved scorer over an input keeps what reaches its
threshold, writes the passing records in the input's format, and resumes per shard after SIGKILL."""
from __future__ import annotations

import json
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from support import MATH, executor_pool, write_jsonl

import dataselect
from dataselect.cli import main
from dataselect.errors import ConfigError


@pytest.fixture
def fitted(tmp_path: Path, tiny_bert_dir: Path) -> tuple[Path, Path]:
    """(a DSIR run's output folder, its pool): 54 distinct prompts, so ties and duplicates do not blur the top 10%."""
    pool, _ = executor_pool(tmp_path)
    target = write_jsonl(tmp_path / "target.jsonl", [{"id": "t0", "prompt": MATH[0], "response": "7"}])
    overrides = {"input.path": str(pool), "target.path": str(target), "model.name": str(tiny_bert_dir), "method.name": "dsir",
                 "method.dsir.min_words": 1, "method.budget": 10, "output.dir": str(tmp_path / "fit"), "runtime.cache_dir": str(tmp_path / "cache"),
                 "runtime.progress": False}
    return dataselect.run(dataselect.load_config(None, overrides)).output_dir, pool


def kept_ids(out: Path, name: str = "selected.jsonl") -> list[str]:
    if name.endswith(".parquet"):
        return pq.read_table(out / name).column("id").to_pylist()
    return [json.loads(line)["id"] for line in (out / name).read_text().splitlines()]


def test_keep_passes_exactly_the_runs_top_fraction(tmp_path: Path, fitted: tuple[Path, Path]) -> None:
    run_dir, pool = fitted
    out = tmp_path / "applied"
    assert main(["apply", "--scorer", str(run_dir / "scorer"), "--input", str(pool), "--output", str(out), "--keep", "0.1",
                 "--set", f"runtime.cache_dir={tmp_path / 'cache'}", "-q"]) == 0
    scores = pq.read_table(run_dir / "scores.parquet").to_pylist()  # the fitting run's every pool sample
    top = sorted(scores, key=lambda row: (-row["score"], row["id"]))[: int(np.ceil(0.1 * len(scores)))]
    threshold = dataselect.load_scorer(run_dir).threshold(0.1)
    assert threshold == top[-1]["score"]
    reaching = {row["id"] for row in scores if row["score"] >= threshold}
    assert set(kept_ids(out)) == reaching and len(kept_ids(out)) == len(reaching)  # each once
    assert {row["id"] for row in top} <= reaching and all(row["score"] == threshold for row in scores if row["id"] in reaching - {r["id"] for r in top})
    applied = pq.read_table(out / "scores.parquet").to_pylist()
    assert [row["id"] for row in applied] == [row["id"] for row in scores]
    np.testing.assert_allclose([row["score"] for row in applied], [row["score"] for row in scores], rtol=1e-12)
    assert {row["excluded"] for row in applied if row["id"] not in reaching} == {"below_threshold"}


def test_a_threshold_and_parquet_output(tmp_path: Path, fitted: tuple[Path, Path]) -> None:
    run_dir, pool = fitted
    out = tmp_path / "applied"
    scores = {row["id"]: row["score"] for row in pq.read_table(run_dir / "scores.parquet").to_pylist()}
    median = float(np.median(list(scores.values())))
    assert main(["apply", "--scorer", str(run_dir), "--input", str(pool), "--output", str(out), "--threshold", repr(median), "--format", "parquet",
                 "--set", f"runtime.cache_dir={tmp_path / 'cache'}", "-q"]) == 0
    assert sorted(kept_ids(out, "selected.parquet")) == sorted(i for i, s in scores.items() if s >= median)
    assert not (out / "selected.jsonl").exists()


def test_apply_needs_a_scorer_and_one_cut(tmp_path: Path, fitted: tuple[Path, Path]) -> None:
    _, pool = fitted
    with pytest.raises(ConfigError, match="method.apply.scorer"):
        dataselect.run(dataselect.load_config(None, {"method.name": "apply", "input.path": str(pool), "method.apply.keep": 0.1,
                                                     "output.dir": str(tmp_path / "x"), "runtime.cache_dir": str(tmp_path / "cache")}))
    with pytest.raises(ConfigError, match="keep or threshold, not both"):
        dataselect.load_config(None, {"method.apply.keep": 0.1, "method.apply.threshold": 1.0})
    with pytest.raises(SystemExit):
        main(["apply", "--scorer", "x", "--input", str(pool), "--output", str(tmp_path / "y")])  # neither --keep nor --threshold


def test_an_apply_killed_mid_score_resumes_and_keeps_every_passing_record_once(tmp_path: Path, fitted: tuple[Path, Path]) -> None:
    run_dir, pool = fitted
    def command(out: str, cache: str) -> list[str]:
        return ["apply", "--scorer", str(run_dir), "--input", str(pool), "--output", str(tmp_path / out), "--keep", "0.25",
                "--set", f"runtime.cache_dir={tmp_path / cache}", "--set", "runtime.shard_size=5", "-q"]

    argv = command("killed", "cache")
    script = tmp_path / "killed.py"  # SIGKILL from inside the stage, after its third shard: a real kill at a known moment
    script.write_text(textwrap.dedent(f"""
        import os, signal, sys
        from dataselect.cli import main
        from dataselect.select.apply import ScorerStage
        real, seen = ScorerStage.score, []
        def dies(self, samples):
            seen.append(1)
            if len(seen) == 4:
                os.kill(os.getpid(), signal.SIGKILL)
            return real(self, samples)
        ScorerStage.score = dies
        sys.exit(main({argv!r}))
    """))
    killed = subprocess.run([sys.executable, str(script)], cwd=tmp_path, capture_output=True, text=True)
    assert killed.returncode == -signal.SIGKILL
    assert not (tmp_path / "killed" / "selected.jsonl").exists()
    assert main(argv) == 0
    manifest = json.loads((tmp_path / "killed" / "manifest.json").read_text())
    assert manifest["stages"]["pool"]["resumed_shards"] == 3 and manifest["stages"]["pool"]["docs"] == 54 - 15
    clean = tmp_path / "clean"
    assert main(command("clean", "clean-cache")) == 0
    assert kept_ids(tmp_path / "killed") == kept_ids(clean) and len(set(kept_ids(clean))) == len(kept_ids(clean))
