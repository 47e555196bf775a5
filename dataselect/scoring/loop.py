"""The one score-phase loop: a stage over a source's planned shards, on an executor.

For each source and stage: the store keyed by the source, the rendering, the stage's identity and the
copied fields (so it doubles as the cache); a finished store is a hit (its recorded bad inputs still
stop an `on_error: fail` run); otherwise every planned shard not yet done goes to the executor, whose
workers read, render, score and write it atomically, and the loop sums their counters under a progress
bar. When all shards are done the store is completed (row index, consolidated metadata).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from dataselect.io.shards import ShardStore
from dataselect.stats import SourceStats


@dataclass
class ScoredSource:
    """A source after its score phase: the store the select phase reads, and what this run did."""

    store: ShardStore
    stats: SourceStats
    cached: str  # "hit" (nothing recomputed), "partial" (resumed) or "miss"
    counters: dict[str, float] = field(default_factory=dict)  # summed over the shards this run scored
    resumed_shards: int = 0  # shards an earlier run had finished

    def counter(self, name: str) -> float:
        return self.counters.get(name, 0)
