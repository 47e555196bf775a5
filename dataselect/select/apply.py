"""`dataselect apply` (method.name: apply): a saved scorer over any input, on the run's executors.

score:  the input's planned shards through the one score-phase loop, with the scorer as the stage
        (set up once per worker; a store per input and scorer, so a killed apply resumes per shard)
select: every record whose score reaches the threshold (`method.apply.threshold`, or the scorer's
        `threshold(method.apply.keep)`, for at least one task), best first; the rest are excluded
        as below_threshold in scores.parquet, and the passing records are written in input order
"""
from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import numpy as np

from dataselect.errors import ConfigError
from dataselect.methods import method_class
from dataselect.scorer.base import local_scorer_folder, scorer_renderer, threshold_of
from dataselect.scorer.folder import DESCRIPTION, read_folder
from dataselect.scoring.loop import ScoredSource
from dataselect.scoring.stage import Resources, ShardOutput
from dataselect.select.base import Declared, Excluded, Selection, selected_rows, task_scores, top_k


class ScorerStage:
    """A saved scorer as a score stage: each shard's rendered texts -> their scores, stored as `scores` [n, T]."""

    kind = "scorer"
    token_unit = "docs"

    def __init__(self, folder: Path, description: dict[str, Any], device: str) -> None:
        self.folder, self.device = str(folder), device
        self.digest = hashlib.blake2b((folder / DESCRIPTION).read_bytes(), digest_size=16).hexdigest()  # names every array's digest
        self.resources = Resources(gpu=method_class(description["method"]).scorer_type.gpu)  # the scorer says whether it runs a forward
        self.scorer: Any = None

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "scorer": None}  # the scorer loads in each worker

    def identity(self) -> dict[str, Any]:
        return {"scorer": self.digest}

    def setup(self, device: str | None) -> None:
        from dataselect.scorer import load_scorer

        self.scorer = load_scorer(self.folder, device=device or self.device)

    def score(self, samples: list) -> ShardOutput:
        scores = self.scorer.score_texts([s.text for s in samples], [s.record for s in samples]) if samples else np.zeros((0, len(self.scorer.tasks)))
        return ShardOutput(arrays={"scores": np.asarray(scores, np.float64)}, counters={"docs": len(samples)})

    def close(self) -> None:
        if self.scorer is not None:
            self.scorer.close()
            self.scorer = None


class ApplyMethod(Declared):
    """`method.name: apply`: a saved scorer over the input, keeping what passes its threshold (dataselect apply)."""
    name = "apply"
    description = "apply: a saved scorer (method.apply.scorer) over the input, keeping what reaches its threshold (dataselect apply)"

    def loads(self, config: Any) -> str | None:
        return None  # the scorer names its own model
    budgeted = False  # it keeps what reaches a threshold, however many that is

    def score(self, context: Any) -> dict[str, ScoredSource]:
        config, options = context.config, context.config.method.apply
        if options.scorer is None:
            raise ConfigError("config error: method.apply.scorer: name a saved scorer's folder (a run's output/scorer)")
        folder = local_scorer_folder(options.scorer, config.runtime.storage_options, config.runtime.cache_dir)  # object storage: a local copy
        self.description, arrays = read_folder(folder)  # a damaged folder stops here, before any shard
        self.fitted = arrays["fitted_scores"]
        self.tasks = [str(t) for t in self.description["tasks"]]
        render = self.description["render"]
        source = config.input.model_copy(update=render)  # the records are read as the fitting run read its own
        stage = ScorerStage(folder, self.description, config.runtime.device)
        return {"pool": context.score_source("pool", source, stage, scorer_renderer(self.description))}

    def threshold(self, options: Any) -> np.ndarray:
        """[T] the score each task's record must reach."""
        if options.threshold is not None:
            values = np.atleast_1d(np.asarray(options.threshold, np.float64))
            if len(values) not in (1, len(self.tasks)):
                raise ConfigError(f"config error: method.apply.threshold: {len(values)} values for the scorer's {len(self.tasks)} tasks {self.tasks}")
            return np.broadcast_to(values, (len(self.tasks),))
        return np.atleast_1d(threshold_of(self.fitted, options.keep))

    def select(self, context: Any, scored: dict[str, ScoredSource]) -> Selection:
        options = context.config.method.apply
        store = scored["pool"].store
        parts = [np.asarray(store.read_array(i, "scores"), np.float64) for i in range(store.num_shards)]
        scores = np.concatenate(parts) if parts else np.zeros((0, len(self.tasks)))  # [N, T]
        limit = self.threshold(options)  # [T]
        with np.errstate(invalid="ignore"):
            passing = (scores >= limit).any(axis=1)  # [N]
        below = Excluded(~passing, f"below the scorer's threshold ({', '.join(f'{v:.6g}' for v in limit)})")
        eligible = context.eligible(scored["pool"], dedup=False, below_threshold=below)
        best = scores.max(axis=1, initial=-np.inf) if len(self.tasks) > 1 else scores[:, 0]  # [N]
        chosen = top_k(best, int(eligible.sum()), eligible)
        return Selection(
            **selected_rows(store, chosen), scores=best[chosen], scored=len(scores), unique=len(scores),
            **task_scores(scores, self.tasks),
            metrics={"scorer": {k: v for k, v in self.description.items() if k in ("method", "created", "tasks", "model", "render", "versions")},
                     "threshold": [float(v) for v in limit], "keep": options.keep, "passed": int(passing.sum())},
        )
