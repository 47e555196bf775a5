"""Batches built to a token budget from a length-sorted window of samples."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class TokenBatch:
    indices: np.ndarray  # [b] positions in the window, longest first
    padded_length: int

    @property
    def padded_tokens(self) -> int:
        return len(self.indices) * self.padded_length


def token_budget_batches(lengths: np.ndarray, batch_tokens: int, width_step: int | None = None, bounded_shapes: bool = True) -> list[TokenBatch]:
    """Sort by length (longest first, ties by position, so the result is deterministic) and cut
    greedily so that each batch's padded size, rows x width, stays within `batch_tokens`. A sample
    longer than the budget gets a batch of its own.

    Width: the batch's longest row; with `width_step`, each row's own length rounded up to a multiple of
    it, and a batch holds rows of one width only. Then a row's padding, and so (on CPU) its output bit for
    bit, depends on the row alone, not on the batch size or its batch-mates: a saved scorer that embeds
    one record gets what the run stored for it. A width's rows that do not fill a batch go in batches of
    power-of-two row counts (13 rows: 8, 4, 1), so a pool meets a bounded set of batch shapes: on the CPU
    oneDNN compiles and caches kernels per shape (up to 1024 of them), and a new row count per shard per
    width made its cache, and the process's memory, grow with the pool (bf16 most: 4.9 GB against 2.9).
    `bounded_shapes` False keeps a width's last rows in one batch (LESS's per-sample gradients: a row's result
    there depends on the batch's row count, so copies that share a batch stay bit for bit equal)."""
    order = np.lexsort((np.arange(len(lengths)), -np.asarray(lengths)))  # [n]
    widths = np.asarray(lengths, np.int64)  # [n]
    if width_step:
        widths = np.maximum(width_step, -(-widths // width_step) * width_step)  # each row's length rounded up to a step
    batches: list[TokenBatch] = []
    start = 0
    while start < len(order):
        width = int(widths[order[start]])
        rows = max(1, batch_tokens // max(width, 1))
        chunk = order[start : start + rows]
        if width_step:
            chunk = chunk[widths[chunk] == width]  # sorted longest first: the rows of this width come first
            if len(chunk) < rows and bounded_shapes:  # a width's last batch: a power-of-two row count (the rest follow, halving)
                chunk = chunk[: 1 << (len(chunk).bit_length() - 1)]
        batches.append(TokenBatch(indices=chunk, padded_length=width))
        start += len(chunk)
    return batches


def padding_waste(lengths: np.ndarray, batches: list[TokenBatch]) -> tuple[int, int]:
    """(real tokens, padded tokens) over the batches."""
    return int(np.sum(lengths)), int(sum(b.padded_tokens for b in batches))
