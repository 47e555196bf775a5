"""EL2N / loss selection (METHODS.md section 3): score every pool sample with a causal LM or the
trained proxies (scoring/loss.py), then keep a window of the scores sorted ascending:

    hardest   the `size` highest scores (Data Diet's keep_max_scores)
    easiest   the `size` lowest (keep_min_scores)
    middle    the window [offset, offset + size); offset defaults to the centre, (N - size) // 2.
              offset = N - size is keep-hardest and offset = 0 keep-easiest.

Ranks: easiest lists the lowest score first; hardest and middle the highest first. Ties in the
ascending sort go to the earlier pool row, so the selection is a function of the scores alone.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from dataselect.errors import ConfigError, InputError


def window_start(n: int, size: int, keep: str, offset: int | None = None) -> int:
    """Where the kept window starts in the ascending order of n scores."""
    if size > n:
        raise ConfigError(f"config error: method.budget: {size} is more than the {n} pool samples that have a score")
    if offset is not None and keep != "middle":
        raise ConfigError(f"config error: method.el2n.offset: only used with keep: middle (keep is {keep!r})")
    if keep == "hardest":
        return n - size
    if keep == "easiest":
        return 0
    if keep != "middle":
        raise ConfigError(f"config error: method.el2n.keep: {keep!r} is not one of hardest, easiest, middle")
    if offset is None:
        return (n - size) // 2
    if offset + size > n:
        raise ConfigError(
            f"config error: method.el2n.offset: {offset} + budget {size} is more than the {n} pool samples that have a score "
            f"(at most {n - size})"
        )
    return offset


def select_window(scores: np.ndarray, size: int, keep: str, offset: int | None = None, eligible: np.ndarray | None = None) -> np.ndarray:
    """Indices of the kept window in rank order. scores [N] (NaN: no score, never kept), eligible [N]
    bool or None -> [size] int64"""
    scores = np.asarray(scores, np.float64)
    ok = np.isfinite(scores) if eligible is None else (np.asarray(eligible, bool) & np.isfinite(scores))
    candidates = np.flatnonzero(ok)  # [M]
    ascending = candidates[np.lexsort((candidates, scores[candidates]))]  # [M] ties: earlier row first
    start = window_start(len(candidates), size, keep, offset)
    window = ascending[start : start + size]
    return (window if keep == "easiest" else window[::-1]).astype(np.int64)


def bad_scores(errors: list[str | None], ids: list[str], on_error: str) -> np.ndarray:
    """[N] bool: samples the loss stage could not score. Under on_error: fail the first one stops the
    run; when no sample can be scored at all the run stops either way."""
    bad = np.array([e is not None for e in errors], bool)
    first = int(np.argmax(bad)) if bad.any() else -1
    if first >= 0 and on_error == "fail":
        raise InputError(f"input error: {ids[first]}: {errors[first]}")
    if len(bad) and bad.all():
        raise InputError(f"input error: input.path: no pool sample can be scored (the first, {ids[first]}: {errors[first]})")
    return bad


def window_metrics(scores: np.ndarray, chosen: np.ndarray, keep: str, score_name: str, n_bad: int) -> dict[str, Any]:
    """The manifest's method metrics: which window, its score range, and the pool's."""
    valid = scores[np.isfinite(scores)]
    picked = scores[chosen]
    return {
        "score": score_name,
        "keep": keep,
        "window_min": float(picked.min()) if len(picked) else None,
        "window_max": float(picked.max()) if len(picked) else None,
        "pool_mean": float(valid.mean()) if len(valid) else None,
        "pool_min": float(valid.min()) if len(valid) else None,
        "pool_max": float(valid.max()) if len(valid) else None,
        "unscored_bad": n_bad,
    }
