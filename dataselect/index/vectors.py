"""Data-access objects over embedding vectors, in the spirit of faiss `contrib/clustering.py`'s
DatasetAssign: k-means and the pool index see only count, dim, a seeded sample, rows by index and
tiles, whether the vectors sit in memory (a training sample) or in a shard store on disk (the pool).

Stores hold float16; numpy has no fast float16 matmul, so every tile is upcast to float32 as it is
read, and only one tile is ever upcast at a time.
"""
from __future__ import annotations

from typing import Iterator, Protocol

import numpy as np

from dataselect.io.shards import ShardStore

TILE_ROWS = 16384  # rows upcast and searched at a time (16k x 384 float32 = 25 MB)
EMBEDDING_ARRAY = "emb"  # the array name the embedding stage writes per shard


def read_store_vectors(store: ShardStore, shard: int) -> np.ndarray:
    """The one place that reads a shard's embedding array: [n, d] float16, memory-mapped."""
    return store.read_array(shard, EMBEDDING_ARRAY)


class Vectors(Protocol):
    """What k-means and the index need from a set of vectors."""

    def count(self) -> int: ...

    def dim(self) -> int: ...

    def rows(self, indices: np.ndarray) -> np.ndarray:
        """The given rows, in the given order, as float32. [len(indices)] -> [len(indices), d]"""
        ...

    def tiles(self, tile_rows: int = TILE_ROWS) -> Iterator[tuple[int, np.ndarray]]:
        """(first row, [t, d] float32 tile) over all rows in order."""
        ...


def seeded_sample(count: int, size: int, seed: int) -> np.ndarray:
    """`size` distinct row numbers of `count`, sorted (reads stay sequential), fixed by the seed.
    All rows when size >= count. -> [min(size, count)] int64"""
    if size >= count:
        return np.arange(count, dtype=np.int64)
    rng = np.random.default_rng([seed, 0x5A4D])  # a stream of its own: the seed also drives k-means init
    return np.sort(rng.choice(count, size=size, replace=False)).astype(np.int64)


def sample(vectors: Vectors, size: int, seed: int) -> np.ndarray:
    """A seeded sample of rows as float32, for training. -> [min(size, n), d]"""
    return vectors.rows(seeded_sample(vectors.count(), size, seed))


class ArrayVectors:
    """Vectors already in memory (a training sample, a test matrix); kept as float32."""

    def __init__(self, x: np.ndarray) -> None:
        if x.ndim != 2:
            raise ValueError(f"expected a [n, d] matrix, got shape {x.shape}")
        self.x = np.ascontiguousarray(x, dtype=np.float32)  # [n, d]

    def count(self) -> int:
        return int(self.x.shape[0])

    def dim(self) -> int:
        return int(self.x.shape[1])

    def rows(self, indices: np.ndarray) -> np.ndarray:
        return self.x[np.asarray(indices, np.int64)]

    def tiles(self, tile_rows: int = TILE_ROWS) -> Iterator[tuple[int, np.ndarray]]:
        for start in range(0, self.count(), tile_rows):
            yield start, self.x[start : start + tile_rows]


class SubsetVectors:
    """Some rows of other vectors (e.g. a pool without its exact duplicates), still streamed in tiles."""

    def __init__(self, vectors: Vectors, rows: np.ndarray) -> None:
        self.vectors = vectors
        self.subset = np.asarray(rows, np.int64)  # [m] rows of `vectors`

    def count(self) -> int:
        return len(self.subset)

    def dim(self) -> int:
        return self.vectors.dim()

    def rows(self, indices: np.ndarray) -> np.ndarray:
        return self.vectors.rows(self.subset[np.asarray(indices, np.int64)])

    def tiles(self, tile_rows: int = TILE_ROWS) -> Iterator[tuple[int, np.ndarray]]:
        for start in range(0, self.count(), tile_rows):
            yield start, self.vectors.rows(self.subset[start : start + tile_rows])


class StoreVectors:
    """The float16 vectors of a shard store, in store row order, read shard by shard (memory-mapped)."""

    def __init__(self, store: ShardStore) -> None:
        self.store = store
        self.shard_rows = store.rows()  # [num_shards]
        self.offsets = np.concatenate([[0], np.cumsum(self.shard_rows)]).astype(np.int64)  # [num_shards + 1]
        self._dim: int | None = None

    def shard(self, index: int) -> np.ndarray:
        return read_store_vectors(self.store, index)

    def count(self) -> int:
        return int(self.offsets[-1])

    def dim(self) -> int:
        if self._dim is None:
            shapes = [self.shard(i).shape for i in range(len(self.shard_rows)) if self.shard_rows[i]]
            if not shapes:
                raise ValueError(f"the store {self.store.root} holds no vectors")
            self._dim = int(shapes[0][1])
        return self._dim

    def rows(self, indices: np.ndarray) -> np.ndarray:
        indices = np.asarray(indices, np.int64)  # [m]
        out = np.empty((len(indices), self.dim()), np.float32)  # [m, d]
        if len(indices) == 0:
            return out
        shard_of = np.searchsorted(self.offsets, indices, side="right") - 1  # [m]
        for shard in np.unique(shard_of):
            where = np.flatnonzero(shard_of == shard)
            local = indices[where] - self.offsets[shard]
            half = self.shard(int(shard))  # [n_s, d] float16 memmap
            if np.array_equal(local, np.arange(len(half))) and np.array_equal(where, np.arange(where[0], where[0] + len(half))):
                out[where[0] : where[0] + len(half)] = half  # the whole shard, in order: one converting copy
            else:
                order = np.argsort(local, kind="stable")  # a sorted gather reads the memory map front to back
                out[where[order]] = half[local[order]]
        return out

    def tiles(self, tile_rows: int = TILE_ROWS) -> Iterator[tuple[int, np.ndarray]]:
        for index in range(len(self.shard_rows)):
            if not self.shard_rows[index]:
                continue
            half = self.shard(index)  # [n_s, d] float16 memmap
            base = int(self.offsets[index])
            for start in range(0, len(half), tile_rows):
                yield base + start, np.asarray(half[start : start + tile_rows], dtype=np.float32)  # [t, d]
