"""Helpers the kernel tests share (a plain module: `conftest` is ambiguous between test folders)."""
from __future__ import annotations

import torch

POISON_INT = -987654321  # what the `poisoned` fixture fills integer outputs of torch.empty with (floats get NaN)

# Tolerances where the computation under test itself rounds to `dtype` (a GEMM's output, for example):
# about one ulp of a value of size ~8. Kernel-vs-reference checks on the same already-rounded inputs
# differ only in fp32 accumulation order and keep their own, dtype-independent budgets in each test.
ROUNDED_TOL = {torch.float32: 1e-5, torch.float16: 2e-3, torch.bfloat16: 2e-2}


def assert_written(t: torch.Tensor) -> None:
    """Every element of a kernel's output was stored (none is still the poison)."""
    if t.is_floating_point():
        assert not t.isnan().any(), f"{int(t.isnan().sum())} of {t.numel()} elements never written"
    else:
        assert not (t == POISON_INT).any(), f"{int((t == POISON_INT).sum())} of {t.numel()} elements never written"
