"""The numbers `dataselect eval` reports (METHODS.md 11.3): bits per byte, an arm's mean with its 95%
confidence interval over seeds (Student's t), the gap to random paired by seed, and signal-to-noise."""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np


def bits_per_byte(nll_nats: float, n_bytes: int) -> float:
    """Summed negative log-likelihood (nats) over the UTF-8 bytes it predicts, in bits per byte."""
    if n_bytes <= 0:
        raise ValueError("bits per byte of no bytes")
    return nll_nats / (math.log(2) * n_bytes)


def _t_two_sided_mass(t: float, df: int) -> float:
    """P(|T| < t) for Student's t with integer df (Abramowitz and Stegun 26.7.3-4: finite sums in cos^2)."""
    theta = math.atan(t / math.sqrt(df))
    c2, s = math.cos(theta) ** 2, math.sin(theta)
    if df % 2 == 1:
        term, total = 1.0, 1.0 if df > 1 else 0.0
        for k in range(1, (df - 1) // 2):  # 1 + 2/3 c^2 + (2*4)/(3*5) c^4 + ...
            term *= c2 * (2 * k) / (2 * k + 1)
            total += term
        return 2 / math.pi * (theta + (s * math.cos(theta) * total if df > 1 else 0.0))
    term, total = 1.0, 1.0
    for k in range(1, df // 2):  # 1 + 1/2 c^2 + (1*3)/(2*4) c^4 + ...
        term *= c2 * (2 * k - 1) / (2 * k)
        total += term
    return s * total


def t_quantile(df: int, level: float = 0.95) -> float:
    """The two-sided critical value t with P(|T| < t) = level (t_{0.975, df} for 95%), by bisection."""
    if df < 1:
        raise ValueError(f"Student's t needs df >= 1, got {df}")
    low, high = 0.0, 1.0
    while _t_two_sided_mass(high, df) < level:
        high *= 2
    for _ in range(200):
        mid = (low + high) / 2
        low, high = (mid, high) if _t_two_sided_mass(mid, df) < level else (low, mid)
    return (low + high) / 2


@dataclass
class Interval:
    """A mean over seeds with its sample standard deviation (ddof 1) and 95% confidence interval."""

    mean: float
    std: float
    low: float
    high: float

    def excludes_zero(self) -> bool:
        """The decision rule: a difference counts only when its interval does not contain 0."""
        return self.low > 0 or self.high < 0


def mean_ci95(values: Sequence[float]) -> Interval:
    """mean ± t_{0.975, n-1} · s / √n over n >= 2 values."""
    x = np.asarray(values, np.float64)  # [n]
    if len(x) < 2:
        raise ValueError("a confidence interval needs at least 2 seeds")
    mean, std = float(x.mean()), float(x.std(ddof=1))
    half = t_quantile(len(x) - 1) * std / math.sqrt(len(x))
    return Interval(mean, std, mean - half, mean + half)


def paired_gap(arm: Sequence[float], random: Sequence[float]) -> Interval:
    """Δ_s = random_s − arm_s per seed (positive: the arm's loss is lower than random's), with its interval."""
    return mean_ci95(np.asarray(random, np.float64) - np.asarray(arm, np.float64))


def snr(means: Sequence[float], scores: Sequence[float]) -> float | None:
    """Signal-to-noise: (max |m_j − m_k| / mean(m)) / (std(scores) / mean(scores)), the std with ddof 0 over
    every seed and checkpoint score of the arms compared. None when the scores have no noise."""
    m, s = np.asarray(means, np.float64), np.asarray(scores, np.float64)
    noise = float(s.std()) / abs(float(s.mean()))
    if noise == 0:
        return None  # identical runs: the ratio is undefined, not infinite evidence
    return float((m.max() - m.min()) / abs(float(m.mean())) / noise)
