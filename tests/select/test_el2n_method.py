"""method.name: el2n end to end: the proxy or a causal LM scores the pool through the score-phase loop,
a window of the scores is selected, and bad input or config stops with one line."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from support import MATH, MINILM, OTHER, write_jsonl

import dataselect
import dataselect.pipeline
from dataselect.errors import ConfigError, InputError

N = 3 * len(MATH + OTHER)  # the pool of _pool
TINY_PROXY = {"method.el2n.proxy.steps": 3, "method.el2n.proxy.seeds": 2, "method.el2n.proxy.hidden": 16,
              "method.el2n.proxy.heads": 2, "method.el2n.proxy.layers": 1, "method.el2n.proxy.context": 24,
              "method.el2n.proxy.vocab": 128, "method.el2n.proxy.batch_size": 4}


def _pool(tmp_path: Path, rows=None) -> Path:
    rows = rows or [{"id": f"p{c}-{i}", "prompt": f"{t} ({c})", "response": f"The answer is {i * c}."}
                    for c in range(3) for i, t in enumerate(MATH + OTHER)]
    return write_jsonl(tmp_path / "pool.jsonl", rows)


def _run(tmp_path: Path, pool: Path, name: str = "run", **extra):
    overrides = {"input.path": str(pool), "model.name": MINILM, "method.name": "el2n", "method.budget": 10,
                 "output.dir": str(tmp_path / name / "out"), "runtime.cache_dir": str(tmp_path / "cache"),
                 "runtime.num_workers": 0, "runtime.progress": False, "output.show_top": 0, "runtime.shard_size": 16,
                 **TINY_PROXY, **{k.replace("__", "."): v for k, v in extra.items()}}
    return dataselect.pipeline.run(dataselect.load_config(None, overrides), quiet=True)


def test_the_proxy_scores_the_pool_and_a_middle_window_is_selected(tmp_path):
    pool = _pool(tmp_path)
    result = _run(tmp_path, pool)
    table = pq.read_table(result.output_dir / "selection.parquet").to_pydict()
    assert len(table["id"]) == 10 and table["rank"] == list(range(10))
    assert set(table) >= {"id", "rank", "score", "loss", "n_tokens"}
    assert all(0 < s < 1.5 for s in table["score"]) and table["score"] == sorted(table["score"], reverse=True)
    pool_scores = result.selection.pool_scores
    assert pool_scores is not None and len(pool_scores) == N and np.isfinite(pool_scores).all()
    ascending = np.sort(pool_scores)
    assert min(table["score"]) >= ascending[(N - 10) // 2] - 1e-6  # the centred window
    method = result.manifest["method"]
    assert method["scorer"] == "proxy" and method["proxy"]["training_seeds"] == [42, 43] and method["keep"] == "middle"
    losses = method["proxy"]["losses"]  # per seed, per step: the curve the report draws
    assert len(losses) == 2 and all(len(curve) == TINY_PROXY["method.el2n.proxy.steps"] for curve in losses)
    assert all(np.isfinite(curve).all() and curve[0] > 0 for curve in losses)
    assert (result.output_dir / "report.html").read_text().count("proxy training loss") >= 1
    again = _run(tmp_path, pool, name="again")  # the same seed: the same selection (the cache too)
    assert (again.output_dir / "selection.parquet").read_bytes() == (result.output_dir / "selection.parquet").read_bytes()
    assert again.manifest["cache"]["pool"] == "hit"


def test_keep_hardest_with_loss_and_a_causal_lm(tmp_path, tiny_causal_dir):
    result = _run(tmp_path, _pool(tmp_path), model__name=str(tiny_causal_dir), method__el2n__score="loss", method__el2n__keep="hardest")
    scores = result.selection.pool_scores
    table = pq.read_table(result.output_dir / "selection.parquet").to_pydict()
    assert result.manifest["method"]["scorer"] == "model" and "el2n" in table
    assert table["score"][0] == pytest.approx(float(np.nanmax(scores)))


def test_bad_config_and_input_are_one_line(tmp_path, tiny_bert_dir):
    pool = _pool(tmp_path)
    capped = _run(tmp_path, pool, method__budget=100)  # one rule for every method: never more than can be selected
    assert len(capped.ids) == 54 and capped.manifest["budget"]["short_by"] == 46
    with pytest.raises(ConfigError, match=r"model\.name: .* is not a causal LM"):
        _run(tmp_path, pool, model__name=str(tiny_bert_dir))
    no_response = _pool(tmp_path / "empty", [{"id": f"x{i}", "prompt": f"question {i}"} for i in range(5)])
    with pytest.raises(InputError, match="no response tokens"):
        _run(tmp_path, no_response)


def test_a_sample_without_response_is_skipped_or_fails(tmp_path):
    rows = [{"id": f"p{i}", "prompt": t, "response": f"Answer {i}."} for i, t in enumerate(MATH + OTHER)]
    rows[3]["response"] = "  "
    pool = _pool(tmp_path, rows)
    result = _run(tmp_path, pool, method__budget=5)
    assert result.manifest["method"]["unscored_bad"] == 1 and "p3" not in result.ids
    with pytest.raises(InputError, match="input error: p3: no response tokens to score"):
        _run(tmp_path, pool, name="fail", method__budget=5, input__on_error="fail")


def test_configs_el2n_yaml_runs_on_the_demo_pool(tmp_path):
    root = Path(__file__).resolve().parents[2]
    overrides = {"input.path": str(root / "configs" / "demo" / "pool.jsonl"), "output.dir": str(tmp_path / "out"),
                 "runtime.cache_dir": str(tmp_path / "cache"), "runtime.progress": False, "output.show_top": 0, **TINY_PROXY}
    result = dataselect.pipeline.run(dataselect.load_config(root / "configs" / "el2n.yaml", overrides), quiet=True)
    assert len(result.ids) == 100 and result.manifest["method"]["keep"] == "middle"
