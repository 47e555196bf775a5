"""The library call and `dataselect apply` agree on a saved scorer's scores and kept ids, and the shared
lazy scorer loads in the process that scores, never travels pickled with its model."""
from __future__ import annotations

import pickle

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from integration_cases import KEEP, assert_same_scores

from dataselect.cli import main
from dataselect.integrations.base import LazyScorer


def test_dataselect_apply_gives_the_library_calls_scores_and_ids(tmp_path, case):
    out = tmp_path / "applied"
    assert main(["apply", "--scorer", str(case.scorer), "--input", str(case.pool), "--output", str(out), "--keep", str(KEEP), "--quiet",
                 "--set", f"runtime.cache_dir={tmp_path / 'cache'}"]) == 0
    rows = pq.read_table(out / "scores.parquet").to_pylist()
    assert_same_scores(case, {row["id"]: row["score"] for row in rows})
    kept = pq.read_table(out / "selection.parquet").column("id").to_pylist()
    assert sorted(kept) == sorted(case.kept)


def test_the_lazy_scorer_loads_on_first_use_and_pickles_without_its_model(case):
    lazy = LazyScorer(case.scorer, keep=KEEP)
    assert lazy._scorer is None
    table = pa.Table.from_pylist(case.records)
    out = lazy.score_table(table, "score")
    assert lazy._scorer is not None and pickle.loads(pickle.dumps(lazy))._scorer is None
    assert out.column("id").to_pylist() == case.kept
    np.testing.assert_array_equal(out.column("score").to_numpy(), case.scores[np.isin([r["id"] for r in case.records], case.kept)])
    everything = LazyScorer(case.scorer).score_table(table, "score")  # no cut: every row, scored
    assert everything.num_rows == len(case.records)


def test_keep_and_threshold_together_are_refused(case):
    with pytest.raises(ValueError, match="at most one"):
        LazyScorer(case.scorer, keep=0.1, threshold=0.5)
    with pytest.raises(ValueError, match="keep must be"):
        LazyScorer(case.scorer, keep=1.5)
