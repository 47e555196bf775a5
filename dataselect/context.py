"""The run context: what a method gets from the run around it (the config, where to write, the executor)
and the two things every method does through it: `score_source`, the one way a stage runs over a source,
and `eligible`, the one rule for which pool samples may be selected."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from dataselect.config import Config, SourceConfig
from dataselect.errors import ConfigError
from dataselect.executors.base import Executor
from dataselect.io.categorical import report_fields
from dataselect.io.ids import listed_ids
from dataselect.io.locate import SkippedFile, resolve_locations
from dataselect.io.render import TextRenderer
from dataselect.io.shards import ShardStore
from dataselect.scoring.loop import ScoredSource, run_stage
from dataselect.scoring.stage import ScoreStage
from dataselect.select.base import GENERIC_EXCLUSIONS, Excluded, exclusion_reasons, first_occurrences, require_usable_pool
from dataselect.stats import RunStats


@dataclass
class RunContext:
    """What a method needs from the run around it: the config, where to write, and `score_source`,
    the one way a method's stage runs over a source (on the run's executor, with the bookkeeping)."""

    config: Config
    output_dir: Path
    cache_root: Path
    executor: Executor
    method: Any = None  # the running method (what it declares: budgeted, ...)
    stats: RunStats = field(default_factory=RunStats)
    scored: dict[str, ScoredSource] = field(default_factory=dict)
    stage_kinds: dict[str, str] = field(default_factory=dict)
    stage_dtypes: dict[str, dict[str, str]] = field(default_factory=dict)  # a model stage's dtype and why (manifest)
    excluded_target_copies: int = 0
    skipped_files: dict[str, list[SkippedFile]] = field(default_factory=dict)  # by role: files a directory input did not read
    id_report: dict[str, Any] = field(default_factory=dict)  # duplicate and empty pool ids
    single_use_stores: list[ShardStore] = field(default_factory=list)  # removed after the run (standard input's)
    exclusions: np.ndarray | None = None  # [N] object: why each pool row may not be selected (None: it may)
    not_eligible: dict[str, tuple[int, str]] = field(default_factory=dict)  # reason -> (pool rows it keeps out, how to say it)

    def score_source(self, name: str, source: SourceConfig, stage: ScoreStage, renderer: TextRenderer, fields: dict[str, str] | None = None) -> ScoredSource:
        """Score `source` with `stage` through the score-phase loop; `name` ("pool", "target", ...) names
        it in the manifest. A pool with no usable sample stops the run here."""
        role = "pool" if name == "pool" else name
        if name == "pool":  # the report's composition: the input's categorical fields, copied as store columns
            fields = report_fields(source, self.config.output.report_field) | (fields or {})
        with self.stats.stage(f"score_{name}"):
            result = run_stage(source, role, renderer, stage, self.config.runtime, self.cache_root, self.executor, fields)
        if any(kind == "stdin" for kind, _ in resolve_locations(source)):
            self.single_use_stores.append(result.store)
        if name == "pool":
            require_usable_pool(result.stats)
        self.scored[name] = result
        self.stage_kinds[name] = stage.kind
        if getattr(stage, "dtype_choice", None):
            self.stage_dtypes[name] = stage.dtype_choice
        return result

    def eligible(self, source: ScoredSource, dedup: bool = True, **excluded: Excluded) -> np.ndarray:
        """[N] bool: the rows of `source` a method may select, by one rule for every method: none of the
        method's own reasons (`excluded`: name -> Excluded, e.g. short=, unscored=) holds, the row is the
        first of its exact duplicates (when `dedup`), and its text is not a target sample's after
        normalising whitespace (unless method.exclude_target_copies is off). For the pool, each row's
        first reason is kept for scores.parquet, and each reason's count for the manifest and summary."""
        rows = int(source.store.rows().sum())
        is_pool = source is self.scored.get("pool")
        listed = self._listed(source) if is_pool and self.config.input.ids_from else None  # [N] bool, or None: every row
        masks = {} if listed is None else {"not_listed": ~listed}
        masks |= {name: np.asarray(reason.mask, bool) for name, reason in excluded.items()}
        if dedup:  # the first of its copies among the listed rows, as in a file holding only those
            masks["duplicate"] = ~first_occurrences(source.store.column("text_hash").to_numpy(), listed) if rows else np.zeros(0, bool)
        masks["target_copy"] = self._target_copies(source, rows)
        eligible = ~np.logical_or.reduce(list(masks.values())) if rows else np.zeros(0, bool)
        if is_pool:
            self.excluded_target_copies = int(masks["target_copy"].sum())
            self.exclusions = exclusion_reasons(masks, rows)
            whys = {name: reason.why for name, reason in excluded.items()} | GENERIC_EXCLUSIONS
            self.not_eligible = {name: (int(mask.sum()), whys[name]) for name, mask in masks.items() if mask.any()}
        return eligible

    def exclude(self, name: str, reason: Excluded) -> None:
        """A reason found after `eligible` (semantic dedup works on the eligible pool rows): the rows it newly
        keeps out get it in scores.parquet, and its count reaches the manifest and summary."""
        if self.exclusions is None:  # `eligible` was not asked about the run's pool
            return
        newly = np.asarray(reason.mask, bool) & np.equal(self.exclusions, None)  # [N]
        self.exclusions[newly] = name
        if newly.any():
            self.not_eligible[name] = (int(newly.sum()), reason.why)

    def budget(self, eligible: np.ndarray) -> int:
        """How many to select from the `eligible` rows ([N] bool), by one rule for every method: method.budget
        as a count or a fraction of them, never more than there are (the summary then says why fewer)."""
        return self.config.method.budget_for(int(np.count_nonzero(eligible)))

    def _listed(self, source: ScoredSource) -> np.ndarray:
        """[N] bool: the pool rows whose id input.ids_from names (the pool's store is the whole source's, a
        cache hit when an earlier run scored it)."""
        ids = listed_ids(self.config.input.ids_from)
        listed = pc.is_in(source.store.column("id").cast(pa.string()), value_set=ids).to_numpy(zero_copy_only=False)
        if not listed.any():
            raise ConfigError(f"config error: input.ids_from: none of its {len(ids):,} ids is a pool sample's id (an earlier run over another pool?)")
        return listed

    def _target_copies(self, source: ScoredSource, rows: int) -> np.ndarray:
        """[N] bool: rows whose normalised text equals a target sample's (none when the check is off)."""
        target = self.scored.get("target")
        if target is None or not self.config.method.exclude_target_copies or not rows:
            return np.zeros(rows, bool)
        copies = np.isin(source.store.column("norm_hash").to_numpy(), target.store.column("norm_hash").to_numpy())
        if copies.all():
            raise ConfigError("config error: method.exclude_target_copies: every pool sample is a copy of a target sample; "
                              "set it to false to select from them anyway")
        return copies
