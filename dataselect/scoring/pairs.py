"""QuRating's pairwise judgements (METHODS.md 9.1) as the labels of a Bradley-Terry rater.

A judgements file is JSON lines, one judged pair of pool records (by id) per line:

    {"a": ID, "b": ID, "ab": [votes for the first shown, votes for the second], "ba": [...]}

`ab` holds the judge's votes with a shown first, `ba` with b shown first; or, already calibrated,
{"a": ID, "b": ID, "label": y} with y = P(b beats a). Calibration: p_ab = ab[1] / sum(ab) (b preferred,
a shown first), p_ba = ba[1] / sum(ba) (a preferred, b shown first), y = (p_ab + 1 - p_ba) / 2, so a
judge's preference for a position cancels. An order with MIN_VOTES or fewer valid votes drops its pair.
The confidence filter keeps a pair for training only when |y - 0.5| >= confidence / 2.

The model: P(b beats a) = sigmoid(s_b - s_a), trained by the binary cross-entropy against y.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from dataselect.errors import ConfigError

MIN_VOTES = 10  # QuRating keeps a judged order only with more valid votes than this
KEY = "method.quality.pairs_path"


def calibrated_label(ab: Any, ba: Any) -> float | None:
    """P(b beats a) from the votes in both orders ([first, second] each); None when an order has too few votes."""
    ab, ba = np.asarray(ab, np.float64), np.asarray(ba, np.float64)
    if ab.sum() <= MIN_VOTES or ba.sum() <= MIN_VOTES:
        return None
    return float((ab[1] / ab.sum() + 1.0 - ba[1] / ba.sum()) / 2.0)


def confident(labels: np.ndarray, confidence: float) -> np.ndarray:
    """[p] bool: the labels far enough from 0.5 to train on (|y - 0.5| >= confidence / 2)."""
    return np.abs(np.asarray(labels, np.float64) - 0.5) >= confidence / 2.0


def preference(score_a: np.ndarray | float, score_b: np.ndarray | float) -> np.ndarray:
    """Bradley-Terry: P(b beats a) = sigmoid(s_b - s_a)."""
    return 0.5 * (1.0 + np.tanh(0.5 * (np.asarray(score_b, np.float64) - np.asarray(score_a, np.float64))))


def pair_loss(score_a: np.ndarray | float, score_b: np.ndarray | float, labels: np.ndarray | float) -> np.ndarray:
    """The binary cross-entropy of sigmoid(s_b - s_a) against y, per pair."""
    delta, y = np.asarray(score_b, np.float64) - np.asarray(score_a, np.float64), np.asarray(labels, np.float64)
    return y * np.logaddexp(0.0, -delta) + (1.0 - y) * np.logaddexp(0.0, delta)


@dataclass
class Judgements:
    """The pairs of a judgements file: ids `first` (a) and `second` (b), their calibrated labels P(b beats a),
    and how many pairs too few votes dropped."""

    first: list[str]
    second: list[str]
    labels: np.ndarray  # [p] float64
    too_few_votes: int


def read_judgements(path: str) -> Judgements:
    """A judgements file's pairs (a clear one-line error for a missing file or a malformed line)."""
    file = Path(path)
    if not file.is_file():
        raise ConfigError(f"config error: {KEY}: {path} does not exist (a JSON-lines file of judged pairs)")
    first, second, labels, dropped = [], [], [], 0
    for number, line in enumerate(file.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            pair = json.loads(line)
            label = float(pair["label"]) if "label" in pair else calibrated_label(pair["ab"], pair["ba"])
            ids = str(pair["a"]), str(pair["b"])
        except (ValueError, KeyError, TypeError, IndexError) as error:
            raise ConfigError(f"config error: {KEY}: line {number} of {path} is not a judged pair "
                              f'{{"a": id, "b": id, "ab": [n, n], "ba": [n, n]}} or {{"a", "b", "label"}} ({error})') from None
        if label is None:
            dropped += 1
            continue
        if not 0.0 <= label <= 1.0:
            raise ConfigError(f"config error: {KEY}: line {number} of {path}: the label {label} is not a probability in [0, 1]")
        first.append(ids[0])
        second.append(ids[1])
        labels.append(label)
    return Judgements(first, second, np.array(labels, np.float64), dropped)
