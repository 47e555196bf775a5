from __future__ import annotations

import math
from typing import Callable

import pytest
import torch
from kernel_checks import ROUNDED_TOL, assert_written

from dataselect.kernels import el2n
from dataselect.kernels.el2n import (
    lm_head_el2n_and_loss,
    sequence_el2n_and_loss,
    token_el2n_and_ce,
    token_el2n_and_ce_reference,
    token_el2n_and_ce_torch,
)

DTYPES = [torch.float32, torch.float16, torch.bfloat16]
B, T, V, H = 3, 37, 123, 100


def batch(dtype: torch.dtype = torch.float32, seed: int = 0, device: str | torch.device = "cpu") -> tuple[torch.Tensor, torch.Tensor]:
    """Shifted logits [B, T, V] (a non-contiguous view, as after logits[:, :-1]) and aligned labels.
    The same values on every device (drawn on the CPU, sliced after the move so the strides survive)."""
    g = torch.Generator().manual_seed(seed)
    logits = (torch.randn(B, T + 1, V, generator=g) * 4).to(dtype).to(device)[:, :-1]  # [B, T, V]
    labels = torch.randint(0, V, (B, T), generator=g)  # [B, T]
    labels[0, :9] = -100  # a masked prompt
    labels[1, ::3] = -100
    labels[2] = -100  # no counted token at all
    return logits, labels.to(device)


StatsFn = Callable[..., "tuple[torch.Tensor, torch.Tensor]"]


@pytest.fixture(params=["torch", "triton", "triton-4-tiles"])
def path(request: pytest.FixtureRequest, device: torch.device) -> tuple[StatsFn, torch.device]:
    """(per-token reduction, device): the torch path on either device, or the Triton kernel through the
    public entry point (forced), or its launcher with 32-wide vocabulary tiles (several tiles at small V)."""
    if request.param == "torch":
        return token_el2n_and_ce_torch, device
    request.getfixturevalue("kernel_device")
    if request.param == "triton":
        return token_el2n_and_ce, device
    return (lambda z, y, ii=-100: el2n.token_el2n_and_ce_triton(z, y, ii, block_v=32)), device


def on(path: tuple[StatsFn, torch.device], z: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Run the path on its device with CPU inputs; CPU outputs."""
    fn, device = path
    e, c = fn(z.to(device), y.to(device))
    return e.cpu(), c.cpu()


# ---------------------------------------------------------------- known answers (METHODS.md 3.6)


def test_known_answers(path, poisoned: None) -> None:
    for classes in (10, V):
        z = torch.zeros(2, classes)  # uniform prediction
        e, c = on(path, z, torch.tensor([0, classes - 1]))
        assert_written(e)
        assert_written(c)
        torch.testing.assert_close(e, torch.full((2,), math.sqrt(1 - 1 / classes)), rtol=1e-6, atol=1e-6)
        torch.testing.assert_close(c, torch.full((2,), math.log(classes)), rtol=1e-6, atol=1e-6)
    assert abs(math.sqrt(1 - 1 / 10) - 0.948683) < 1e-6
    z = torch.full((2, V), -50.0)
    z[0, 7] = 50.0  # perfectly confident and right
    z[1, 8] = 50.0  # perfectly confident and wrong
    e, c = on(path, z, torch.tensor([7, 7]))
    assert 0.0 <= e[0].item() < 1e-30 and 0.0 <= c[0].item() < 1e-30  # the exact values are ~e^-95
    torch.testing.assert_close(e[1], torch.tensor(math.sqrt(2.0)), rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(c[1], torch.tensor(100.0), rtol=1e-6, atol=1e-6)


def test_confident_predictions_keep_relative_accuracy(path) -> None:
    # p_y = 1 - ~1e-6: sum p^2 - 2 p_y + 1 cancels to rounding noise in fp32; the kernel's form does not
    g = torch.Generator().manual_seed(5)
    z = torch.randn(4, V, generator=g)
    y = torch.tensor([0, 5, 50, 122])
    z[torch.arange(4), y] += torch.tensor([14.0, 16.0, 18.0, 20.0])
    e, c = on(path, z, y)
    e_ref, c_ref = token_el2n_and_ce_reference(z, y)
    assert e_ref.min().item() < 1e-5
    torch.testing.assert_close(e, e_ref, rtol=1e-4, atol=0)
    torch.testing.assert_close(c, c_ref, rtol=1e-4, atol=1e-7)


def test_masked_tokens_do_not_change_the_mean() -> None:
    logits, labels = batch()
    e1, l1, n1 = sequence_el2n_and_loss(logits, labels)
    scrambled = logits.clone()
    scrambled[labels == -100] = torch.randn_like(scrambled[labels == -100]) * 100
    e2, l2, n2 = sequence_el2n_and_loss(scrambled, labels)
    assert torch.equal(e1, e2) and torch.equal(l1, l2) and torch.equal(n1, n2)
    e_tok, c_tok = token_el2n_and_ce_reference(logits, labels)
    valid = labels != -100
    assert n1.tolist() == valid.sum(1).tolist() == [T - 9, T - 13, 0]
    torch.testing.assert_close(e1[:2], (e_tok.double().sum(1) / valid.sum(1))[:2].float(), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(l1[:2], (c_tok.double().sum(1) / valid.sum(1))[:2].float(), rtol=1e-5, atol=1e-6)
    assert e1[2].item() == 0.0 and l1[2].item() == 0.0  # 0 counted tokens -> 0, not NaN


def test_custom_ignore_index_and_dispatch_on_cpu() -> None:
    logits, labels = batch(torch.bfloat16)
    labels = torch.where(labels == -100, torch.tensor(-1), labels)
    got = token_el2n_and_ce(logits, labels, ignore_index=-1)
    want = token_el2n_and_ce_reference(logits, labels, ignore_index=-1)
    for a, b in zip(got, want):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)
        assert (a[labels == -1] == 0).all()
    with pytest.raises(ValueError):
        token_el2n_and_ce(logits, labels[:, :-1])


# ---------------------------------------------------------------- Triton kernel (interpreter on CPU, compiled on CUDA)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("block_v", [None, 32])
def test_triton_matches_reference(dtype: torch.dtype, block_v: int | None, kernel_device: torch.device, poisoned: None) -> None:
    logits, labels = batch(dtype, seed=1)
    z, y = batch(dtype, seed=1, device=kernel_device)
    e, c = token_el2n_and_ce(z, y) if block_v is None else el2n.token_el2n_and_ce_triton(z, y, block_v=block_v)
    e, c = e.cpu(), c.cpu()
    e_ref, c_ref = token_el2n_and_ce_reference(logits, labels)  # fp64 on the same rounded logits
    assert_written(e)
    assert_written(c)
    torch.testing.assert_close(e, e_ref, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(c, c_ref, rtol=1e-5, atol=1e-5)
    assert (e[labels == -100] == 0).all() and (c[labels == -100] == 0).all()


def test_triton_flat_rows_and_bad_labels(kernel_device: torch.device, poisoned: None) -> None:
    logits, labels = batch(torch.float16, seed=2, device=kernel_device)
    flat, flat_y = logits[0], labels[0].clone()  # [T, V], [T]
    e, c = token_el2n_and_ce(flat, flat_y)
    e_ref, c_ref = token_el2n_and_ce_reference(flat.cpu(), flat_y.cpu())
    assert_written(e)
    assert_written(c)
    torch.testing.assert_close(e.cpu(), e_ref, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(c.cpu(), c_ref, rtol=1e-5, atol=1e-5)
    flat_y[10], flat_y[11] = V, -5  # out of range and not ignore_index: loud, not silently dropped
    e, c = token_el2n_and_ce(flat, flat_y)
    assert e[10:12].isnan().all() and c[10:12].isnan().all() and not e[12:].isnan().any()


# ---------------------------------------------------------------- fused LM-head path


def lm_head_inputs(dtype: torch.dtype, seed: int = 3, device: str | torch.device = "cpu"):
    g = torch.Generator().manual_seed(seed)
    hidden = torch.randn(B, T, H, generator=g).to(dtype)  # [B, T, H]
    weight = (torch.randn(V, H, generator=g) / H**0.5 * 3).to(dtype)  # [V, H]
    bias = torch.randn(V, generator=g).to(dtype)  # [V]
    _, labels = batch(seed=seed)
    return hidden.to(device), weight.to(device), bias.to(device), labels.to(device)


def naive_sequence(hidden, weight, bias, labels):
    """logits = hidden @ W.T (+ b) in fp64, then softmax minus one-hot: the definition, materialised."""
    logits = torch.nn.functional.linear(hidden.double(), weight.double(), None if bias is None else bias.double())
    e, c = token_el2n_and_ce_reference(logits, labels)
    n = (labels != -100).sum(1)
    return e.double().sum(1) / n.clamp_min(1), c.double().sum(1) / n.clamp_min(1), n


@pytest.mark.parametrize("path", ["torch", "triton"], indirect=True)  # vocabulary tiles: per-token tests
@pytest.mark.parametrize("with_bias", [False, True])
@pytest.mark.parametrize("chunk", [None, 10])
def test_lm_head_path_matches_naive_fp32(path, with_bias: bool, chunk: int | None, poisoned: None) -> None:
    stats, device = path
    hidden, weight, bias, labels = lm_head_inputs(torch.float32)
    bias = bias if with_bias else None
    args = [t if t is None else t.to(device) for t in (hidden, weight, labels, bias)]
    got = [t.cpu() for t in el2n.lm_head_el2n_and_loss_with(stats, *args, chunk_tokens=chunk)]
    want = naive_sequence(hidden, weight, bias, labels)
    torch.testing.assert_close(got[0].double(), want[0], rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(got[1].double(), want[1], rtol=1e-5, atol=1e-5)
    assert torch.equal(got[2], want[2]) and got[2].dtype == torch.int64


@pytest.mark.parametrize("path", ["torch", "triton"], indirect=True)  # vocabulary tiles: per-token tests
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_lm_head_path_half_precision(path, dtype: torch.dtype) -> None:
    # the logits are rounded to `dtype` by the GEMM, so compare with the naive path on the same rounded
    # logits computed in one GEMM on the same device; chunking must not change them beyond GEMM blocking
    stats, device = path
    hidden, weight, bias, labels = lm_head_inputs(dtype, device=device)
    got = [t.cpu() for t in el2n.lm_head_el2n_and_loss_with(stats, hidden, weight, labels, bias, chunk_tokens=16)]
    logits = torch.nn.functional.linear(hidden, weight, bias).cpu()  # [B, T, V] in dtype
    e_ref, c_ref = token_el2n_and_ce_reference(logits, labels.cpu())
    n = (labels.cpu() != -100).sum(1)
    tol = ROUNDED_TOL[dtype]
    torch.testing.assert_close(got[0], e_ref.sum(1) / n.clamp_min(1), rtol=tol, atol=tol)
    torch.testing.assert_close(got[1], c_ref.sum(1) / n.clamp_min(1), rtol=tol, atol=tol)


def test_lm_head_public_dispatch_and_validation() -> None:
    hidden, weight, bias, labels = lm_head_inputs(torch.float32)
    got = lm_head_el2n_and_loss(hidden, weight, labels, bias)
    want = el2n.lm_head_el2n_and_loss_with(token_el2n_and_ce_torch, hidden, weight, labels, bias)
    for a, b in zip(got, want):
        assert torch.equal(a, b)
    with pytest.raises(ValueError):
        lm_head_el2n_and_loss(hidden, weight[:, :-1], labels)


def test_kernels_compile_for_gpu(compile_for_gpu) -> None:
    sig = dict(
        z_ptr="*bf16", y_ptr="*i64", el2n_ptr="*fp32", ce_ptr="*fp32", T="i32", V="i32",
        s_zb="i64", s_zt="i32", s_zv="i32", s_yb="i32", s_yt="i32", ignore_index="i32", BLOCK_V="constexpr",
    )
    compile_for_gpu(
        "el2n.py",
        [
            ("_el2n_ce_kernel", sig, dict(BLOCK_V=4096), dict(num_warps=8)),
            ("_el2n_ce_kernel", dict(sig, z_ptr="*fp32", y_ptr="*i32"), dict(BLOCK_V=128), dict(num_warps=4)),
            # Triton turns int arguments equal to 1 into constants
            ("_el2n_ce_kernel", sig, dict(BLOCK_V=1, T=1, V=1, s_zt=1, s_zv=1, s_yb=1, s_yt=1), {}),
        ],
    )
