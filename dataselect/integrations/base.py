"""What every host's step shares: a saved scorer named by its folder, loaded the first time a batch
reaches it in the process that scores (a Ray actor, a datatrove task, a Curator worker, a DataLoader
worker), never pickled with its model; each batch's best score per record, and which records pass when
the step filters (`keep`, a fraction, or `threshold`, a score)."""
from __future__ import annotations

import math
import os
from typing import Any

import numpy as np

RENDER_FIELDS = ("text_field", "prompt_field", "response_field", "messages_field")


class LazyScorer:
    """A saved scorer (a run's `scorer/` folder, or the run folder) loaded on first use in the process
    that scores. `keep` (a fraction of the fitting run's pool) or `threshold` (a score) makes it filter;
    `options` reach `dataselect.load_scorer` (device=, batch_tokens=)."""

    def __init__(self, scorer: str | os.PathLike, keep: float | None = None, threshold: float | list[float] | None = None, **options: Any) -> None:
        if keep is not None and threshold is not None:
            raise ValueError("give at most one of keep (a fraction) or threshold (a score)")
        if keep is not None and not 0 < keep <= 1:
            raise ValueError(f"keep must be in (0, 1], got {keep}")
        self.path, self.keep, self.threshold, self.options = os.fspath(scorer), keep, threshold, options
        self._scorer: Any = None

    @property
    def filters(self) -> bool:
        """Whether the step drops the records below the threshold (else it only adds their scores)."""
        return self.keep is not None or self.threshold is not None

    @property
    def scorer(self) -> Any:
        """The loaded scorer (`dataselect.load_scorer`), loaded here on first use."""
        if self._scorer is None:
            from dataselect.scorer import load_scorer

            self._scorer = load_scorer(self.path, **self.options)
        return self._scorer

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_scorer": None}  # each process that scores loads its own

    def fields(self, columns: list[str]) -> list[str]:
        """The columns among `columns` that the scorer renders (its run's text, prompt, response and
        messages fields): the only ones a batch needs to hand over."""
        render = self.scorer.description["render"]
        wanted = {render[key] for key in RENDER_FIELDS if render.get(key)}
        return [column for column in columns if column in wanted]

    def score(self, records: Any) -> tuple[np.ndarray, np.ndarray]:
        """([n] float64 best score over the scorer's tasks (NaN: the run's bad input), [n] bool passes):
        every record passes when the step does not filter."""
        scores = np.asarray(self.scorer.score(records), np.float64)  # [n] or [n, T]
        if self.filters:
            passing = self.scorer.passes(scores, keep=self.keep, threshold=self.threshold)
        else:
            passing = np.ones(len(scores), bool)
        if scores.ndim == 2:  # several tasks: the best one's, as scores.parquet's `score`
            unscored = np.isnan(scores).all(axis=1)  # [n] the run's bad input
            scores = np.where(np.isnan(scores), -np.inf, scores).max(axis=1, initial=-np.inf)  # [n]
            scores[unscored] = np.nan
        return scores, passing

    def score_table(self, table: Any, column: str) -> Any:
        """A pyarrow Table with the `column` of scores added, and only its passing rows when the step filters."""
        import pyarrow as pa

        scores, passing = self.score(table.select(self.fields(table.column_names) or table.column_names))  # only what is rendered
        table = table.append_column(column, pa.array(scores, pa.float64()))
        return table.filter(pa.array(passing)) if self.filters else table

    def close(self) -> None:
        """Release the scorer's model (the next batch loads it again)."""
        if self._scorer is not None:
            self._scorer.close()
            self._scorer = None


def as_float(score: float) -> float | None:
    """A score as a JSON-friendly number: None for NaN (a record the run would have skipped)."""
    return None if math.isnan(score) else float(score)
