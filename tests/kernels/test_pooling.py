from __future__ import annotations

import pytest
import torch
from kernel_checks import assert_written

from dataselect.kernels import pooling
from dataselect.kernels.pooling import POOLING_MODES, pool, pool_reference, pooling_weights

DTYPES = [torch.float32, torch.float16, torch.bfloat16]


def padded_mask(lengths: list[int], T: int, side: str) -> torch.Tensor:
    mask = torch.zeros(len(lengths), T, dtype=torch.int64)  # [B, T]
    for b, L in enumerate(lengths):
        if side == "right":
            mask[b, :L] = 1
        else:
            mask[b, T - L :] = 1
    return mask


def hidden_states(B: int, T: int, H: int, dtype: torch.dtype, seed: int = 0, device: str | torch.device = "cpu") -> torch.Tensor:
    """[B, T, H] with non-unit strides: a slice of a wider tensor, like a view of a fused output.
    The same values on every device (drawn on the CPU, sliced after the move so the strides survive)."""
    g = torch.Generator().manual_seed(seed)
    return torch.randn(B, T, H + 5, generator=g).to(dtype).to(device)[:, :, 3 : 3 + H]


# ---------------------------------------------------------------- known answers (METHODS.md 1.11)


@pytest.mark.parametrize("side", ["left", "right"])
def test_weighted_mean_weights_for_three_tokens(side: str) -> None:
    mask = padded_mask([3], 5, side)
    w = pooling_weights(mask, "weighted_mean")[0]
    real = w[mask[0].bool()]
    torch.testing.assert_close(real, torch.tensor([1 / 6, 2 / 6, 3 / 6]), rtol=0, atol=1e-7)
    assert w[~mask[0].bool()].abs().sum().item() == 0.0  # padding gets weight 0, not the largest weights


@pytest.mark.parametrize("mode", POOLING_MODES)
def test_constant_states_pool_to_that_state(mode: str) -> None:
    v = torch.randn(8, generator=torch.Generator().manual_seed(1))
    hidden = v.expand(2, 6, 8)  # [B, T, H], stride 0 over T
    mask = padded_mask([4, 6], 6, "left")
    torch.testing.assert_close(pool_reference(hidden, mask, mode), v.expand(2, 8), rtol=1e-6, atol=1e-6)


def test_position_order_matters_for_weighted_mean() -> None:
    hidden = torch.randn(1, 5, 4, generator=torch.Generator().manual_seed(2))
    mask = torch.ones(1, 5, dtype=torch.int64)
    a = pool_reference(hidden, mask, "weighted_mean")
    b = pool_reference(hidden.flip(1), mask, "weighted_mean")
    assert (a - b).abs().max().item() > 1e-3


def test_last_and_cls_pick_real_tokens() -> None:
    hidden = torch.arange(2 * 5, dtype=torch.float32).view(2, 5, 1)  # value = row*5 + position
    mask = torch.tensor([[0, 0, 1, 1, 1], [1, 1, 1, 0, 0]])
    assert pool_reference(hidden, mask, "last")[:, 0].tolist() == [4.0, 7.0]
    assert pool_reference(hidden, mask, "cls")[:, 0].tolist() == [2.0, 5.0]


def test_dispatch_on_cpu_is_reference_and_rejects_unknown_mode() -> None:
    hidden = hidden_states(3, 37, 100, torch.bfloat16)
    mask = padded_mask([37, 10, 1], 37, "left")
    for mode in POOLING_MODES:
        assert torch.equal(pool(hidden, mask, mode, True), pool_reference(hidden, mask, mode, True))
    with pytest.raises(ValueError):
        pool(hidden, mask, "max")


# ---------------------------------------------------------------- Triton kernel (interpreter on CPU, compiled on CUDA)


def unbatched(hidden: torch.Tensor, mask: torch.Tensor, mode: str, normalize: bool) -> torch.Tensor:
    """Each row alone, cut to its real tokens, with an all-ones mask (batch_size=1 in the reference code)."""
    rows = []
    for b in range(hidden.shape[0]):
        keep = mask[b].bool()
        h = hidden[b, keep].unsqueeze(0)  # [1, L, H]
        rows.append(pool(h, torch.ones(1, h.shape[1], dtype=torch.int64, device=h.device), mode, normalize)[0])
    return torch.stack(rows)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("mode", POOLING_MODES)
@pytest.mark.parametrize("normalize", [False, True])
def test_triton_matches_reference(dtype: torch.dtype, mode: str, normalize: bool, kernel_device: torch.device, poisoned: None) -> None:
    hidden = hidden_states(3, 37, 100, dtype)  # odd T and H, non-contiguous
    mask = padded_mask([37, 21, 0], 37, "right")  # full, padded, and an all-padding row (pools to 0)
    mask[1] = padded_mask([21], 37, "left")[0]  # mixed sides in one batch
    got = pool(hidden_states(3, 37, 100, dtype, device=kernel_device), mask.to(kernel_device), mode, normalize).cpu()
    want = pool_reference(hidden.to(torch.float64), mask, mode, normalize).float()  # same rounded inputs, fp64
    assert_written(got)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)
    assert got[2].abs().sum().item() == 0.0


@pytest.mark.parametrize("side", ["left", "right"])
@pytest.mark.parametrize("mode", POOLING_MODES)
def test_triton_padded_batch_equals_unbatched(side: str, mode: str, kernel_device: torch.device, poisoned: None) -> None:
    hidden = hidden_states(3, 37, 100, torch.bfloat16, seed=3, device=kernel_device)
    mask = padded_mask([37, 12, 1], 37, side).to(kernel_device)
    batched = pool(hidden, mask, mode, True)
    assert_written(batched)
    torch.testing.assert_close(batched, unbatched(hidden, mask, mode, True), rtol=1e-5, atol=1e-6)  # only the summation order differs


@pytest.mark.parametrize("mode", POOLING_MODES)
@pytest.mark.parametrize("normalize", [False, True])
def test_triton_token_splits_and_mask_dtypes(mode: str, normalize: bool, kernel_device: torch.device, poisoned: None) -> None:
    # B=1 and T >> tile: the launcher splits T across programs and sums the partials in a second kernel
    B, T, H = 2, 1500, 20
    block_t, _, _, splits = pooling._pool_blocks(B, T, H, mode)
    assert mode in ("last", "cls") or splits > 1
    hidden = hidden_states(B, T, H, torch.float16, seed=4).transpose(0, 1).contiguous().transpose(0, 1)  # T-major
    mask = padded_mask([1499, 700], T, "left").bool()
    got = pool(hidden.to(kernel_device).transpose(0, 1).contiguous().transpose(0, 1), mask.to(kernel_device), mode, normalize).cpu()
    want = pool_reference(hidden.to(torch.float64), mask, mode, normalize).float()
    assert_written(got)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)


def test_kernels_compile_for_gpu(compile_for_gpu) -> None:
    partial_sig = dict(
        h_ptr="*bf16", m_ptr="*i64", out_ptr="*fp32", T="i32", H="i32", t_per_split="i32",
        s_hb="i64", s_ht="i32", s_hh="i32", s_mb="i32", s_mt="i32", s_ob="i32", s_os="i32",
        MODE="constexpr", BLOCK_T="constexpr", BLOCK_H="constexpr", BLOCK_M="constexpr",
    )
    finish_sig = dict(part_ptr="*fp32", out_ptr="*fp32", H="i32", n_split="i32", NORMALIZE="constexpr", BLOCK_H="constexpr")
    jobs = [("_pool_partial_kernel", partial_sig, dict(MODE=m, BLOCK_T=16, BLOCK_H=256, BLOCK_M=1024), {}) for m in range(4)]
    jobs.append(("_pool_partial_kernel", dict(partial_sig, h_ptr="*fp16", m_ptr="*u8"), dict(MODE=1, BLOCK_T=32, BLOCK_H=128, BLOCK_M=64), {}))
    jobs += [("_pool_finish_kernel", finish_sig, dict(NORMALIZE=n, BLOCK_H=1024), {}) for n in (False, True)]
    ones = dict(T=1, H=1, t_per_split=1, s_hh=1, s_mt=1)  # Triton turns int arguments equal to 1 into constants
    jobs += [("_pool_partial_kernel", partial_sig, dict(ones, MODE=m, BLOCK_T=1, BLOCK_H=1, BLOCK_M=1), {}) for m in range(4)]
    jobs.append(("_pool_finish_kernel", finish_sig, dict(H=1, n_split=1, NORMALIZE=True, BLOCK_H=1), {}))
    compile_for_gpu("pooling.py", jobs)
