"""The executor seam: where the planned shards of a score stage run.

An executor takes a picklable `ShardTask` (source, renderer, stage, store folder) and the shards still
to score, runs `task(spec)` for each wherever it likes (this process, worker processes, a cluster), and
yields each shard's `ShardResult` as it finishes. The task writes its shard into the store itself, so
the executor moves no data; shard order never matters, because the store is read in plan order.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Iterable, Iterator, Protocol

if TYPE_CHECKING:
    from dataselect.io.plan import ShardSpec
    from dataselect.scoring.loop import ShardResult, ShardTask


class Executor(Protocol):
    def map(self, task: "ShardTask", specs: Iterable["ShardSpec"]) -> Iterator["ShardResult"]:
        """Run the task over the shards; results as they finish (any order)."""
        ...

    def close(self) -> None:
        """Stop workers and release what the stages hold."""
        ...

    def describe(self) -> dict:
        """What the manifest records of where the shards ran."""
        ...
