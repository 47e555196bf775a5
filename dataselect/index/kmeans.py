"""One seeded spherical k-means over any `Vectors` (vectors.py) and any nearest-centroid backend
(backends.py), after faiss `contrib/clustering.py`: train on a seeded sample with an explicit cap
of points per centroid (faiss.Kmeans.train would silently subsample to 256 per centroid), then
assign every pool vector by streaming over the store in tiles.

Each iteration: assign the training vectors to their most similar centroid, move each centroid to
the mean of its members, split a populous cluster into any empty one (faiss's rule: chosen with
probability ~ size - 1, a symmetric 1/1024 perturbation), renormalise to unit length (spherical).
When an assignment equals the previous one, the centroids would not move again: k-means stops there
(the result is the one more iterations would give; faiss stops at convergence too).
The seed fixes the sample, the initial centroids and the splits; nothing depends on thread counts.
"""
from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from dataselect.index.backends import Assigner, make_assigner
from dataselect.index.vectors import TILE_ROWS, ArrayVectors, SubsetVectors, Vectors, sample

logger = logging.getLogger(__name__)

SPLIT_EPS = 1.0 / 1024  # faiss's perturbation when an empty centroid takes over half of a cluster
MIN_POINTS_PER_CENTROID = 39  # faiss warns below this many training points per centroid


def assign_to(vectors: Vectors, centroids: np.ndarray, assigner: Assigner, tile_rows: int = TILE_ROWS,
              with_sums: bool = True, progress: bool = False) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Every vector's most similar centroid, streamed in tiles.

    centroids: [k, d] float32
    returns:   labels [n] int64, similarities [n] float32, and (with_sums) the per-centroid sums of
               the members [k, d] (float32 sums, as faiss; None otherwise)
    """
    n, k = vectors.count(), len(centroids)
    labels = np.empty(n, np.int64)  # [n]
    sims = np.empty(n, np.float32)  # [n]
    in_memory = isinstance(vectors, ArrayVectors)
    # torch's CPU index_add_ adds rows in index order (deterministic), ~10x np.add.reduceat; in memory,
    # one call after the search loop, so the search's threads and torch's never take turns per tile
    sums = torch.zeros((k, centroids.shape[1]), dtype=torch.float32) if with_sums else None  # [k, d]
    assigner.set_centroids(centroids)
    bar = tqdm(total=n, desc="assign", unit=" vec", disable=not progress, mininterval=0.5)
    for start, tile in vectors.tiles(tile_rows):  # tile: [t, d] float32
        tile_sims, tile_labels = assigner.nearest(tile)  # [t], [t]
        labels[start : start + len(tile)] = tile_labels
        sims[start : start + len(tile)] = tile_sims
        if sums is not None and not in_memory:
            sums.index_add_(0, torch.from_numpy(tile_labels), torch.from_numpy(np.ascontiguousarray(tile)))
        bar.update(len(tile))
    bar.close()
    if sums is not None and in_memory:
        sums.index_add_(0, torch.from_numpy(labels), torch.from_numpy(vectors.x))
    return labels, sims, None if sums is None else sums.numpy().astype(np.float64)


def imbalance_factor(counts: np.ndarray) -> float:
    """k * sum(size^2) / n^2: 1 for equal clusters, larger when a few clusters hold most points (faiss's)."""
    n = counts.sum()
    return float(len(counts) * np.square(counts, dtype=np.float64).sum() / float(n) ** 2) if n else 0.0


def split_empty(counts: np.ndarray, centroids: np.ndarray, rng: np.random.Generator) -> int:
    """Give each empty centroid half of a populous cluster (picked with probability ~ size - 1), in
    place; returns how many were split. counts: [k] (updated as if each split were even)."""
    empty = np.flatnonzero(counts == 0)
    sign = np.where(np.arange(centroids.shape[1]) % 2 == 0, 1.0, -1.0) * SPLIT_EPS  # [d]
    for ci in empty:
        weights = np.maximum(counts - 1, 0).astype(np.float64)
        if weights.sum() == 0:
            break  # every cluster has one point: nothing to split
        cj = int(rng.choice(len(counts), p=weights / weights.sum()))
        base = centroids[cj].copy()
        centroids[ci] = base * (1 + sign)
        centroids[cj] = base * (1 - sign)
        counts[ci] = counts[cj] // 2
        counts[cj] -= counts[ci]
    return len(empty)


def _normalise(x: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return (x / np.maximum(norms, 1e-12)).astype(np.float32)


def _stats(iteration: int, sims: np.ndarray, counts: np.ndarray, nsplit: int, started: float, converged: bool = False) -> dict[str, Any]:
    """One iteration's figures for the manifest (objective: the sum of every point's cosine to its centroid)."""
    stats = {"iteration": iteration, "objective": float(sims.astype(np.float64).sum()), "seconds": round(time.perf_counter() - started, 4),
             "imbalance": round(imbalance_factor(counts), 4), "nsplit": nsplit}
    return stats | {"converged": True} if converged else stats


@dataclass
class KMeansResult:
    centroids: np.ndarray  # [k, d] float32, unit rows
    iterations: list[dict[str, Any]]  # per iteration: objective, seconds, imbalance, nsplit
    train_points: int
    backend: str


def kmeans_plus_plus(train: Vectors, k: int, rng: np.random.Generator) -> np.ndarray:
    """k-means++ seeding: each next centroid is a training vector drawn with probability ~ its squared
    distance to the nearest centroid so far (2 - 2 cos for unit vectors). One pass over the vectors
    per centroid, so it suits small k; random init (faiss's) costs nothing. -> [k] row numbers"""
    n = train.count()
    chosen = [int(rng.integers(n))]
    best = np.full(n, -np.inf, np.float32)  # [n] cosine to the nearest chosen centroid
    for _ in range(1, k):
        centre = train.rows(np.array(chosen[-1:]))[0]  # [d]
        for start, tile in train.tiles():
            np.maximum(best[start : start + len(tile)], tile @ centre, out=best[start : start + len(tile)])
        weights = np.maximum(2.0 - 2.0 * best.astype(np.float64), 0.0)  # [n]
        total = weights.sum()
        chosen.append(int(rng.choice(n, p=weights / total)) if total > 0 else int(rng.integers(n)))
    return np.array(chosen, np.int64)


def spherical_kmeans(train: Vectors, k: int, niter: int, seed: int, assigner: Assigner, tile_rows: int = TILE_ROWS,
                     progress: bool = False, init: str = "random") -> KMeansResult:
    """Seeded spherical k-means over every vector of `train` (put a sample in an ArrayVectors first).
    init: random (k distinct training vectors, as faiss) or kmeans++."""
    n = train.count()
    if k > n:
        raise ValueError(f"{k} clusters need at least {k} training vectors, got {n}")
    if n < k * MIN_POINTS_PER_CENTROID:
        logger.warning("k-means: %d training points for %d centroids (fewer than %d per centroid)", n, k, MIN_POINTS_PER_CENTROID)
    rng = np.random.default_rng([seed, 0x4B4D])
    if init == "random":
        first = np.sort(rng.choice(n, size=k, replace=False))
    elif init == "kmeans++":
        first = kmeans_plus_plus(train, k, rng)
    else:
        raise ValueError(f"unknown init {init!r}; choose random or kmeans++")
    centroids = _normalise(train.rows(first))  # [k, d]
    iterations = []
    previous: np.ndarray | None = None
    bar = tqdm(total=niter, desc="k-means", unit=" it", disable=not progress)
    for iteration in range(niter):
        started = time.perf_counter()
        labels, sims, sums = assign_to(train, centroids, assigner, tile_rows)
        counts = np.bincount(labels, minlength=k)  # [k]
        if previous is not None and np.array_equal(labels, previous):
            # the same members as last time give the same centroids again: converged (faiss stops too)
            iterations.append(_stats(iteration, sims, counts, 0, started, converged=True))
            break
        centroids = (sums / np.maximum(counts, 1)[:, None]).astype(np.float32)  # [k, d]; an empty one is 0
        nsplit = split_empty(counts.copy(), centroids, rng)
        centroids = _normalise(centroids)
        previous = None if nsplit else labels  # a split moves centroids whatever the labels did
        iterations.append(_stats(iteration, sims, counts, nsplit, started))
        logger.debug("k-means iteration %(iteration)d: objective %(objective).4f imbalance %(imbalance).3f nsplit %(nsplit)d", iterations[-1])
        bar.update(1)
    bar.close()
    return KMeansResult(centroids, iterations, n, assigner.name)


@dataclass
class Clusters:
    """The pool's k-means: centroids, every sample's cluster and cosine to its centroid (in store row
    order), and how the clustering went. Members of one cluster come without scanning the rest."""

    centroids: np.ndarray  # [k, d] float32
    labels: np.ndarray  # [N] int32
    sims: np.ndarray  # [N] float32, cosine to the own centroid
    info: dict[str, Any] = field(default_factory=dict)  # k, niter, seed, train points, backend, iterations, timings

    def __post_init__(self) -> None:
        self.order = np.argsort(self.labels, kind="stable")  # [N]: rows grouped by cluster, row order inside
        self.offsets = np.concatenate([[0], np.cumsum(self.sizes())]).astype(np.int64)  # [k + 1]

    @property
    def k(self) -> int:
        return len(self.centroids)

    def sizes(self) -> np.ndarray:
        return np.bincount(self.labels, minlength=self.k).astype(np.int64)  # [k]

    def members(self, cluster: int) -> np.ndarray:
        """Store rows of one cluster, ascending. -> [size] int64"""
        return self.order[self.offsets[cluster] : self.offsets[cluster + 1]].astype(np.int64)

    def save(self, folder: Path) -> None:
        """centroids.npy, labels.npy, sims.npy, info.json (info written last: the folder is complete)."""
        from dataselect.io.shards import atomic_write, atomic_write_text, save_npy

        folder.mkdir(parents=True, exist_ok=True)
        for name, array in (("centroids", self.centroids), ("labels", self.labels), ("sims", self.sims)):
            atomic_write(folder / f"{name}.npy", lambda temp, a=array: save_npy(temp, a))
        atomic_write_text(folder / "info.json", json.dumps(self.info, indent=1))

    @classmethod
    def load(cls, folder: Path) -> "Clusters | None":
        """A saved clustering, or None when the folder holds no complete one."""
        if not (folder / "info.json").exists():
            return None
        arrays = {name: np.load(folder / f"{name}.npy") for name in ("centroids", "labels", "sims")}
        return cls(**arrays, info=json.loads((folder / "info.json").read_text()))


def cluster_pool(pool: Vectors, k: int, niter: int = 20, seed: int = 0, max_points_per_centroid: int | None = 256,
                 backend: str = "auto", device: str = "auto", tile_rows: int = TILE_ROWS, progress: bool = False,
                 init: str = "random", train_rows: np.ndarray | None = None) -> Clusters:
    """k-means trained on a seeded sample of min(M, k x max_points_per_centroid) of the M candidate
    vectors (`train_rows`, default all; max_points_per_centroid None: all M, streamed each
    iteration), then every pool vector assigned."""
    started = time.perf_counter()
    assigner = make_assigner(backend, device)
    n = pool.count()
    candidates: Vectors = pool if train_rows is None else SubsetVectors(pool, train_rows)
    if max_points_per_centroid is None:
        train = candidates
    else:
        train = ArrayVectors(sample(candidates, k * max_points_per_centroid, seed))  # [min(M, k*cap), d] float32
    sampled = time.perf_counter()
    result = spherical_kmeans(train, k, niter, seed, assigner, tile_rows, progress, init)
    trained = time.perf_counter()
    labels, sims, _ = assign_to(pool, result.centroids, assigner, tile_rows, with_sums=False, progress=progress)
    info = {
        "k": k, "niter": niter, "seed": seed, "init": init, "max_points_per_centroid": max_points_per_centroid, "pool_points": n,
        "train_points": result.train_points, "backend": result.backend, "iterations": result.iterations,
        "seconds": {"sample": round(sampled - started, 3), "train": round(trained - sampled, 3),
                    "assign": round(time.perf_counter() - trained, 3)},
    }
    return Clusters(result.centroids, labels.astype(np.int32), sims, info)
