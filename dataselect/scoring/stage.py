"""The score-stage protocol: what one piece of the score phase (embedding, n-gram features, loss)
tells the one score-phase loop (`scoring/loop.py`), which runs it over a source's planned shards on
any executor.

A stage is created in the driver (cheap: configuration only, no weights), pickled to every worker,
set up there once (`setup`: load the model or tokenizer), then called once per shard. It never
touches files: the loop reads the shard, renders its samples, and writes what `score` returns
atomically into the store (columns into the shard's metadata, arrays as .npy files beside it).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

if TYPE_CHECKING:
    from dataselect.io.samples import Sample


@dataclass(frozen=True)
class Resources:
    """What a stage's worker needs: a GPU (one worker per visible GPU on CUDA), or CPUs only."""

    gpu: bool = False


@dataclass
class ShardOutput:
    """What a stage returns for one shard.

    rows:     the samples the rows describe, when not one row per input sample (DSIR's word chunks);
              None means `samples` as given
    columns:  per-row metadata columns ({name: [n] values}), stored beside id/position/text_hash/preview
    arrays:   per-row arrays ({name: [n, ...]}), stored as shard-NNNNNN.<name>.npy
    counters: what the shard cost ({"docs": n, "tokens": t, "padded_tokens": p, ...}); the loop adds
              "seconds", and the run sums every counter over shards for the manifest's throughput
    """

    columns: dict[str, Any] = field(default_factory=dict)
    arrays: dict[str, np.ndarray] = field(default_factory=dict)
    counters: dict[str, float] = field(default_factory=dict)
    rows: list["Sample"] | None = None


class ScoreStage(Protocol):
    """One score stage. `kind` names its family of stores under the cache folder."""

    kind: str  # "embeddings", "ngrams", "loss", "samples", ...
    resources: Resources

    def identity(self) -> dict[str, Any]:
        """Everything that decides what `score` returns (the stage's part of the cache key). Cheap:
        called in the driver, before and without `setup`."""
        ...

    def setup(self, device: str | None) -> None:
        """Once per worker process, before its first shard: load the model or tokenizer. `device` is the
        worker's device ("cuda:0", "cpu"), or None to resolve `runtime.device` as configured."""
        ...

    def score(self, samples: list["Sample"]) -> ShardOutput:
        """Score one shard's samples (in shard order). A stage with the optional `prepare(samples)`
        (CPU work that needs no set-up, e.g. tokenising; it may run in another thread, before `setup`,
        while the previous shard is scored) is called as `score(samples, prepared)` with its result."""
        ...

    def close(self) -> None:
        """Release worker processes or memory the stage holds (end of the run)."""
        ...
