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


def _fit_tasks(forward: Callable[[np.ndarray], np.ndarray], backward: Callable[[np.ndarray], np.ndarray], labels: np.ndarray, dim: int,
               l2: float, max_iter: int) -> LinearModel:
    """One regression per column of labels [n, T], given X w (forward) and X^T r (backward)."""
    with one_cpu_thread("cpu"):  # L-BFGS's vector ops are tiny: a second torch thread only spins (seconds on a busy machine)
        fits = [_fit_one(forward, backward, labels[:, t], dim, l2, max_iter) for t in range(labels.shape[1])]
    return LinearModel(np.stack([f[0] for f in fits]), np.array([f[1] for f in fits], np.float64), [f[2] for f in fits], [f[3] for f in fits])


def _fit_one(forward: Callable[[np.ndarray], np.ndarray], backward: Callable[[np.ndarray], np.ndarray], labels: np.ndarray, dim: int,
             l2: float, max_iter: int) -> tuple[np.ndarray, float, int, float]:
    """(weights [dim], bias, objective evaluations, final objective) of one task's regression."""
    import torch

    y = labels.astype(np.float64)  # [n]
    n, positives = len(y), float(y.sum())
    if positives in (0.0, float(n)):
        raise ValueError("every sample has the same label: nothing to learn")
    # class-balanced weights: each class carries half the loss, whatever its size
    sample_weight = np.where(y > 0, 0.5 / positives, 0.5 / (n - positives))  # [n], sums to 1
    sign = np.where(y > 0, -1.0, 1.0)  # [n]
    w = torch.zeros(dim, dtype=torch.float64, requires_grad=True)
    b = torch.zeros(1, dtype=torch.float64, requires_grad=True)
    optimizer = torch.optim.LBFGS([w, b], lr=1.0, max_iter=max_iter, history_size=20, line_search_fn="strong_wolfe",
                                  tolerance_grad=1e-10, tolerance_change=1e-14)
    calls = [0]

    def closure() -> torch.Tensor:
        calls[0] += 1
        wv, bv = w.detach().numpy(), float(b.detach()[0])
        z = forward(wv) + bv  # [n] logits
        loss = float(sample_weight @ np.logaddexp(0.0, sign * z)) + 0.5 * l2 * float(wv @ wv)  # log(1 + exp(-+z)), stable
        residual = sample_weight * (0.5 * (1.0 + np.tanh(0.5 * z)) - y)  # [n] d loss / d z (sigmoid via tanh: no overflow)
        w.grad = torch.from_numpy(backward(residual) + l2 * wv)  # [dim]
        b.grad = torch.tensor([residual.sum()], dtype=torch.float64)
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
