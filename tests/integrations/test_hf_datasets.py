"""add_scores over a `datasets.Dataset` and `IterableDataset`, and ScoreFilteredStream through a
DataLoader: the library call's scores and kept ids."""
from __future__ import annotations

import pytest
import torch
from datasets import Dataset
from integration_cases import KEEP, assert_same_scores

from dataselect.integrations.hf_datasets import ScoreFilteredStream, add_scores


def test_add_scores_on_a_dataset_scores_and_filters(tmp_path, case):
    dataset = Dataset.from_list(case.records)
    scored = add_scores(dataset, case.scorer, batch_size=8)
    assert scored.num_rows == len(case.records) and scored.column_names == [*dataset.column_names, "score"]
    assert_same_scores(case, dict(zip(scored["id"], scored["score"])))
    kept = add_scores(dataset, case.scorer, keep=KEEP, batch_size=8)
    assert kept["id"] == case.kept
    assert add_scores(dataset, case.scorer, keep=0.9, batch_size=8)._fingerprint != kept._fingerprint  # another cut, another cached result


def test_add_scores_on_an_iterable_dataset_streams_the_same(case):
    stream = Dataset.from_list(case.records).to_iterable_dataset(num_shards=2)
    rows = list(add_scores(stream, case.scorer, keep=KEEP, batch_size=5))
    assert [row["id"] for row in rows] == case.kept
    assert_same_scores(case, {row["id"]: row["score"] for row in add_scores(stream, case.scorer, batch_size=5)})


def test_the_filtering_stream_through_two_dataloader_workers(case):
    stream = ScoreFilteredStream(case.records, case.scorer, keep=KEEP, window=4)
    assert [row["id"] for row in stream] == case.kept  # in this process: in stream order
    rows = list(torch.utils.data.DataLoader(stream, batch_size=None, num_workers=2))  # each worker every other record, its own scorer
    assert sorted(row["id"] for row in rows) == sorted(case.kept)
    expected = dict(zip([r["id"] for r in case.records], case.scores))
    assert all(abs(row["score"] - expected[row["id"]]) <= 1e-6 for row in rows)
    with pytest.raises(ValueError, match="give keep"):
        ScoreFilteredStream(case.records, case.scorer)
