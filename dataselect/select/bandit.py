"""Quad's multi-armed bandit over clusters (METHODS.md 5.2): an upper-confidence-bound score per
cluster, probes drawn in a fixed (seeded) order inside each cluster, and rewards shared with the
clusters whose centroids lie near the pulled one.

    CS_j = score_j / T_j + alpha * sqrt(2 ln(sum_T) / (T_j + 1))      (a cluster never pulled: +inf)
    after a pull of i with reward R, for every j with d(i, j) < radius (i itself included, d = 0):
        score_j += R (1 - d(i, j) / radius),  T_j += 1,  sum_T += 1

d is the cosine distance between centroids. A cluster whose rows are all drawn is never picked again.
"""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np


class ClusterBandit:
    """The bandit's state: each cluster's queue of rows (drawing order), reward sums, counts and pulls."""

    def __init__(self, queues: Sequence[np.ndarray], centroids: np.ndarray, alpha: float, radius: float) -> None:
        """queues: per cluster, its rows in drawing order; centroids: [k, d] unit vectors."""
        self.queues = [np.asarray(q, np.int64) for q in queues]
        k = len(self.queues)
        self.alpha, self.radius = alpha, radius
        self.cursor = np.zeros(k, np.int64)  # rows drawn so far per cluster
        self.score = np.zeros(k, np.float64)  # reward sums (own and propagated)
        self.count = np.zeros(k, np.int64)  # T_j: updates received
        self.total = 0  # sum_T
        self.pulls = np.zeros(k, np.int64)  # times each cluster itself was picked
        c = np.asarray(centroids, np.float64)  # [k, d]
        self.distance = np.clip(1.0 - c @ c.T, 0.0, 2.0) if k else np.zeros((0, 0))  # [k, k] cosine distance

    def ucb(self) -> np.ndarray:
        """CS_j of every cluster ([k]; +inf for one never updated, -inf for one with no rows left)."""
        bonus = self.alpha * np.sqrt(2.0 * math.log(max(self.total, 1)) / (self.count + 1.0))
        with np.errstate(divide="ignore", invalid="ignore"):
            cs = np.where(self.count > 0, self.score / np.maximum(self.count, 1) + bonus, np.inf)
        left = self.cursor < np.array([len(q) for q in self.queues], np.int64)
        return np.where(left, cs, -np.inf)

    def pick(self, n: int) -> list[int]:
        """The up to `n` clusters with rows left and the highest CS (ties: the lower cluster id)."""
        cs = self.ucb()
        order = np.lexsort((np.arange(len(cs)), -cs))
        return [int(c) for c in order[:n] if cs[c] > -np.inf]

    def draw(self, cluster: int, probes: int) -> np.ndarray:
        """The cluster's next `probes` rows (fewer at its end); counts as one pull."""
        start = int(self.cursor[cluster])
        rows = self.queues[cluster][start : start + probes]
        self.cursor[cluster] = start + len(rows)
        self.pulls[cluster] += 1
        return rows

    def update(self, cluster: int, reward: float) -> None:
        """Share a pull's reward with the cluster and its neighbours within `radius`."""
        if not math.isfinite(reward):
            return  # no probe of the pull could be scored: nothing learned
        near = np.flatnonzero(self.distance[cluster] < self.radius) if self.radius > 0 else np.array([cluster])
        near = np.union1d(near, [cluster])
        weight = 1.0 - self.distance[cluster, near] / self.radius if self.radius > 0 else np.ones(1)
        self.score[near] += reward * weight
        self.count[near] += 1
        self.total += len(near)
