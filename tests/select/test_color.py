"""method.name: color end to end, with the known-answer tests of METHODS.md 7.4: no fine-tuning gives a
score of exactly 0; a pool sample the target holds gets one of the largest scores; the score is a
difference of losses (a shared constant cancels, swapping the models negates it). The prior's scores
are reused by a run with another target."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from support import MATH, MINILM, OTHER, write_jsonl

import dataselect
import dataselect.pipeline
from dataselect.errors import ConfigError
from dataselect.select.color import loss_reduction

N = 3 * len(MATH + OTHER)
TINY = {"method.color.proxy.steps": 20, "method.color.proxy.seeds": 1, "method.color.proxy.hidden": 32, "method.color.proxy.heads": 2,
        "method.color.proxy.layers": 1, "method.color.proxy.context": 32, "method.color.proxy.vocab": 256,
        "method.color.proxy.batch_size": 4, "method.color.finetune_steps": 30, "method.color.finetune_lr": 0.01}


def _files(tmp_path: Path) -> tuple[Path, Path]:
    rows = [{"id": f"p{c}-{i}", "prompt": f"{t} ({c})", "response": f"The answer is {i * c + 1}."}
            for c in range(3) for i, t in enumerate(MATH + OTHER)]
    target = [{"id": "t0", "prompt": "Lea has 4 pears and buys 5 more. How many pears?", "response": "Lea has 4 + 5 = 9 pears. The answer is 9."}]
    return write_jsonl(tmp_path / "pool.jsonl", rows), write_jsonl(tmp_path / "target.jsonl", target)


def _run(tmp_path: Path, pool: Path, target: Path, name: str = "run", **extra):
    overrides = {"input.path": str(pool), "target.path": None if target is None else str(target), "model.name": MINILM,
                 "method.name": "color", "method.budget": 10,
                 "output.dir": str(tmp_path / name / "out"), "runtime.cache_dir": str(tmp_path / "cache"), "runtime.num_workers": 0,
                 "runtime.progress": False, "output.show_top": 0, "runtime.shard_size": 16, **TINY,
                 **{k.replace("__", "."): v for k, v in extra.items()}}
    return dataselect.pipeline.run(dataselect.load_config(None, overrides), quiet=True)


def test_no_fine_tuning_scores_every_sample_exactly_zero(tmp_path):
    pool, target = _files(tmp_path)
    result = _run(tmp_path, pool, target, method__color__finetune_steps=0)
    scores = result.selection.pool_scores
    assert len(scores) == N and np.all(scores == 0.0)
    assert result.manifest["stages"]["conditional"]["store"] == result.manifest["stages"]["pool"]["store"]


def test_a_pool_sample_the_target_holds_gets_one_of_the_largest_scores(tmp_path):
    pool, target = _files(tmp_path)
    rows = [{"id": f"p{c}-{i}", "prompt": f"{t} ({c})", "response": f"The answer is {i * c + 1}."}
            for c in range(3) for i, t in enumerate(MATH + OTHER)]
    copy = {"id": "copy", "prompt": "Lea has 4 pears and buys 5 more. How many pears?", "response": "Lea has 4 + 5 = 9 pears. The answer is 9."}
    pool = write_jsonl(tmp_path / "pool_copy.jsonl", rows[:20] + [copy] + rows[20:])
    result = _run(tmp_path, pool, target, method__exclude_target_copies=False)
    assert "copy" in result.selection.ids[:3]
    table = pq.read_table(result.output_dir / "selection.parquet").to_pydict()
    assert set(table) >= {"id", "rank", "score", "prior_loss", "conditional_loss", "n_tokens"}
    assert table["score"] == pytest.approx([p - c for p, c in zip(table["prior_loss"], table["conditional_loss"])])
    metrics = result.manifest["method"]
    assert metrics["scorer"] == "proxy" and len(metrics["prior_training_loss"][0]) == 20
    assert len(metrics["conditional_training_loss"]["target"][0]) == 30
    html = (result.output_dir / "report.html").read_text()
    assert "alt=\"prior model: training loss\"" in html and "alt=\"conditional model: fine-tuning loss on the target\"" in html


def test_the_score_is_a_loss_difference():
    rng = np.random.default_rng(0)
    prior, conditional = rng.random(50) * 5, rng.random(50) * 5
    score = loss_reduction(prior, conditional)
    assert np.allclose(loss_reduction(prior + 3.0, conditional + 3.0), score, rtol=0, atol=1e-12)
    assert np.array_equal(loss_reduction(conditional, prior), -score)
    assert loss_reduction(prior, np.stack([conditional, prior], axis=1)).shape == (50, 2)
    assert np.isnan(loss_reduction(np.array([np.nan]), np.array([1.0])))[0]


def test_a_second_target_reuses_the_prior_scores(tmp_path):
    pool, target = _files(tmp_path)
    first = _run(tmp_path, pool, target)
    other = write_jsonl(tmp_path / "other.jsonl", [{"id": "o", "prompt": "Write a poem about the sea.", "response": "Waves roll in and out."}])
    second = _run(tmp_path, pool, other, name="other")
    assert first.manifest["cache"]["pool"] == "miss" and second.manifest["cache"]["pool"] == "hit"
    assert second.manifest["cache"]["conditional"] == "miss"
    assert second.manifest["timings_s"]["train_prior"] < first.manifest["timings_s"]["train_prior"]
    again = _run(tmp_path, pool, target, name="again")
    assert set(again.manifest["cache"].values()) == {"hit"}
    assert (again.output_dir / "selection.parquet").read_bytes() == (first.output_dir / "selection.parquet").read_bytes()


def test_several_tasks_round_robin_and_a_causal_lm_prior(tmp_path, tiny_causal_dir):
    pool, _ = _files(tmp_path)
    rows = [{"id": "m", "task": "math", "prompt": MATH[0], "response": "The answer is 7."},
            {"id": "o", "task": "other", "prompt": OTHER[0], "response": "Mix flour, water and yeast."}]
    target = write_jsonl(tmp_path / "tasks.jsonl", rows)
    result = _run(tmp_path, pool, target, target__task_field="task", model__name=str(tiny_causal_dir), method__color__finetune_steps=3)
    table = pq.read_table(result.output_dir / "selection.parquet").to_pydict()
    assert table["task"][:4] == ["math", "other", "math", "other"]
    assert result.manifest["method"]["scorer"] == "model" and set(result.manifest["stages"]) >= {"conditional:math", "conditional:other"}
    assert all(len(curves[0]) == 3 for curves in result.manifest["method"]["conditional_training_loss"].values())


def test_color_needs_a_target(tmp_path):
    pool, _ = _files(tmp_path)
    with pytest.raises(ConfigError, match="target.path"):
        _run(tmp_path, pool, None)


def test_a_run_that_dies_scoring_the_conditional_model_resumes_there(tmp_path, monkeypatch):
    from dataselect.scoring.loss import LossStage

    pool, target = _files(tmp_path)
    reference = _run(tmp_path, pool, target, name="reference", runtime__cache_dir=str(tmp_path / "reference-cache"))
    original, calls = LossStage.score, [0]
    shards = -(-N // 16)

    def dies_in_the_second_pass(self, samples):
        calls[0] += 1
        if calls[0] == shards + 2:  # the prior's shards, then one of the conditional model's
            raise KeyboardInterrupt("killed")
        return original(self, samples)

    monkeypatch.setattr(LossStage, "score", dies_in_the_second_pass)
    with pytest.raises(KeyboardInterrupt):
        _run(tmp_path, pool, target, name="killed")
    monkeypatch.setattr(LossStage, "score", original)
    resumed = _run(tmp_path, pool, target, name="killed")
    assert resumed.manifest["cache"]["pool"] == "hit"
    assert resumed.manifest["stages"]["conditional"]["cache"] == "partial" and resumed.manifest["stages"]["conditional"]["resumed_shards"] == 1
    assert (resumed.output_dir / "selection.parquet").read_bytes() == (reference.output_dir / "selection.parquet").read_bytes()


def test_configs_color_yaml_runs_on_the_demo_pool(tmp_path):
    root = Path(__file__).resolve().parents[2]
    overrides = {"input.path": str(root / "configs" / "demo" / "pool.jsonl"), "target.path": str(root / "configs" / "demo" / "target.jsonl"),
                 "output.dir": str(tmp_path / "out"), "runtime.cache_dir": str(tmp_path / "cache"), "runtime.progress": False,
                 "output.show_top": 0, **TINY}
    result = dataselect.pipeline.run(dataselect.load_config(root / "configs" / "color.yaml", overrides), quiet=True)
    assert len(result.ids) == 100 and result.manifest["method"]["scorer"] == "proxy"
