"""method.name: quad end to end: gradients only for the rows the bandit draws, the manifest's featurised
fraction and pulls per cluster, the accepted pulls' picks in the selection, resuming from the cached rounds,
configs/quad.yaml on the demo pool."""
from __future__ import annotations

import numpy as np
import pyarrow.parquet as pq
import pytest
from support import MATH, OTHER, run_shipped_config
from test_less import TINY, _files, _run

from dataselect.select.quad import accepted_picks, best_rows

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


def test_a_pulls_best_rows_skip_unscored_ones_and_break_ties_by_row():
    signal = np.array([0.1, np.nan, 0.5, 0.5, -1.0])
    assert best_rows(np.array([4, 3, 2, 1, 0]), signal, 2).tolist() == [2, 3]
    assert best_rows(np.array([1, 4]), signal, 3).tolist() == [4] and best_rows(np.array([1]), signal, 1).tolist() == []


def test_accepted_picks_drop_ineligible_rows_and_keep_the_best_k():
    signal = np.array([0.9, 0.1, 0.2, 0.3, 0.8])
    eligible = np.array([True, True, True, True, False])
    picks = np.array([1, 4, 3, 1, 2])
    assert accepted_picks(picks, signal, 10, eligible).tolist() == [3, 2, 1]  # 4 is not eligible; 1 once
    assert accepted_picks(picks, signal, 2, eligible).tolist() == [3, 2]
    assert accepted_picks(np.zeros(0, np.int64), signal, 2, eligible).tolist() == []


@pytest.mark.parametrize("per_pull", [0, 1])
def test_accepted_pulls_put_their_best_probes_in_first(tmp_path, per_pull):
    pool, target = _files(tmp_path)
    options = {**QUAD, "method.budget": 6, "method.quad.picks_per_pull": per_pull}
    result = _run(tmp_path, pool, target, **{k.replace(".", "__"): v for k, v in options.items()})
    quad = result.manifest["method"]["quad"]
    table = pq.read_table(result.output_dir / "selection.parquet").to_pydict()
    by_pull = [i for i, how in zip(table["id"], table["picked_by"]) if how == "pull"]
    assert len(by_pull) == quad["selected_by_pull"] and len(result.ids) == 6
    scores = result.selection.scores
    assert (np.diff(scores) <= 0).all()  # ranked by influence, whichever way a row came in
    if per_pull == 0:
        assert by_pull == []
    else:
        assert 0 < len(by_pull) <= quad["accepted_pulls"]  # one pick per accepted pull at most
