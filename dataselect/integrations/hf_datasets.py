"""A saved scorer over Hugging Face `datasets` and PyTorch streams.

    from dataselect.integrations.hf_datasets import add_scores, ScoreFilteredStream

    scored = add_scores(dataset, "runs/rds/scorer")                 # a `score` column (Dataset or IterableDataset)
    kept = add_scores(dataset, "runs/rds/scorer", keep=0.1)         # only the rows that reach the threshold
    loader = torch.utils.data.DataLoader(ScoreFilteredStream(dataset, "runs/rds/scorer", keep=0.1), batch_size=None)
"""
from __future__ import annotations

import hashlib
import itertools
import os
from typing import Any, Callable, Iterable, Iterator

import torch

from dataselect.integrations.base import LazyScorer, as_float
from dataselect.scorer.base import local_scorer_folder
from dataselect.scorer.folder import DESCRIPTION


class ScoreColumns:
    """The function `add_scores` maps: a batch (a dict of columns) -> the same columns, with `column` of
    scores added and, when the scorer filters, only the passing rows. Pickled to each process of a
    `num_proc` map without its model: each process loads one."""

    def __init__(self, scorer: LazyScorer, column: str) -> None:
        self.scorer, self.column = scorer, column

    def __call__(self, batch: dict[str, list]) -> dict[str, list]:
        """One batch of columns."""
        names = list(batch)
        scores, passing = self.scorer.score({name: batch[name] for name in self.scorer.fields(names) or names})
        rows = [row for row, passed in enumerate(passing) if passed]
        return {**{name: [batch[name][row] for row in rows] for name in names}, self.column: [as_float(scores[row]) for row in rows]}


def fingerprint(dataset: Any, scorer: LazyScorer, column: str) -> str:
    """A name for the scored dataset in the `datasets` cache: the input's own fingerprint, the scorer's
    description (which names every array's digest) and the cut, so a change to any of them is a new result."""
    folder = local_scorer_folder(scorer.path, scorer.options.get("storage_options"), scorer.options.get("cache_dir"))  # object storage: its local copy
    description = (folder / DESCRIPTION).read_bytes()
    parts = [getattr(dataset, "_fingerprint", ""), description.hex(), repr((scorer.keep, scorer.threshold, column))]
    return hashlib.blake2b("|".join(parts).encode(), digest_size=16).hexdigest()


def add_scores(dataset: Any, scorer: str | os.PathLike, keep: float | None = None, threshold: float | list[float] | None = None,
               column: str = "score", batch_size: int = 1000, num_proc: int | None = None, **options: Any) -> Any:
    """`dataset` (a `datasets.Dataset` or `IterableDataset`) with a `column` of the saved scorer's scores
    (float64; None for a row the fitting run would have skipped) and, given `keep` (a fraction of the fitting
    run's pool) or `threshold` (a score), only the rows that reach it. A batched map: `batch_size` rows per
    call, one model per process (`num_proc`, Dataset only). `options` reach `dataselect.load_scorer`."""
    lazy = LazyScorer(scorer, keep=keep, threshold=threshold, **options)
    function = ScoreColumns(lazy, column)
    if hasattr(dataset, "_fingerprint"):  # a Dataset: cached under a name that needs no hashing of the model
        return dataset.map(function, batched=True, batch_size=batch_size, num_proc=num_proc, new_fingerprint=fingerprint(dataset, lazy, column),
                           desc="dataselect scores")
    return dataset.map(function, batched=True, batch_size=batch_size)


class ScoreFilteredStream(torch.utils.data.IterableDataset):
    """The records of `records` (a re-iterable: a list, a streaming `datasets.IterableDataset`; or a function
    returning a fresh iterator) that reach the saved scorer's threshold (`keep` or `threshold`), each with
    its `column` score added, scored `window` records at a time as they stream past (memory: one window).
    Each DataLoader worker loads its own scorer and takes every num_workers-th record."""

    def __init__(self, records: Iterable[dict] | Callable[[], Iterable[dict]], scorer: str | os.PathLike, keep: float | None = None,
                 threshold: float | list[float] | None = None, column: str = "score", window: int = 1024, **options: Any) -> None:
        super().__init__()
        if keep is None and threshold is None:
            raise ValueError("give keep (a fraction) or threshold (a score): the stream keeps what reaches it")
        self.records, self.column, self.window = records, column, window
        self.scorer = LazyScorer(scorer, keep=keep, threshold=threshold, **options)

    def __iter__(self) -> Iterator[dict]:
        stream = iter(self.records() if callable(self.records) else self.records)
        worker = torch.utils.data.get_worker_info()
        if worker is not None:  # several workers: each takes every num_workers-th record
            stream = itertools.islice(stream, worker.id, None, worker.num_workers)
        while window := list(itertools.islice(stream, self.window)):
            scores, passing = self.scorer.score(window)  # [w], [w]
            for record, score, passed in zip(window, scores, passing):
                if passed:
                    yield {**record, self.column: as_float(score)}
