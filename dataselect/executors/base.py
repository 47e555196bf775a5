"""The executor seam: where the planned shards of a score stage run.

An executor takes a picklable `ShardWork` (scoring/loop.py's ShardTask: source, renderer, stage, store
folder) and the shards still to score, runs it for each wherever it likes (this process, worker
processes, a cluster), and yields each shard's result as it finishes. The task writes its shard into the store itself, so
the executor moves no data; shard order never matters, because the store is read in plan order.
"""
from __future__ import annotations

from typing import Any, Iterable, Iterator, Protocol

from dataselect.io.plan import ShardSpec


class ShardWork(Protocol):
    """One source's work per shard, picklable: `load` reads and renders a shard (wherever it is read),
    `score` scores what was loaded and writes the shard into the store, returning its result; calling
    it does both (in a worker process). `stage` and `store_root` tell an executor what the work needs."""

    stage: Any
    store_root: str

    def load(self, spec: ShardSpec) -> Any: ...

    def score(self, spec: ShardSpec, loaded: Any) -> Any: ...

    def __call__(self, spec: ShardSpec) -> Any: ...


class Executor(Protocol):
    """Where shards are scored: this process, worker processes, or a Ray cluster (executors/)."""
    def map(self, task: ShardWork, specs: Iterable[ShardSpec]) -> Iterator[Any]:
        """Run the task over the shards; results as they finish (any order)."""
        ...

    def close(self) -> None:
        """Stop workers and release what the stages hold."""
        ...

    def describe(self) -> dict:
        """What the manifest records of where the shards ran."""
        ...
