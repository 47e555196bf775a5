"""The read-ahead loop every score phase shares: unfinished shards of a source, read, rendered and
handed to a `prepare` step (which usually starts worker-process work and returns a future), one shard
ahead of the consumer, so reading and CPU work overlap with the model or the writer."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Iterator

from dataselect.config import SourceConfig
from dataselect.io.render import TextRenderer
from dataselect.io.shards import ShardStore, record_shards
from dataselect.io.sources import Sample, to_sample
from dataselect.stats import SourceStats


@dataclass
class PreparedShard:
    index: int
    samples: list[Sample]
    stats: SourceStats  # this shard's input counts and bad records
    work: Any  # what `prepare` returned for it


class ShardStream:
    """Iterate the unfinished shards of `source` (finished ones are skipped: resume and cache)."""

    def __init__(
        self,
        source: SourceConfig,
        role: str,
        renderer: TextRenderer,
        store: ShardStore,
        shard_size: int,
        prepare: Callable[[list[Sample]], tuple[list[Sample], Any]],
    ) -> None:
        self.source, self.role, self.renderer, self.store = source, role, renderer, store
        self.shard_size = shard_size
        self.prepare = prepare
        self.resumed = False  # some shards were already finished by an earlier run
        self._last_index = -1

    def _prepared(self) -> Iterator[PreparedShard]:
        for index, records in record_shards(self.source, self.shard_size):
            if self.store.is_done(index):
                self.resumed = True
                continue
            stats = SourceStats(self.role)
            samples = [s for s in (to_sample(r, self.source, self.renderer, stats) for r in records) if s is not None]
            samples, work = self.prepare(samples)
            yield PreparedShard(index, samples, stats, work)

    def __iter__(self) -> Iterator[PreparedShard]:
        stream = self._prepared()
        upcoming = next(stream, None)
        while upcoming is not None:
            current = upcoming
            upcoming = next(stream, None)  # the next shard is read and started before this one is used
            self._last_index = current.index
            yield current

    def total_shards(self) -> int:
        """After iterating: the source's shard count, the already finished shards included."""
        count = self._last_index + 1
        while self.store.is_done(count):
            count += 1
        return count
