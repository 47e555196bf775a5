"""Semantic dedup (METHODS.md 5.3, SemDeDup) as pure functions: within each k-means cluster, samples
in a stated order (hard: farthest from the centroid first; easy: nearest first; random: seeded),
and a sample goes when its cosine to ANY earlier sample of its cluster exceeds 1 - eps, whether or
not that earlier one was itself removed (SemDeDup's rule: a chain A~B~C keeps only A).

What is computed per sample is M = its largest cosine to an earlier sample of its cluster (-inf for
the first), so any eps is a threshold on M afterwards. The similarities are computed in square
blocks (block x block at a time, never the cluster's n x n matrix), so a cluster far above the
average size costs time, not memory.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch

ORDERS = ("hard", "easy", "random")
BLOCK = 1024  # rows and columns of one similarity block


def unit_rows(x: np.ndarray) -> np.ndarray:
    """float32 rows of unit length (stored float16 vectors are only nearly so). [n, d] -> [n, d]"""
    x = np.asarray(x, np.float32)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def max_earlier_similarity(x: np.ndarray, block: int = BLOCK, device: str | torch.device = "cpu") -> tuple[np.ndarray, np.ndarray]:
    """For rows in rank order, each row's largest cosine to any earlier row, capped at 1 (-inf for row 0),
    and which earlier row that is (-1 for row 0; the first such row on ties). x: [n, d] unit rows ->
    ([n] float32, [n] int64)"""
    n = len(x)
    vectors = torch.from_numpy(np.ascontiguousarray(x, np.float32)).to(device)  # [n, d]
    out = torch.full((n,), -torch.inf, device=vectors.device)  # [n]
    twin = torch.full((n,), -1, dtype=torch.int64, device=vectors.device)  # [n]
    for j0 in range(0, n, block):
        j1 = min(n, j0 + block)
        columns = vectors[j0:j1]  # [b, d]
        best = torch.full((j1 - j0,), -torch.inf, device=vectors.device)  # [b]
        where = torch.full((j1 - j0,), -1, dtype=torch.int64, device=vectors.device)  # [b]
        for i0 in range(0, j1, block):  # only rows before the block's last column can be earlier
            i1 = min(j1, i0 + block)
            sims = vectors[i0:i1] @ columns.T  # [r, b]
            if i1 > j0:  # the block touches the diagonal: keep i < j only
                later_or_same = torch.arange(i0, i1, device=vectors.device)[:, None] >= torch.arange(j0, j1, device=vectors.device)[None, :]
                sims = sims.masked_fill(later_or_same, -torch.inf)
            values, rows = sims.max(dim=0)  # [b], [b]
            better = values > best  # strictly: an earlier block keeps its row on ties
            best = torch.where(better, values, best)
            where = torch.where(better, rows + i0, where)
        out[j0:j1], twin[j0:j1] = best, where
    return out.clamp(max=1.0).cpu().numpy(), twin.cpu().numpy()


def rank_order(centroid_sims: np.ndarray, order: Literal["hard", "easy", "random"], keys: np.ndarray | None = None) -> np.ndarray:
    """Positions of a cluster's samples in dedup order (ties: the earlier position).
    centroid_sims: [m] cosine to the centroid; keys: [m] random keys (order random). -> [m] int64"""
    if order == "hard":
        return np.argsort(centroid_sims, kind="stable")  # least similar to the centroid = farthest first
    if order == "easy":
        return np.argsort(-centroid_sims, kind="stable")
    if order == "random":
        return np.argsort(keys, kind="stable")
    raise ValueError(f"unknown order {order!r}; choose one of {ORDERS}")


@dataclass
class Dedup:
    """Every sample's M (largest cosine to an earlier sample of its cluster), in pool row order;
    NaN for samples that took no part (not eligible)."""

    max_earlier: np.ndarray  # [N] float32
    labels: np.ndarray  # [N] cluster of each sample
    twin: np.ndarray  # [N] int64: the pool row of that most similar earlier sample (-1: none)

    def removed(self, eps: float) -> np.ndarray:
        """[N] bool: the samples dedup at `eps` removes (M > 1 - eps; eps 0 removes nothing)."""
        with np.errstate(invalid="ignore"):
            return np.nan_to_num(self.max_earlier, nan=-np.inf) > 1.0 - eps

    def removed_per_cluster(self, eps: float, k: int) -> np.ndarray:
        return np.bincount(self.labels[self.removed(eps)], minlength=k).astype(np.int64)  # [k]


def semdedup(clusters, vectors, order: Literal["hard", "easy", "random"] = "hard", seed: int = 0, eligible: np.ndarray | None = None,
             block: int = BLOCK, device: str | torch.device = "cpu") -> Dedup:
    """SemDeDup over a clustering (index.Clusters: labels, sims, members) of `vectors` (index.Vectors),
    one cluster at a time; `eligible` ([N] bool) leaves samples out (exact duplicates already collapsed)."""
    n = len(clusters.labels)
    max_earlier = np.full(n, np.nan, np.float32)  # [N]
    twin = np.full(n, -1, np.int64)  # [N]
    keys = np.random.default_rng([seed, 0x5DD]).random(n) if order == "random" else None  # [N]
    for cluster in range(clusters.k):
        rows = clusters.members(cluster)  # [m] ascending
        if eligible is not None:
            rows = rows[eligible[rows]]
        if len(rows) == 0:
            continue
        ranked = rows[rank_order(clusters.sims[rows], order, None if keys is None else keys[rows])]  # [m] in dedup order
        similarity, earlier = max_earlier_similarity(unit_rows(vectors.rows(ranked)), block, device)
        max_earlier[ranked] = similarity
        twin[ranked] = np.where(earlier >= 0, ranked[np.maximum(earlier, 0)], -1)
    return Dedup(max_earlier, np.asarray(clusters.labels), twin)
