"""method.name: quad end to end: gradients only for the rows the bandit draws, the manifest's featurised
fraction and pulls per cluster, resuming from the cached rounds, configs/quad.yaml on the demo pool."""
from __future__ import annotations

import numpy as np
import pytest
from support import MATH, OTHER, run_shipped_config
from test_less import TINY, _files, _run

QUAD = {"method.name": "quad", "method.cluster.num_clusters": 4, "method.quad.probes": 2, "method.quad.clusters_per_round": 2,
        "method.quad.oversample": 1.0, "method.budget": 4}


def test_quad_computes_gradients_only_for_the_rows_its_bandit_draws(tmp_path):
    pool, target = _files(tmp_path)
    result = _run(tmp_path, pool, target, **{k.replace(".", "__"): v for k, v in QUAD.items()})
    quad = result.manifest["method"]["quad"]
    n = 2 * len(MATH + OTHER)
    scores = result.selection.pool_scores
    assert quad["featurised"] == int(np.isfinite(scores).sum()) < n and quad["featurised_fraction"] == pytest.approx(quad["featurised"] / n, abs=1e-6)
    assert sum(quad["pulls"]) >= quad["rounds"] and len(quad["pulls"]) == 4
    assert np.isfinite(result.selection.scores).all() and len(result.ids) == 4
    assert "bandit pulls per cluster" in (result.output_dir / "report.html").read_text()
    rounds = [name for name in result.manifest["stages"] if name.startswith("round:")]
    assert len(rounds) == quad["rounds"]
    again = _run(tmp_path, pool, target, name="again", **{k.replace(".", "__"): v for k, v in QUAD.items()})  # resumes from the cache
    assert again.ids == result.ids and again.manifest["method"]["quad"] == quad


def test_configs_quad_yaml_runs_on_the_demo_pool(tmp_path):
    result = run_shipped_config(tmp_path, "quad", {"input.limit": 120, **TINY})
    assert result.manifest["method"]["quad"]["featurised_fraction"] <= 0.3 and len(result.ids) > 0
