"""DSIR's importance weights (METHODS.md section 2), from the bucket lists of a shard store:
    raw / target fit:  p = (sum_x c(x) + alpha) / (sum + alpha * B)        (alpha only for targets)
    log ratio:         delta = log(p_tgt + 1e-8) - log(p_raw + 1e-8)
    log weight:        log w(x) = sum over x's n-grams of delta[bucket]     (= delta . c(x), no length norm)
and the KL metric in the same hashed feature space. The same for both featurisers.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from dataselect.io.shards import ShardStore
from dataselect.scoring.ngram import NgramFeatures, segment_sums
from dataselect.scoring.ngram_store import iter_features

EPS = 1e-8  # inside both logs, as the package (log 1e-8 = -18.4 for buckets a distribution never saw)


def bucket_counts(features: NgramFeatures, num_buckets: int, docs: np.ndarray | None = None) -> np.ndarray:
    """Summed count vector of all documents, or of the documents where `docs` ([n] bool) is set. -> [B] int64"""
    uni, bi = np.asarray(features.unigrams), np.asarray(features.bigrams)
    if docs is not None:
        uni, bi = uni[np.repeat(docs, features.lengths)], bi[np.repeat(docs, features.n_bigrams)]
    return np.bincount(uni, minlength=num_buckets).astype(np.int64) + np.bincount(bi, minlength=num_buckets).astype(np.int64)


def fit_distribution(counts: np.ndarray, alpha: float = 0.0) -> np.ndarray:
    """Bag-of-hashed-n-grams MLE with optional Laplace smoothing: (c + alpha) / (sum c + alpha * B). [B] -> [B] f64"""
    counts = np.asarray(counts, np.float64)
    total = counts.sum() + alpha * counts.shape[-1]
    if total <= 0:
        raise ValueError("no n-grams to fit a distribution on")
    return (counts + alpha) / total


def log_ratio(target_probs: np.ndarray, raw_probs: np.ndarray) -> np.ndarray:
    """delta = log(p_tgt + 1e-8) - log(p_raw + 1e-8). [..., B] -> [..., B] float64"""
    return np.log(target_probs + EPS) - np.log(raw_probs + EPS)


def log_weights(features: NgramFeatures, delta: np.ndarray) -> np.ndarray:
    """log w(x) = sum of delta over x's n-gram buckets, for one or several targets.

    delta: [B] or [T, B] float64; returns [n] or [n, T] float64 (0 for an empty document)."""
    deltas = np.atleast_2d(delta)  # [T, B]
    out = segment_sums(deltas[:, np.asarray(features.unigrams)], features.lengths)  # [n, T]
    out += segment_sums(deltas[:, np.asarray(features.bigrams)], features.n_bigrams)
    return out[:, 0] if np.ndim(delta) == 1 else out


def kl_divergence(p: np.ndarray, q: np.ndarray) -> float:
    """KL(p || q) over hashed buckets with the weights' 1e-8 inside the logs (q may have empty buckets)."""
    support = p > 0
    return float(np.sum(p[support] * (np.log(p[support] + EPS) - np.log(q[support] + EPS))))


@dataclass
class RawFit:
    counts: np.ndarray  # [B] int64
    docs: int  # documents the raw distribution was fitted on
    sampled: bool = False
    extra: dict[str, Any] = field(default_factory=dict)


def fit_raw(store: ShardStore, num_buckets: int, sample_size: int | None, rng: np.random.Generator) -> RawFit:
    """Raw n-gram counts over the whole pool, or over a seeded uniform sample of `sample_size` documents."""
    total_docs = sum(store.read_meta(i, ["n_ngrams"]).num_rows for i in range(store.num_shards))
    chosen = None
    if sample_size and sample_size < total_docs:
        chosen = np.zeros(total_docs, bool)  # [N]
        chosen[rng.choice(total_docs, size=sample_size, replace=False)] = True
    counts = np.zeros(num_buckets, np.int64)
    offset = 0
    for features in iter_features(store):
        docs = None if chosen is None else chosen[offset : offset + len(features)]
        counts += bucket_counts(features, num_buckets, docs)
        offset += len(features)
    return RawFit(counts, int(chosen.sum()) if chosen is not None else offset, sampled=chosen is not None)


def pool_log_weights(store: ShardStore, delta: np.ndarray, progress: bool = False) -> np.ndarray:
    """Log weights of every pool document under each target. delta [T, B] -> [N, T] float64"""
    from tqdm import tqdm

    parts = [log_weights(f, delta) for f in tqdm(iter_features(store), total=store.num_shards, desc="dsir weights", unit=" shards", disable=not progress)]
    return np.concatenate(parts) if parts else np.zeros((0, len(delta)), np.float64)


def subset_counts(store: ShardStore, num_buckets: int, masks: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Summed counts of several document subsets in one pass. masks: {name: [N] bool} -> {name: [B] int64}"""
    out = {name: np.zeros(num_buckets, np.int64) for name in masks}
    offset = 0
    for features in iter_features(store):
        for name, mask in masks.items():
            out[name] += bucket_counts(features, num_buckets, mask[offset : offset + len(features)])
        offset += len(features)
    return out


def fit_target(store: ShardStore, num_buckets: int, task_of_doc: np.ndarray, num_tasks: int) -> np.ndarray:
    """Count vector per target task. task_of_doc [Nt] int -> [T, B] int64"""
    return np.stack(list(subset_counts(store, num_buckets, {t: task_of_doc == t for t in range(num_tasks)}).values()))
