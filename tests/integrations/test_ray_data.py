"""ScoreBatches in Ray Data map_batches with 2 actors: the library call's kept ids and their scores; a
pandas or numpy batch in this process gets the same column and cut."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from integration_cases import KEEP, assert_same_scores

ray = pytest.importorskip("ray")

from dataselect.integrations.ray_data import ScoreBatches, score_dataset  # noqa: E402


def test_two_actors_keep_the_library_calls_ids(ray_instance, case):
    dataset = ray.data.from_items(case.records, override_num_blocks=2)
    kept = score_dataset(dataset, case.scorer, keep=KEEP, concurrency=2, batch_size=8).take_all()
    assert sorted(row["id"] for row in kept) == sorted(case.kept)
    expected = dict(zip([r["id"] for r in case.records], case.scores))
    np.testing.assert_allclose([row["score"] for row in kept], [expected[row["id"]] for row in kept], rtol=0, atol=1e-6)


def test_pandas_and_numpy_batches_get_the_column_and_the_cut(case):
    frame = pd.DataFrame(case.records)
    scored = ScoreBatches(case.scorer)(frame)
    assert len(scored) == len(frame)
    assert_same_scores(case, dict(zip(scored["id"], scored["score"])))
    assert list(ScoreBatches(case.scorer, keep=KEEP)(frame)["id"]) == case.kept
    batch = {key: np.array(frame[key], dtype=object) for key in frame.columns}
    out = ScoreBatches(case.scorer, keep=KEEP, column="s")(batch)
    assert list(out["id"]) == case.kept and set(out) == {*batch, "s"}
