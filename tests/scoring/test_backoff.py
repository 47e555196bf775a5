"""The CUDA out-of-memory back-off, with a fake forward that fails above a token count (no GPU needed:
torch.cuda.OutOfMemoryError can be raised on any machine)."""
from __future__ import annotations

import logging

import numpy as np
import pytest
import torch

from dataselect.errors import ConfigError
from dataselect.scoring.backoff import OOMBackoff


class FailsAbove:
    """forward(indices) -> (indices * 10, indices as float) ; raises OOM above `limit` padded tokens."""

    def __init__(self, limit: int, width: int) -> None:
        self.limit, self.width, self.calls = limit, width, []

    def __call__(self, indices: np.ndarray):
        self.calls.append(len(indices))
        if len(indices) * self.width > self.limit:
            raise torch.cuda.OutOfMemoryError("simulated")
        return indices * 10, indices.astype(np.float32)


def test_halves_on_oom_keeps_row_order_and_remembers_the_cap(caplog):
    backoff = OOMBackoff("cuda:0", torch.bfloat16)
    width = 8
    forward = FailsAbove(limit=40, width=width)  # at most 5 rows of 8 tokens fit
    indices = np.array([7, 3, 9, 1, 0, 4, 2, 8, 6, 5, 11, 10, 12])
    with caplog.at_level(logging.WARNING, logger="dataselect.scoring.backoff"):
        ids, values = backoff.run(forward, indices, width)
    np.testing.assert_array_equal(ids, indices * 10)
    np.testing.assert_array_equal(values, indices.astype(np.float32))
    assert backoff.max_batch_tokens is not None and backoff.max_batch_tokens <= 40
    assert sum("CUDA out of memory" in r.getMessage() for r in caplog.records) == 1

    # a later batch goes straight to pieces under the cap: no failed attempt at all
    forward.calls.clear()
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="dataselect.scoring.backoff"):
        ids, _ = backoff.run(forward, indices[::-1].copy(), width)
    np.testing.assert_array_equal(ids, indices[::-1] * 10)
    assert forward.calls and all(n * width <= backoff.max_batch_tokens for n in forward.calls)
    assert not caplog.records  # said once per run, not once per batch


def test_a_batch_that_fits_runs_once():
    backoff = OOMBackoff("cuda:0")
    forward = FailsAbove(limit=1000, width=8)
    backoff.run(forward, np.arange(10), 8)
    assert forward.calls == [10] and backoff.max_batch_tokens is None


def test_one_sample_too_large_names_model_max_length():
    backoff = OOMBackoff("cuda:0", torch.float32)
    forward = FailsAbove(limit=5, width=8)  # not even one row of 8 tokens fits
    with pytest.raises(ConfigError, match=r"model\.max_length: one sample of 8 tokens does not fit .*model.dtype: bfloat16"):
        backoff.run(forward, np.arange(4), 8)


def test_other_errors_pass_through():
    def forward(indices):
        raise ValueError("not memory")

    with pytest.raises(ValueError, match="not memory"):
        OOMBackoff().run(forward, np.arange(3), 4)
