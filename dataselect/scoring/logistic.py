"""BETR's cheap classifier (METHODS.md 8.2): logistic regression on hashed n-gram features, the role
fastText plays in quality-filtering pipelines.

Features: a document's mean bag of hashed n-grams, x_b = count_b / n (n its n-grams: unigrams plus
bigrams, as the DSIR featurisers count them), so a logit is b + (sum of w over the document's
n-grams) / n: one gather and one segment sum per document (the DSIR weight pass), whatever the
document's length.

Fit: class-balanced mean log-loss + l2/2 * ||w||^2 (the bias is not penalised), full batch, torch's
L-BFGS with a strong-Wolfe line search in float64. The loss and gradient are computed by hand in
numpy with two sparse products (X w and X^T r), each row summed left to right in one C loop, so the
same data gives the same weights bit for bit on any machine thread count. Also here: AUROC and Spearman's rank correlation (average
ranks for ties), for the held-out agreement the manifest reports.

Pairs (QuRating's Bradley-Terry rater, METHODS.md 9.1): the same linear scorer s(x) = w.x fit to pairwise
judgements instead: mean BCE(sigmoid(s_b - s_a), y) + l2/2 * ||w||^2 with soft labels y, no bias (it
cancels in s_b - s_a), through the same L-BFGS.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Callable

import numpy as np

from dataselect.hardware import one_cpu_thread
from dataselect.scoring.ngram import NgramFeatures, segment_sums


@dataclass
class LinearModel:
    """One weight vector per task over the hashed buckets, and a bias per task."""

    weights: np.ndarray  # [T, B] float64
    bias: np.ndarray  # [T] float64
    iterations: list[int]  # L-BFGS function evaluations per task
    final_loss: list[float]  # the regularised training objective per task at the end

    def digest(self) -> str:
        """Names the classifier in the pool store's cache key."""
        digest = hashlib.sha256(np.ascontiguousarray(self.weights, np.float64).tobytes())
        digest.update(np.ascontiguousarray(self.bias, np.float64).tobytes())
        return digest.hexdigest()[:24]

    def decision(self, features: NgramFeatures) -> np.ndarray:
        """Logits of every document under each task. -> [n, T] float64 (the bias for an empty document)"""
        sums = segment_sums(self.weights[:, np.asarray(features.unigrams)], features.lengths)  # [n, T]
        sums += segment_sums(self.weights[:, np.asarray(features.bigrams)], features.n_bigrams)
        counts = np.maximum(features.n_ngrams, 1).astype(np.float64)[:, None]  # [n, 1]
        return sums / counts + self.bias[None, :]

    def project(self, x: np.ndarray) -> np.ndarray:
        """Logits (or values) of dense features x [n, d] (pooled embeddings). -> [n, T] float64"""
        return np.asarray(x, np.float64) @ self.weights.T + self.bias[None, :]


def feature_matrix(features: NgramFeatures, num_buckets: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The mean bag of n-grams as a sparse matrix in CSR parts: (row pointers [n + 1], buckets [nnz],
    values [nnz] float64), buckets ascending within a row."""
    n = len(features)
    docs = np.concatenate([np.repeat(np.arange(n), features.lengths), np.repeat(np.arange(n), features.n_bigrams)])  # [M]
    buckets = np.concatenate([np.asarray(features.unigrams, np.int64), np.asarray(features.bigrams, np.int64)])  # [M]
    keys, counts = np.unique(docs * num_buckets + buckets, return_counts=True)  # sorted by (doc, bucket)
    rows, cols = keys // num_buckets, keys % num_buckets
    values = counts / np.maximum(features.n_ngrams, 1)[rows].astype(np.float64)
    indptr = np.zeros(n + 1, np.int64)
    np.add.at(indptr, rows + 1, 1)
    return np.cumsum(indptr), cols, values


def _matvec(indptr: np.ndarray, cols: np.ndarray, values: np.ndarray, vector: np.ndarray) -> np.ndarray:
    """A CSR matrix times a vector, each row summed left to right by one C loop (so bit-reproducible). -> [rows]"""
    out = np.zeros(len(indptr) - 1, np.float64)
    nonempty = np.diff(indptr) > 0
    if nonempty.any():
        out[nonempty] = np.add.reduceat(values * vector[cols], indptr[:-1][nonempty])  # reduceat would misread empty rows
    return out


def _transposed(indptr: np.ndarray, cols: np.ndarray, values: np.ndarray, num_cols: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """CSR parts of the transpose (rows of X^T are buckets)."""
    rows = np.repeat(np.arange(len(indptr) - 1), np.diff(indptr))
    order = np.lexsort((rows, cols))  # by bucket, then document
    t_indptr = np.zeros(num_cols + 1, np.int64)
    np.add.at(t_indptr, cols + 1, 1)
    return np.cumsum(t_indptr), rows[order], values[order]


def fit_logistic(features: NgramFeatures, labels: np.ndarray, num_buckets: int, l2: float, max_iter: int) -> LinearModel:
    """One balanced L2-regularised logistic regression per column of labels [n, T] (bool) on the mean
    bag of hashed n-grams of `features` (n documents)."""
    labels = np.asarray(labels, bool).reshape(len(features), -1)  # [n, T]
    x = feature_matrix(features, num_buckets)  # [n, B] as CSR parts
    xt = _transposed(*x, num_buckets)  # [B, n]
    return _fit_tasks(lambda w: _matvec(*x, w), lambda r: _matvec(*xt, r), labels, num_buckets, l2, max_iter)


def fit_logistic_dense(x: np.ndarray, labels: np.ndarray, l2: float, max_iter: int) -> LinearModel:
    """The same regression on dense features x [n, d] (pooled embeddings): one per column of labels [n, T]."""
    x = np.ascontiguousarray(x, np.float64)  # [n, d]
    labels = np.asarray(labels, bool).reshape(len(x), -1)  # [n, T]
    return _fit_tasks(lambda w: x @ w, lambda r: x.T @ r, labels, x.shape[1], l2, max_iter)


def fit_ridge(x: np.ndarray, targets: np.ndarray, l2: float) -> LinearModel:
    """Least squares with an L2 penalty on dense features x [n, d] for numeric targets [n] (a regression head,
    as FineWeb-Edu's on frozen embeddings): minimises mean (x w + b - y)^2 + l2 ||w||^2 in closed form."""
    x, y = np.asarray(x, np.float64), np.asarray(targets, np.float64)  # [n, d], [n]
    mean_x, mean_y = x.mean(axis=0), y.mean()  # centring leaves the bias unpenalised
    centred = x - mean_x  # [n, d]
    gram = centred.T @ centred / len(x) + l2 * np.eye(x.shape[1])  # [d, d]
    w = np.linalg.solve(gram, centred.T @ (y - mean_y) / len(x))  # [d]
    residual = centred @ w - (y - mean_y)  # [n]
    objective = float(residual @ residual / len(x) + l2 * w @ w)
    return LinearModel(w[None, :], np.array([mean_y - mean_x @ w]), [1], [objective])


def fit_pairs(features: NgramFeatures, num_buckets: int, first: np.ndarray, second: np.ndarray, labels: np.ndarray, l2: float,
              max_iter: int) -> LinearModel:
    """A Bradley-Terry scorer on the mean bag of hashed n-grams of `features` (u documents) from judged pairs:
    first, second [p] document indices, labels [p] P(second beats first) in [0, 1]."""
    x = feature_matrix(features, num_buckets)  # [u, B] as CSR parts
    xt = _transposed(*x, num_buckets)  # [B, u]
    return _fit_pairs(lambda w: _matvec(*x, w), lambda r: _matvec(*xt, r), len(features), first, second, labels, num_buckets, l2, max_iter)


def fit_pairs_dense(x: np.ndarray, first: np.ndarray, second: np.ndarray, labels: np.ndarray, l2: float, max_iter: int) -> LinearModel:
    """The same Bradley-Terry scorer on dense features x [u, d] (pooled embeddings)."""
    x = np.ascontiguousarray(x, np.float64)  # [u, d]
    return _fit_pairs(lambda w: x @ w, lambda r: x.T @ r, len(x), first, second, labels, x.shape[1], l2, max_iter)


def _fit_pairs(forward: Callable[[np.ndarray], np.ndarray], backward: Callable[[np.ndarray], np.ndarray], docs: int, first: np.ndarray,
               second: np.ndarray, labels: np.ndarray, dim: int, l2: float, max_iter: int) -> LinearModel:
    """Bradley-Terry over a document scorer X w: a pair's logit is s_second - s_first; each pair weighs 1/p."""
    first, second = np.asarray(first, np.int64), np.asarray(second, np.int64)
    y = np.asarray(labels, np.float64)  # [p]
    if not len(y):
        raise ValueError("no judged pair to learn from")
    pair_forward = lambda w: (lambda s: s[second] - s[first])(forward(w))  # noqa: E731  [p]
    pair_backward = lambda r: backward(np.bincount(second, r, docs) - np.bincount(first, r, docs))  # noqa: E731  [dim]
    with one_cpu_thread("cpu"):
        w, _, calls, final = _fit_one(pair_forward, pair_backward, y, np.full(len(y), 1.0 / len(y)), dim, l2, max_iter, fit_bias=False)
    return LinearModel(w[None, :], np.zeros(1), [calls], [final])


def _fit_tasks(forward: Callable[[np.ndarray], np.ndarray], backward: Callable[[np.ndarray], np.ndarray], labels: np.ndarray, dim: int,
               l2: float, max_iter: int) -> LinearModel:
    """One regression per column of labels [n, T], given X w (forward) and X^T r (backward)."""
    with one_cpu_thread("cpu"):  # L-BFGS's vector ops are tiny: a second torch thread only spins (seconds on a busy machine)
        fits = [_fit_one(forward, backward, *_balanced(labels[:, t]), dim, l2, max_iter) for t in range(labels.shape[1])]
    return LinearModel(np.stack([f[0] for f in fits]), np.array([f[1] for f in fits], np.float64), [f[2] for f in fits], [f[3] for f in fits])


def _balanced(labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(y [n] float64, class-balanced weights [n]: each class carries half the loss, whatever its size)."""
    y = labels.astype(np.float64)  # [n]
    n, positives = len(y), float(y.sum())
    if positives in (0.0, float(n)):
        raise ValueError("every sample has the same label: nothing to learn")
    return y, np.where(y > 0, 0.5 / positives, 0.5 / (n - positives))  # weights sum to 1


def _fit_one(forward: Callable[[np.ndarray], np.ndarray], backward: Callable[[np.ndarray], np.ndarray], y: np.ndarray,
             sample_weight: np.ndarray, dim: int, l2: float, max_iter: int, fit_bias: bool = True) -> tuple[np.ndarray, float, int, float]:
    """(weights [dim], bias, objective evaluations, final objective) of one weighted logistic regression on
    labels y [n] in [0, 1] (soft labels allowed): sum weight x BCE(sigmoid(z), y) + l2/2 ||w||^2."""
    import torch

    w = torch.zeros(dim, dtype=torch.float64, requires_grad=True)
    b = torch.zeros(1, dtype=torch.float64, requires_grad=True)
    optimizer = torch.optim.LBFGS([w, b] if fit_bias else [w], lr=1.0, max_iter=max_iter, history_size=20, line_search_fn="strong_wolfe",
                                  tolerance_grad=1e-10, tolerance_change=1e-14)
    calls = [0]

    def closure() -> torch.Tensor:
        calls[0] += 1
        wv, bv = w.detach().numpy(), float(b.detach()[0])
        z = forward(wv) + bv  # [n] logits
        bce = y * np.logaddexp(0.0, -z) + (1.0 - y) * np.logaddexp(0.0, z)  # [n] -log sigmoid(+-z), stable
        loss = float(sample_weight @ bce) + 0.5 * l2 * float(wv @ wv)
        residual = sample_weight * (0.5 * (1.0 + np.tanh(0.5 * z)) - y)  # [n] d loss / d z (sigmoid via tanh: no overflow)
        w.grad = torch.from_numpy(backward(residual) + l2 * wv)  # [dim]
        b.grad = torch.tensor([residual.sum() if fit_bias else 0.0], dtype=torch.float64)
        return torch.tensor(loss, dtype=torch.float64)

    optimizer.step(closure)
    final = float(closure())
    return w.detach().numpy().copy(), float(b.detach()[0]), calls[0], final


def rankdata(values: np.ndarray) -> np.ndarray:
    """Ranks 1..n with ties given their average rank. [n] -> [n] float64"""
    values = np.asarray(values, np.float64)
    order = np.argsort(values, kind="stable")
    sorted_values = values[order]
    starts = np.flatnonzero(np.r_[True, sorted_values[1:] != sorted_values[:-1]])  # first index of each run of equal values
    ends = np.r_[starts[1:], len(values)]
    average = (starts + ends + 1) / 2.0  # mean of ranks starts+1 .. ends
    ranks = np.empty(len(values), np.float64)
    ranks[order] = np.repeat(average, ends - starts)
    return ranks


def auroc(scores: np.ndarray, positive: np.ndarray) -> float | None:
    """Mann-Whitney AUROC: P(a positive scores above a negative), ties counting half; None without both classes."""
    positive = np.asarray(positive, bool)
    n_pos, n_neg = int(positive.sum()), int((~positive).sum())
    if n_pos == 0 or n_neg == 0:
        return None
    ranks = rankdata(scores)
    return float((ranks[positive].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def spearman(a: np.ndarray, b: np.ndarray) -> float | None:
    """Spearman's rank correlation (Pearson on average ranks); None for fewer than 2 points or a constant side."""
    if len(a) < 2:
        return None
    ra, rb = rankdata(a) - (len(a) + 1) / 2, rankdata(b) - (len(b) + 1) / 2
    denominator = float(np.sqrt((ra @ ra) * (rb @ rb)))
    return float((ra @ rb) / denominator) if denominator > 0 else None
