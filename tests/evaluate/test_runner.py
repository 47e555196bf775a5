"""`dataselect eval` end to end on generated data with a tiny proxy (METHODS.md 11 known answers): a selection
drawn from the eval target's own distribution beats random, identical selections give identical figures,
the interval narrows with more seeds, a rerun resumes per (arm, seed), the keep sweep and the baselines."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from support import topic_text, write_jsonl

import dataselect
from dataselect import cli
from dataselect.config import EvalConfig
from dataselect.errors import InputError
from dataselect.evaluate import runner

TOPICS = ["math", "cooking", "travel", "code"]
TINY = {"steps": 20, "sample": 200, "batch_size": 8, "context": 32, "vocab": 128, "layers": 1, "hidden": 16, "heads": 2, "lr": 1e-2}
ARM_KEYS = {"name", "run", "size", "seeds", "bpb", "mean", "ci95", "gap_to_random", "gap_ci95", "snr"}


def _math_records(rng, prefix: str, n: int) -> list[dict]:
    return [{"id": f"{prefix}{i}", "prompt": topic_text(rng, "math", 6), "response": topic_text(rng, "math", 14)} for i in range(n)]


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    """A DSIR run (n-gram features: no model) that picks 24 of 96 generated samples for a math target."""
    root = tmp_path_factory.mktemp("eval")
    rng = np.random.default_rng(0)
    pool = [{"id": f"p{i}", "source": TOPICS[i % 4], "prompt": topic_text(rng, TOPICS[i % 4], 6), "response": topic_text(rng, TOPICS[i % 4], 14)}
            for i in range(96)]
    write_jsonl(root / "pool.jsonl", pool)
    write_jsonl(root / "target.jsonl", _math_records(rng, "t", 8))
    write_jsonl(root / "eval.jsonl", _math_records(rng, "e", 16))  # the same distribution, other samples
    overrides = {"input.path": str(root / "pool.jsonl"), "target.path": str(root / "target.jsonl"), "method.name": "dsir",
                 "method.dsir.features": "reference", "method.dsir.min_words": 2, "method.budget": 24, "output.dir": str(root / "run"),
                 "runtime.cache_dir": str(root / "cache"), "runtime.num_workers": 0, "runtime.progress": False, "output.show_top": 0,
                 "output.write": "none"}
    dataselect.run(dataselect.load_config(None, overrides))
    return root / "run"


def _settings(**extra) -> EvalConfig:
    # one torch thread: a tiny proxy's second intra-op thread only spins on a busy machine (20x slower)
    return EvalConfig.model_validate({"seeds": 2, "steps": [10], "lr": 1e-2, "device": "cpu", "threads": 1, "proxy": TINY, **extra})


def _evaluate(run_dir: Path, out: Path, **extra) -> dict:
    return runner.evaluate([run_dir], str(run_dir.parent / "eval.jsonl"), _settings(**extra), out, progress=False)


@pytest.fixture(scope="module")
def two_seeds(run_dir) -> dict:
    return _evaluate(run_dir, run_dir.parent / "out")


@pytest.fixture(scope="module")
def four_seeds(run_dir, two_seeds) -> tuple[dict, list]:
    """The same output folder with four seeds: the first two seeds' pairs are found, only the rest train."""
    trained = []
    original = runner.run_pair
    patch = pytest.MonkeyPatch()
    patch.setattr(runner, "run_pair", lambda group, arm, seed, *args: trained.append((arm.name, seed)) or original(group, arm, seed, *args))
    try:
        return _evaluate(run_dir, run_dir.parent / "out", seeds=4), trained
    finally:
        patch.undo()


def _arm(result: dict, name: str) -> dict:
    return next(a for a in result["arms"] if a["name"] == name)


def test_a_selection_from_the_eval_targets_distribution_beats_random(four_seeds, run_dir):
    result, _ = four_seeds
    dsir, random = _arm(result, "dsir"), _arm(result, "random")
    assert ARM_KEYS <= set(dsir) and ARM_KEYS <= set(random)
    assert dsir["size"] == random["size"] == 24 and dsir["seeds"] == [0, 1, 2, 3] and len(dsir["bpb"]) == 4
    assert dsir["gap_to_random"] == pytest.approx(np.mean(np.array(random["bpb"]) - np.array(dsir["bpb"])))
    assert dsir["gap_ci95"][0] > 0 and dsir["better_than_random"]  # the paired interval excludes 0
    assert dsir["mean"] < random["mean"] and dsir["snr"] > 0
    assert random["gap_to_random"] == 0.0 and random["gap_ci95"] == [0.0, 0.0]
    saved = json.loads((run_dir.parent / "out" / "eval.json").read_text())
    assert saved["arms"] == result["arms"] and saved["eval_target"]["overlap"][0]["shared"] == 0
    assert "better" in runner.table_text(result).splitlines()[1]


def test_the_interval_narrows_with_more_seeds_and_a_rerun_resumes_per_pair(two_seeds, four_seeds):
    result, trained = four_seeds
    assert sorted(trained) == [(arm, seed) for arm in ("dsir", "random") for seed in (2, 3)]  # seeds 0 and 1 were found
    for name in ("dsir", "random"):
        before, after = _arm(two_seeds, name), _arm(result, name)
        assert after["bpb"][:2] == before["bpb"]
        assert after["ci95"][1] - after["ci95"][0] < before["ci95"][1] - before["ci95"][0]


def test_identical_selections_give_identical_figures(run_dir, two_seeds, tmp_path):
    from dataselect.evaluate.figures import eval_sections
    from dataselect.io.report import draw

    copy = tmp_path / "copy"
    shutil.copytree(run_dir, copy)
    code = cli.main(["eval", str(copy), "--eval-target", str(run_dir.parent / "eval.jsonl"), "--output", str(tmp_path / "out"), "--seeds", "2",
                     "--steps", "10", "--lr", "0.01", "--device", "cpu", "-q", "--set", "threads=1", *[f"--set=proxy.{k}={v}" for k, v in TINY.items()]])
    assert code == 0
    again = json.loads((tmp_path / "out" / "eval.json").read_text())
    for name in ("dsir", "random"):
        assert _arm(again, name)["bpb"] == _arm(two_seeds, name)["bpb"]

    def drawn(result: dict) -> list[str]:
        return [draw(f) for _, figures in eval_sections(result) for f in figures[1:]]  # the first is the note naming the paths

    assert drawn(again) == drawn(two_seeds)


def test_the_keep_sweep_and_the_pool_and_rs2_baselines(run_dir, tmp_path):
    result = _evaluate(run_dir, tmp_path / "out", steps=[4, 8], keep=[0.25, 0.5], rs2=True, pool_baseline=True)
    names = [a["name"] for a in result["arms"]]
    assert names == ["dsir", "random", "rs2", "pool"]
    assert _arm(result, "pool")["size"] == 96 and _arm(result, "rs2")["steps"] == 4
    sweep = result["keep_sweep"][0]
    assert sorted((p["keep"], p["steps"]) for p in sweep["points"]) == [(0.25, 4), (0.25, 8), (0.5, 4), (0.5, 8)]
    assert {p["size"] for p in sweep["points"]} == {24, 48}
    for best in sweep["best"]:
        assert best["mean"] == min(p["mean"] for p in sweep["points"] if p["steps"] == best["steps"])
    assert sweep["fit"] is None  # 4 points cannot fit 2 + 3 parameters
    page = (tmp_path / "out" / "report.html").read_text()
    assert "Compute-aware budgets" in page and "too few points" in page.lower()


def test_an_eval_target_that_overlaps_the_runs_target_is_refused(run_dir, tmp_path):
    with pytest.raises(InputError, match="8 of its 8 samples share a text with the target"):
        runner.evaluate([run_dir], str(run_dir.parent / "target.jsonl"), _settings(), tmp_path / "out", progress=False)
    assert not (tmp_path / "out").exists()


def test_a_folder_that_is_not_a_run_is_one_line(tmp_path, capsys):
    assert cli.main(["eval", str(tmp_path), "--eval-target", str(tmp_path / "x.jsonl")]) == 2
    assert "not a finished run folder" in capsys.readouterr().err
    assert cli.main(["eval", str(tmp_path), "--eval-target", "x", "--keep", "0,2"]) == 2


def test_a_causal_lm_given_by_name_is_fine_tuned_instead_of_the_proxy(run_dir, tiny_causal_dir, tmp_path):
    result = _evaluate(run_dir, tmp_path / "out", steps=[3], model=str(tiny_causal_dir))
    assert result["base"][0]["model"] == str(tiny_causal_dir)
    for arm in result["arms"]:
        assert len(arm["bpb"]) == 2 and all(np.isfinite(arm["bpb"])) and arm["bpb"][0] > 0


def test_a_selection_whose_ids_left_the_pool_is_one_line(run_dir, tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    copy = tmp_path / "changed"
    shutil.copytree(run_dir, copy)
    table = pq.read_table(copy / "selection.parquet")
    pq.write_table(table.set_column(0, "id", pa.array(["gone"] + table.column("id").to_pylist()[1:])), copy / "selection.parquet")
    with pytest.raises(InputError, match="1 of the 24 ids of arm 'dsir' are not in the run's pool"):
        runner.evaluate([copy], str(run_dir.parent / "eval.jsonl"), _settings(), tmp_path / "out", progress=False)


def test_averaging_the_last_checkpoints_divides_the_noise_of_a_flat_series_by_their_root():
    from dataselect.evaluate.arms import Arm
    from dataselect.evaluate.trainer import checkpoint_steps

    assert checkpoint_steps(200, 1) == [200] and checkpoint_steps(200, 4) == [170, 180, 190, 200] and checkpoint_steps(3, 5) == [1, 2, 3]
    rng = np.random.default_rng(0)
    arm = Arm("a", "selection", 10, 200)
    seeds = list(range(4000))
    spread = {}
    for checkpoints in (1, 4):
        pairs = [{"bpb_checkpoints": list(1.0 + 0.1 * rng.standard_normal(checkpoints)), "rows": 5} for _ in seeds]
        spread[checkpoints] = runner._summary(arm, seeds, pairs, None)["std"]
    assert spread[1] / spread[4] == pytest.approx(2.0, rel=0.05)

