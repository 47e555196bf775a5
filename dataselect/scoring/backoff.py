"""CUDA out-of-memory back-off for forward passes over padded token batches.

One mechanism for every model forward (embedding, loss): when a batch of b rows x T padded tokens runs
out of CUDA memory, it is split in halves and retried, and every later batch is kept under half of
what failed (the cap is remembered, so the run does not pay one failed attempt per batch). The first
time it happens a warning is logged. A single row that does not fit is a config error that names
model.max_length, the key that bounds it.
"""
from __future__ import annotations

import logging
from typing import Callable, Sequence, TypeVar

import numpy as np
import torch

from dataselect.errors import ConfigError

logger = logging.getLogger(__name__)

T = TypeVar("T")


def concat_results(parts: Sequence[T]) -> T:
    """Joins the results of two halves in row order: an ndarray, or a tuple of ndarrays."""
    first = parts[0]
    if isinstance(first, tuple):
        return tuple(np.concatenate([p[i] for p in parts]) for i in range(len(first)))  # type: ignore[return-value]
    return np.concatenate(parts)  # type: ignore[return-value]


class OOMBackoff:
    """Runs `forward(indices)` on a batch of rows padded to `width` tokens, halving on CUDA OOM.

    device and dtype only shape the message when one row is too large.
    """

    def __init__(self, device: torch.device | str = "cuda", dtype: torch.dtype | None = None) -> None:
        self.device = torch.device(device)
        self.dtype = dtype
        self.max_batch_tokens: int | None = None  # after an out-of-memory: padded tokens per batch that fit
        self._warned = False

    def run(
        self,
        forward: Callable[[np.ndarray], T],
        indices: np.ndarray,
        width: int,
        combine: Callable[[Sequence[T]], T] = concat_results,
    ) -> T:
        """forward's result for `indices` [b], computed in as many pieces as memory needs, in row order."""
        if len(indices) > 1 and self.max_batch_tokens is not None and len(indices) * width > self.max_batch_tokens:
            return self._halves(forward, indices, width, combine)
        try:
            return forward(indices)
        except torch.cuda.OutOfMemoryError:
            pass  # handled below, once the exception (and the activations its frames hold) is gone
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
        if len(indices) == 1:
            smaller = " or use model.dtype: bfloat16" if self.dtype == torch.float32 else ""
            raise ConfigError(
                f"config error: model.max_length: one sample of {width} tokens does not fit in {self.device} memory; "
                f"lower model.max_length{smaller}"
            )
        # every later batch is kept under half of what failed, not only this one
        self.max_batch_tokens = len(indices) * width // 2
        if not self._warned:
            logger.warning(
                "CUDA out of memory at %dx%d tokens; batches of at most %d padded tokens from now on",
                len(indices), width, self.max_batch_tokens,
            )
            self._warned = True
        return self._halves(forward, indices, width, combine)

    def _halves(self, forward: Callable[[np.ndarray], T], indices: np.ndarray, width: int, combine: Callable[[Sequence[T]], T]) -> T:
        half = len(indices) // 2
        return combine([self.run(forward, indices[:half], width, combine), self.run(forward, indices[half:], width, combine)])
