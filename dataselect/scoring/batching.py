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


def token_budget_batches(lengths: np.ndarray, batch_tokens: int) -> list[TokenBatch]:
    """Sort by length (longest first, ties by position, so the result is deterministic) and cut
    greedily so that each batch's padded size, rows x longest row, stays within `batch_tokens`.
    A sample longer than the budget gets a batch of its own."""
    order = np.lexsort((np.arange(len(lengths)), -np.asarray(lengths)))  # [n]
    batches: list[TokenBatch] = []
    start = 0
    while start < len(order):
        longest = int(lengths[order[start]])
        rows = max(1, batch_tokens // max(longest, 1))
        chunk = order[start : start + rows]
        batches.append(TokenBatch(indices=chunk, padded_length=longest))
        start += len(chunk)
    return batches


def padding_waste(lengths: np.ndarray, batches: list[TokenBatch]) -> tuple[int, int]:
    """(real tokens, padded tokens) over the batches."""
    return int(np.sum(lengths)), int(sum(b.padded_tokens for b in batches))
