"""A saved scorer in Ray Data: `ScoreBatches` is the callable class `Dataset.map_batches` runs in each
of its actors (the scorer loads once per actor), and `score_dataset` passes it with the settings a user
would (actors, GPUs per actor, batch size).

    import ray
    from dataselect.integrations.ray_data import score_dataset

    ds = ray.data.read_json("s3://bucket/pool/")
    kept = score_dataset(ds, "runs/dsir/scorer", keep=0.1, concurrency=8)           # CPU actors
    kept = score_dataset(ds, "runs/rds/scorer", keep=0.1, concurrency=4, num_gpus=1)  # one GPU per actor
    kept.write_parquet("s3://bucket/kept/")
"""
from __future__ import annotations

import os
from typing import Any

import numpy as np

from dataselect.integrations.base import LazyScorer


class ScoreBatches:
    """`Dataset.map_batches(ScoreBatches, fn_constructor_kwargs={"scorer": path, ...})`: each batch (pyarrow,
    pandas or numpy format) comes back the same with a `column` of scores added (float64; NaN for a record
    the fitting run would have skipped) and, given `keep` or `threshold`, only its passing rows."""

    def __init__(self, scorer: str | os.PathLike, keep: float | None = None, threshold: float | list[float] | None = None,
                 column: str = "score", **options: Any) -> None:
        self.scorer = LazyScorer(scorer, keep=keep, threshold=threshold, **options)
        self.column = column

    def __call__(self, batch: Any) -> Any:
        """One batch: a pyarrow Table, a pandas DataFrame, or a dict of numpy columns."""
        if hasattr(batch, "append_column"):  # pyarrow
            return self.scorer.score_table(batch, self.column)
        if hasattr(batch, "columns"):  # pandas
            scores, passing = self.scorer.score(batch[self.scorer.fields(list(batch.columns)) or list(batch.columns)])
            batch = batch.assign(**{self.column: scores})
            return batch[passing] if self.scorer.filters else batch
        scores, passing = self.scorer.score({name: batch[name] for name in self.scorer.fields(list(batch)) or list(batch)})
        return {name: np.asarray(values)[passing] for name, values in {**batch, self.column: scores}.items()}


def score_dataset(dataset: Any, scorer: str | os.PathLike, keep: float | None = None, threshold: float | list[float] | None = None,
                  column: str = "score", concurrency: int | tuple[int, int] = 1, num_gpus: float = 0, batch_size: int = 4096,
                  batch_format: str = "pyarrow", **options: Any) -> Any:
    """`dataset` with the saved scorer's `column` added (and filtered, given `keep` or `threshold`), scored by
    `concurrency` actors (an int, or (min, max) to autoscale), each with `num_gpus` GPUs (the scorer runs on
    CUDA when it has one: device="auto"), `batch_size` rows at a time."""
    return dataset.map_batches(ScoreBatches, fn_constructor_kwargs={"scorer": os.fspath(scorer), "keep": keep, "threshold": threshold, "column": column,
                                                                    **options},
                               concurrency=concurrency, num_gpus=num_gpus, batch_size=batch_size, batch_format=batch_format)
