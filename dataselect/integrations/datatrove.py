"""A saved scorer as a datatrove filter: `ScorerFilter` in any datatrove pipeline (LocalPipelineExecutor,
SlurmPipelineExecutor, RayPipelineExecutor), scoring `batch_size` documents at a time.

    from datatrove.executor import LocalPipelineExecutor
    from datatrove.pipeline.readers import JsonlReader
    from datatrove.pipeline.writers import JsonlWriter
    from dataselect.integrations.datatrove import ScorerFilter

    LocalPipelineExecutor([JsonlReader("in/"), ScorerFilter("runs/rds/scorer", keep=0.1), JsonlWriter("out/")], tasks=4).run()
"""
from __future__ import annotations

import os
from typing import Any

import numpy as np
from datatrove.data import Document
from datatrove.pipeline.filters.base_filter import BaseFilter
from datatrove.pipeline.writers.disk_base import DiskWriter

from dataselect.integrations.base import LazyScorer, as_float


class ScorerFilter(BaseFilter):
    """Scores each document with a saved scorer (a run's `scorer/` folder) into `doc.metadata[score_key]`
    and, given `keep` (a fraction of the fitting run's pool) or `threshold` (a score), drops the documents
    below it, to `exclusion_writer` when one is given (reason `below_threshold`, or `bad_input` for a
    document the run would have skipped). `text_key`: the record field `doc.text` came from (the reader's
    `text_key`), so a scorer fitted on prompt/response records renders them as its run did. `options`
    reach `dataselect.load_scorer` (device=, batch_tokens=)."""

    name = "🎯 dataselect scorer"

    def __init__(self, scorer: str | os.PathLike, keep: float | None = None, threshold: float | list[float] | None = None,
                 score_key: str = "score", text_key: str = "text", batch_size: int = 1024, exclusion_writer: DiskWriter | None = None,
                 **options: Any) -> None:
        super().__init__(exclusion_writer=exclusion_writer, batch_size=batch_size)
        self.scorer = LazyScorer(scorer, keep=keep, threshold=threshold, **options)
        self.score_key, self.text_key = score_key, text_key

    def filter(self, doc: Document) -> bool | tuple[bool, str]:
        """One document (datatrove calls this only with batch_size 1)."""
        return self.filter_batch([doc])[0]

    def filter_batch(self, batch: list[Document]) -> list[bool | tuple[bool, str]]:
        """The batch's documents scored at once: True to keep each, (False, reason) to drop it."""
        records = [{**doc.metadata, self.text_key: doc.text} for doc in batch]
        scores, passing = self.scorer.score(records)  # [b], [b]
        results: list[bool | tuple[bool, str]] = []
        for doc, score, passed in zip(batch, scores, passing):
            doc.metadata[self.score_key] = as_float(score)
            results.append(True if passed else (False, "bad_input" if np.isnan(score) else "below_threshold"))
        return results
