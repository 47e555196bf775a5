"""Seeded samples of a source that do not depend on how it is read: a sample's membership is a hash of
the seed and its id, so the same seed picks the same samples whatever the shard size, batch size,
worker count or executor.

`SampledStage` runs another stage on the sampled part of each shard only (BETR embeds a sample of the
pool this way), through the one score-phase loop: its store holds just the sampled rows, in stream
order, and is keyed by the inner stage's identity plus the sample's seed and limit. `ChosenStage` does
the same for rows a method chose itself, by their positions in the source (Quad's bandit draws).
"""
from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING, Any, Iterable

import numpy as np

from dataselect.scoring.stage import ShardOutput

if TYPE_CHECKING:
    from dataselect.io.samples import Sample

KEY_SPACE = 1 << 64  # sample_key values lie in [0, KEY_SPACE)
SAMPLE_FORMAT = 1  # bump when sample_key changes


def sample_key(seed: int, sample_id: str, salt: str = "") -> int:
    """A uniform 64-bit key of (seed, id): a sample is in a seeded sample when its key is small.
    `salt` draws an independent key from the same seed (BETR's held-out split)."""
    text = f"{seed}:{salt}:{sample_id}" if salt else f"{seed}:{sample_id}"
    return int.from_bytes(hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=8).digest(), "little")


def sample_keys(seed: int, ids: Iterable[str], salt: str = "") -> np.ndarray:
    """sample_key of every id. -> [n] uint64"""
    return np.fromiter((sample_key(seed, i, salt) for i in ids), np.uint64)


def fraction_limit(fraction: float) -> int:
    """The key limit of a fraction: a sample is kept when its key is below it."""
    return min(KEY_SPACE, int(fraction * KEY_SPACE))


def count_limit(keys: np.ndarray, count: int) -> int:
    """The key limit that keeps the `count` samples with the smallest keys (all of them when there are
    fewer); samples sharing an id share a key, so a duplicated id at the limit keeps every copy."""
    if count >= len(keys):
        return KEY_SPACE
    return int(np.partition(keys, count - 1)[count - 1]) + 1


def in_sample(seed: int, limit: int, samples: Iterable[Any], salt: str = "") -> list[bool]:
    """For each sample, whether its seeded key falls below `limit` (it is in the sample)."""
    return [sample_key(seed, s.id, salt) < limit for s in samples]


class SampledStage:
    """`inner` on the samples whose key under `seed` is below `limit`; the store's rows are those samples."""

    def __init__(self, inner: Any, seed: int, limit: int) -> None:
        self.inner = inner
        self.seed = seed
        self.limit = int(limit)
        self.kind = inner.kind
        self.resources = inner.resources
        self.token_unit = getattr(inner, "token_unit", "tokens")

    def identity(self) -> dict[str, Any]:
        return {"inner": self.inner.identity(), "sample": {"format": SAMPLE_FORMAT, "seed": self.seed, "limit": str(self.limit)}}

    def kept(self, samples: list["Sample"]) -> list["Sample"]:
        return [s for s, keep in zip(samples, in_sample(self.seed, self.limit, samples)) if keep]

    def setup(self, device: str | None) -> None:
        self.inner.setup(device)

    def prepare(self, samples: list["Sample"]) -> Any:
        """The inner stage's prepare of the kept samples (None when it has none: then score does all)."""
        prepare = getattr(self.inner, "prepare", None)
        return prepare(self.kept(samples)) if prepare is not None else None

    def score(self, samples: list["Sample"], prepared: Any = None) -> ShardOutput:
        kept = self.kept(samples)
        output = self.inner.score(kept) if prepared is None else self.inner.score(kept, prepared)
        if output.rows is None:
            output.rows = kept
        return output

    def close(self) -> None:
        self.inner.close()


class ChosenStage(SampledStage):
    """`inner` on the samples at the given stream `positions` only; keyed by the inner identity and a digest of the positions."""

    def __init__(self, inner: Any, positions: Iterable[int]) -> None:
        super().__init__(inner, 0, 0)
        self.positions = frozenset(int(p) for p in positions)

    def identity(self) -> dict[str, Any]:
        digest = hashlib.sha256(np.array(sorted(self.positions), np.int64).tobytes()).hexdigest()[:24]
        return {"inner": self.inner.identity(), "chosen": {"positions": digest, "count": len(self.positions)}}

    def kept(self, samples: list["Sample"]) -> list["Sample"]:
        return [s for s in samples if s.position in self.positions]
