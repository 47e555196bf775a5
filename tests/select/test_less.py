"""method.name: less end to end, and the matching known answers of METHODS.md 10.7 (checkpoint weights,
aggregation over subtasks and tasks)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from support import MATH, MINILM, OTHER, run_shipped_config, write_jsonl

import dataselect
import dataselect.pipeline
from dataselect.errors import ConfigError
from dataselect.select.less import checkpoint_weights, influence, influence_histogram, subtask_max_mean, task_influence

TINY = {"method.less.proxy.steps": 6, "method.less.proxy.sample": 1.0, "method.less.proxy.hidden": 16, "method.less.proxy.heads": 2,
        "method.less.proxy.layers": 1, "method.less.proxy.context": 32, "method.less.proxy.vocab": 64, "method.less.proxy.batch_size": 4,
        "method.less.dim": 256, "method.less.checkpoints": 2}
README_LRS = (1.6877e-5, 1.2859e-5, 7.7030e-6, 2.5616e-6)


def test_checkpoint_weights_normalise_and_scale_free():
    """METHODS.md 10.7.5: the README's epoch learning rates normalise to (0.42192, 0.32147, 0.19257, 0.06404)."""
    eta = checkpoint_weights(README_LRS)
    assert eta.tolist() == pytest.approx([0.42192, 0.32147, 0.19257, 0.06404], abs=1e-5)
    assert checkpoint_weights([7 * w for w in README_LRS]).tolist() == pytest.approx(eta.tolist())
    with pytest.raises(ValueError):
        checkpoint_weights([0.0, 0.0])


def test_weighted_influence_combines_checkpoint_cosines():
    g = torch.Generator().manual_seed(0)
    pool = torch.nn.functional.normalize(torch.randn(5, 3, 16, generator=g), dim=2)  # [n, C, d]
    target = torch.nn.functional.normalize(torch.randn(4, 3, 16, generator=g), dim=2)  # [M, C, d]
    eta = checkpoint_weights([3.0, 2.0, 1.0])
    per_checkpoint = torch.einsum("ncd,mcd->cnm", pool, target)  # [C, n, M] cosines
    expected = sum(float(eta[i]) * per_checkpoint[i] for i in range(3))
    torch.testing.assert_close(influence(pool, target, eta), expected)
    # one checkpoint with eta = 1: the single-checkpoint cosine
    torch.testing.assert_close(influence(pool[:, :1], target[:, :1], checkpoint_weights([5.0])), per_checkpoint[0])


def test_aggregation_is_the_max_over_subtask_means():
    """METHODS.md 10.7.6: S = [1, 0 | 0.2, 0.2] with 2 subtasks scores 0.5; with one subtask 0.35."""
    sims = torch.tensor([[1.0, 0.0, 0.2, 0.2]])
    assert subtask_max_mean(sims, np.array([0, 0, 1, 1])).item() == pytest.approx(0.5)
    assert subtask_max_mean(sims, np.zeros(4, np.int64)).item() == pytest.approx(0.35)
    # two tasks, each with its own subtasks: one column per task
    scores = task_influence(sims, np.array([0, 0, 1, 1]), np.array([0, 1, 0, 0]), 2)
    assert scores[0].tolist() == pytest.approx([1.0, 0.2])


def test_the_influence_histogram_counts_finite_scores():
    hist = influence_histogram(np.array([0.0, 0.1, np.nan, 1.0]), bins=2)
    assert hist["counts"] == [2, 1] and hist["edges"] == [0.0, 0.5, 1.0]


def _files(tmp_path: Path, copy: bool = False) -> tuple[Path, Path]:
    rows = [{"id": f"p{c}-{i}", "prompt": f"{t} ({c})", "response": f"The answer is {i * c + 1}."}
            for c in range(2) for i, t in enumerate(MATH + OTHER)]
    target = [{"id": "t0", "prompt": "Lea has 4 pears and buys 5 more. How many pears?", "response": "Lea has 4 + 5 = 9 pears. The answer is 9."},
              {"id": "t1", "prompt": "Tom has 2 pens and buys 3 more. How many pens?", "response": "Tom has 2 + 3 = 5 pens. The answer is 5."}]
    if copy:
        rows.insert(7, {**target[0], "id": "copy"})
    return write_jsonl(tmp_path / "pool.jsonl", rows), write_jsonl(tmp_path / "target.jsonl", target)


def _run(tmp_path: Path, pool: Path, target: Path | None, name: str = "run", **extra):
    overrides = {"input.path": str(pool), "target.path": None if target is None else str(target), "model.name": MINILM,
                 "method.name": "less", "method.budget": 6, "output.dir": str(tmp_path / name / "out"),
                 "runtime.cache_dir": str(tmp_path / "cache"), "runtime.num_workers": 0, "runtime.progress": False,
                 "output.show_top": 0, "runtime.shard_size": 16, **TINY, **{k.replace("__", "."): v for k, v in extra.items()}}
    return dataselect.pipeline.run(dataselect.load_config(None, overrides), quiet=True)


def test_less_selects_with_a_manifest_and_report_figures(tmp_path):
    pool, target = _files(tmp_path, copy=True)
    result = _run(tmp_path, pool, target, method__exclude_target_copies=False)
    n = 2 * len(MATH + OTHER) + 1
    assert len(result.ids) == 6 and len(result.selection.pool_scores) == n
    assert "copy" in result.ids[:3]  # a pool copy of a target sample is among the most influential
    metrics = result.manifest["method"]
    assert metrics["checkpoint_weights"] == pytest.approx(checkpoint_weights(metrics["checkpoint_weights"]).tolist())
    assert len(metrics["checkpoint_weights"]) == 2 and sum(metrics["influence_histogram"]["target"]["counts"]) == n
    assert metrics["projection_dim"] == 256 and metrics["gradient_size"] > 1000
    assert "influence on task target" in (result.output_dir / "report.html").read_text()
    again = _run(tmp_path, pool, target, name="again", method__exclude_target_copies=False)  # the same seed, from the cache
    assert again.ids == result.ids and np.array_equal(again.selection.scores, result.selection.scores)


def test_several_tasks_round_robin(tmp_path):
    pool, _ = _files(tmp_path)
    target = write_jsonl(tmp_path / "tasks.jsonl", [
        {"id": "t0", "task": "math", "prompt": "Lea has 4 pears and buys 5 more. How many pears?", "response": "The answer is 9."},
        {"id": "t1", "task": "poem", "prompt": "Write a poem about the moon.", "response": "The moon is bright tonight."}])
    result = _run(tmp_path, pool, target, target__task_field="task")
    table = result.selection.columns["task"]
    assert table[:2] == ["math", "poem"] and result.selection.tasks == ["math", "poem"]


def test_less_needs_a_target(tmp_path):
    pool, _ = _files(tmp_path)
    with pytest.raises(ConfigError, match="target.path"):
        _run(tmp_path, pool, None)


def test_configs_less_yaml_runs_on_the_demo_pool(tmp_path):
    result = run_shipped_config(tmp_path, "less", {"input.limit": 120, **TINY})
    assert result.manifest["method"]["warmup"]["checkpoints"] == 2 and len(result.ids) > 0
