"""Cluster-diverse selection (METHODS.md 5.1, Diversify and Conquer), as pure functions over numpy
arrays: per-cluster quotas that meet the budget exactly, then a within-cluster pick.

Quotas: each cluster's share of the budget is proportional to a weight (equal: 1; size: |C|;
sqrt: sqrt|C|). A cluster whose share reaches its size gives all its samples and drops out, and the
budget it leaves is shared again among the rest (water-filling), so the total is exactly
min(budget, pool). Fractional shares are rounded by largest remainder (ties: the larger cluster,
then the lower cluster id), so the result depends on sizes alone.

Pick: every sample has a priority, and each cluster takes its highest-priority samples:
random (a seeded key per sample, so the draw is uniform without replacement and independent of
shard layout), nearest (cosine to its centroid) or score (a score from an earlier run).
"""
from __future__ import annotations

from typing import Literal

import numpy as np

QUOTAS = ("equal", "size", "sqrt")
PICKS = ("random", "nearest", "score")


def quotas(sizes: np.ndarray, budget: int, mode: Literal["equal", "size", "sqrt"] = "equal") -> np.ndarray:
    """Samples to take from each cluster: sum == budget, 0 <= quota <= size. [K] -> [K] int64"""
    sizes = np.asarray(sizes, np.int64)
    if budget > sizes.sum():
        raise ValueError(f"a budget of {budget} is more than the {int(sizes.sum())} samples in the clusters")
    if mode not in QUOTAS:
        raise ValueError(f"unknown quota {mode!r}; choose one of {QUOTAS}")
    weights = {"equal": np.ones(len(sizes)), "size": sizes.astype(np.float64), "sqrt": np.sqrt(sizes)}[mode]
    out = np.zeros(len(sizes), np.int64)
    active = sizes > 0
    remaining = int(budget)
    while remaining > 0:
        share = np.zeros(len(sizes))
        share[active] = remaining * weights[active] / weights[active].sum()  # [K]
        full = active & (share >= sizes)
        if full.any():  # these give everything; share what they cannot take again
            out[full] = sizes[full]
            remaining -= int(sizes[full].sum())
            active &= ~full
            continue
        floors = np.floor(share).astype(np.int64)
        extra = remaining - int(floors.sum())  # < number of active clusters; share < size keeps floor + 1 <= size
        out += floors
        if extra > 0:
            candidates = np.flatnonzero(active)
            fraction = (share - floors)[candidates]
            ranked = candidates[np.lexsort((candidates, -sizes[candidates], -fraction))]
            out[ranked[:extra]] += 1
        break
    return out


def random_keys(n: int, seed: int) -> np.ndarray:
    """One uniform key per sample from one seeded generator, in pool order. [n] float64"""
    return np.random.default_rng([seed, 0xC1]).random(n)


def pick_by_quota(labels: np.ndarray, priority: np.ndarray, quota: np.ndarray, eligible: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Each cluster's `quota` highest-priority eligible samples (ties: the lower row), ranked so that
    every cluster's best comes first, then every cluster's second, ... (clusters in id order).

    labels:   [N] cluster of each sample
    priority: [N] float, higher is picked first (NaN counts as -inf)
    quota:    [K] samples per cluster
    returns:  (chosen rows [sum(quota)] int64, their rank inside their cluster [sum(quota)] int64)
    """
    rows = np.arange(len(labels)) if eligible is None else np.flatnonzero(eligible)
    label = np.asarray(labels, np.int64)[rows]
    value = np.where(np.isnan(priority[rows]), -np.inf, priority[rows])
    order = np.lexsort((rows, -value, label))  # grouped by cluster, best first inside
    label, rows = label[order], rows[order]
    first = np.searchsorted(label, np.arange(len(quota)))  # [K] where each cluster starts
    within = np.arange(len(rows)) - first[label]  # [M] rank inside the cluster
    taken = within < quota[label]
    chosen, within, label = rows[taken], within[taken], label[taken]
    ranking = np.lexsort((label, within))  # round by round across clusters
    return chosen[ranking].astype(np.int64), within[ranking].astype(np.int64)
