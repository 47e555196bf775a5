"""Compute-aware budgets (METHODS.md 11.2, Goyal et al., CVPR 2024): how much a repeated sample is worth.

A pool of P samples seen n times in all is E = ⌊n / P⌋ full epochs and a part. Epoch k's samples are worth
less as k grows: the scaling exponent halves every c epochs (b_k = b · 0.5^(k/c), c the half-life in
repetitions), so

    y(n) = (S_0^b_0 + d) · Π_{k>=1} (S_k / S'_k)^b_k,   S_k = a·min(P(k+1), n)/1e5,  S'_k = a·P·k/1e5

with y a loss-like number (lower is better, b < 0). A small top fraction of a scored pool is better data
but repeats sooner; the model says which fraction wins at a given compute. `fit_keep_sweep` fits one b per
fraction with a, c and d shared, by a full (seeded by construction: no sampling) grid search.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np

NORMALIZER = 1e5
HALF_LIFE_BASE = 0.5


def repeat_exponent(n: float, pool: float, c: float) -> float:
    """Σ_{k>=1} 0.5^(k/c) · ln(S_k / S'_k): the repeats' part of ln y per unit of b (a cancels in the ratios)."""
    total = 0.0
    for k in range(1, int(n // pool) + 1):
        decay = 1.0 if math.isinf(c) else HALF_LIFE_BASE ** (k / c)
        total += decay * math.log(min(pool * (k + 1), n) / (pool * k))
    return total


def effective_utility(n: float, pool: float, a: float, b: float, c: float, d: float) -> float:
    """y(n) for a pool of `pool` samples seen n times in all (c = math.inf: a repeat is worth fresh data)."""
    return ((a * min(pool, n) / NORMALIZER) ** b + d) * math.exp(b * repeat_exponent(n, pool, c))


def effective_data(n: float, pool: float, a: float, b: float, c: float, d: float) -> float:
    """The alternative form: n_eff = Σ_k (S_k − S'_k) · 0.5^(k/c) samples' worth, y = n_eff^b + d."""
    total = 0.0
    for k in range(int(n // pool) + 1):
        seen, before = a * min(pool * (k + 1), n) / NORMALIZER, a * pool * k / NORMALIZER
        total += (seen - before) * (1.0 if math.isinf(c) else HALF_LIFE_BASE ** (k / c))
    return total**b + d


@dataclass
class SweepFit:
    """The fitted model of a keep sweep: shared a, c, d; one b per keep fraction; and its squared error."""

    a: float
    c: float
    d: float
    b: dict[float, float]
    sse: float

    def predict(self, keep: float, pool: float, n: float) -> float:
        """The predicted loss of training on `pool` samples (fraction `keep`) for n samples seen."""
        return effective_utility(n, pool, self.a, self.b[keep], self.c, self.d)

    def best_keep(self, pools: dict[float, float], n: float) -> float:
        """The keep fraction the model predicts lowest at n samples seen."""
        return min(pools, key=lambda keep: self.predict(keep, pools[keep], n))


A_GRID = np.logspace(-2, 3, 21)
B_GRID = np.linspace(-0.005, -0.5, 100)
C_GRID = np.array([*np.linspace(1, 10, 19), math.inf])


def fit_keep_sweep(points: Sequence[tuple[float, float, float, float]], d_grid: Sequence[float] | None = None) -> SweepFit | None:
    """Fits (keep, pool, n, loss) points: one b per keep, a, c and d shared; None when the points do not
    allow it (each keep needs two compute levels, and there must be more points than parameters).
    Given a, c and d each keep's b is fitted on its own points alone, so the whole grid is searched."""
    keeps = sorted({p[0] for p in points})
    if any(len({p[2] for p in points if p[0] == k}) < 2 for k in keeps) or len(points) <= len(keeps) + 3:
        return None
    losses = np.array([p[3] for p in points], np.float64)  # [m]
    member = np.array([[p[0] == k for p in points] for k in keeps], np.float64)  # [K, m]
    d_values = np.asarray(d_grid if d_grid is not None else np.linspace(0.0, 0.95, 20) * losses.min(), np.float64)  # [D]
    first = np.array([min(pool, n) / NORMALIZER for _, pool, n, _ in points])  # [m] S_0 / a
    best: SweepFit | None = None
    for c in C_GRID:
        repeats = np.array([repeat_exponent(n, pool, c) for _, pool, n, _ in points])  # [m]
        base = (A_GRID[:, None, None] * first[None, None, :]) ** B_GRID[None, :, None]  # [A, B, m]
        predicted = (base[:, :, None, :] + d_values[None, None, :, None]) * np.exp(B_GRID[None, :, None, None] * repeats)  # [A, B, D, m]
        per_keep = ((predicted - losses) ** 2) @ member.T  # [A, B, D, K] each keep's squared error
        best_b = per_keep.min(axis=1)  # [A, D, K] each keep's b on its own
        a_i, d_i = np.unravel_index(int(np.argmin(best_b.sum(axis=-1))), best_b.shape[:2])
        sse = float(best_b[a_i, d_i].sum())
        if best is None or sse < best.sse:
            b_fit = {k: float(B_GRID[int(np.argmin(per_keep[a_i, :, d_i, j]))]) for j, k in enumerate(keeps)}
            best = SweepFit(float(A_GRID[a_i]), float(c), float(d_values[d_i]), b_fit, sse)
    return best
