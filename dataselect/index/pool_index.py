"""A faiss index of a pool's vectors, rows numbered in store row order: exact inner product
(IndexFlatIP, float32 in memory) or, for large pools, IVF (IndexIVFFlat whose coarse quantizer is
this package's own seeded spherical k-means). Saved and loaded with faiss's own index files."""
from __future__ import annotations

import logging
import math
from pathlib import Path

import numpy as np

from dataselect.index.backends import faiss_gpu_available, import_faiss, make_assigner
from dataselect.index.kmeans import spherical_kmeans
from dataselect.index.vectors import TILE_ROWS, ArrayVectors, Vectors, sample

logger = logging.getLogger(__name__)


class PoolIndex:
    """A FAISS index over a pool's stored embeddings, on the CPU or a GPU, searched by inner product."""
    def __init__(self, index, kind: str, device: str = "cpu") -> None:
        self.resources = None  # GPU resources must outlive the GPU index that uses them
        if device != "cpu" and faiss_gpu_available():
            faiss = import_faiss()

            self.resources = faiss.StandardGpuResources()
            index = faiss.index_cpu_to_gpu(self.resources, 0, index)
        self.index = index
        self.kind = kind

    @classmethod
    def build(cls, vectors: Vectors, kind: str = "flat", nlist: int | None = None, nprobe: int = 16, seed: int = 0,
              niter: int = 20, device: str = "auto", tile_rows: int = TILE_ROWS) -> "PoolIndex":
        """Index every vector (streamed in tiles). ivf: `nlist` lists (default 4 sqrt(N)), searched `nprobe` at a time."""
        faiss = import_faiss()

        d, n = vectors.dim(), vectors.count()
        if kind == "flat":
            index = faiss.IndexFlatIP(d)
        elif kind == "ivf":
            nlist = min(n, nlist or max(1, int(4 * math.sqrt(n))))
            train = ArrayVectors(sample(vectors, nlist * 256, seed))  # [<= nlist*256, d]
            centroids = spherical_kmeans(train, nlist, niter, seed, make_assigner("auto", device)).centroids  # [nlist, d]
            quantizer = faiss.IndexFlatIP(d)
            quantizer.add(centroids)  # trained with nlist entries: the IVF index needs no training of its own
            index = faiss.IndexIVFFlat(quantizer, d, nlist, faiss.METRIC_INNER_PRODUCT)  # faiss's wrapper keeps `quantizer` alive
            index.nprobe = min(nprobe, nlist)
        else:
            raise ValueError(f"unknown index kind {kind!r}; choose flat or ivf")
        built = cls(index, kind, device)
        for _, tile in vectors.tiles(tile_rows):
            built.index.add(np.ascontiguousarray(tile))
        return built

    @property
    def ntotal(self) -> int:
        return int(self.index.ntotal)

    def search(self, queries: np.ndarray, k: int = 1) -> tuple[np.ndarray, np.ndarray]:
        """[q, d] float32 -> (inner products [q, k] float32, rows [q, k] int64; -1 where fewer than k were found)."""
        return self.index.search(np.ascontiguousarray(queries, np.float32), k)

    def nearest(self, queries: Vectors, tile_rows: int = TILE_ROWS) -> tuple[np.ndarray, np.ndarray]:
        """Each query's most similar indexed vector, streamed over the queries' tiles. -> ([n], [n])"""
        sims = np.empty(queries.count(), np.float32)
        rows = np.empty(queries.count(), np.int64)
        for start, tile in queries.tiles(tile_rows):
            tile_sims, tile_rows_ = self.search(tile, 1)
            sims[start : start + len(tile)] = tile_sims[:, 0]
            rows[start : start + len(tile)] = tile_rows_[:, 0]
        return sims, rows

    def save(self, path: Path) -> None:
        faiss = import_faiss()

        from dataselect.io.shards import atomic_write

        index = faiss.index_gpu_to_cpu(self.index) if self.resources is not None else self.index
        atomic_write(Path(path), lambda temp: faiss.write_index(index, str(temp)))

    @classmethod
    def load(cls, path: Path, device: str = "auto", nprobe: int | None = None) -> "PoolIndex":
        faiss = import_faiss()

        index = faiss.read_index(str(path))
        kind = "ivf" if isinstance(faiss.downcast_index(index), faiss.IndexIVF) else "flat"
        if nprobe is not None and kind == "ivf":
            faiss.extract_index_ivf(index).nprobe = nprobe
        return cls(index, kind, device)

