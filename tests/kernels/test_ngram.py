from __future__ import annotations

import pytest
import torch
from kernel_checks import assert_written

from dataselect.kernels import ngram

M32 = 0xFFFFFFFF


# An independent plain-Python statement of the hash in the module docstring: the engine's buckets are
# a data contract (cached DSIR log-ratios are indexed by them), so any drift must fail here.
def py_mix32(x: int) -> int:
    x = ((x >> 16) ^ x) * 0x045D9F3B & M32
    x = ((x >> 16) ^ x) * 0x045D9F3B & M32
    return (x >> 16) ^ x


def py_unigram(a: int, nb: int) -> int:
    return py_mix32(a & M32) % nb


def py_bigram(a: int, b: int, nb: int) -> int:
    return py_mix32(((py_mix32(a & M32) * 0x01000193) & M32) ^ (b & M32) ^ 0x1B873593) % nb


def py_counts(ids: list[int], length: int, nb: int) -> list[float]:
    counts = [0.0] * nb
    for t in range(length):
        counts[py_unigram(ids[t], nb)] += 1
        if t + 1 < length:
            counts[py_bigram(ids[t], ids[t + 1], nb)] += 1
    return counts


def make_batch(B: int = 3, T: int = 37, vocab: int = 50_000, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, vocab, (B, T), generator=g)  # [B, T]
    ids[0, :3] = torch.tensor([-1, -100, 2**40 + 5])  # negative and >32-bit ids are hashed mod 2^32
    lengths = torch.tensor([T, 0, 20, 1, T + 5][:B])  # full, empty, partial, single token, over-long
    return ids, lengths


def test_bucket_ids_match_documented_formula() -> None:
    ids, lengths = make_batch(B=5, T=11)
    nb = 10_007
    buckets, valid = ngram.ngram_bucket_ids(ids, lengths, nb)
    assert buckets.shape == (5, 21) and valid.shape == (5, 21) and buckets.dtype == torch.int64
    for b in range(5):
        row = ids[b].tolist()
        L = min(int(lengths[b]), 11)
        assert buckets[b, :11].tolist() == [py_unigram(a, nb) for a in row]
        assert buckets[b, 11:].tolist() == [py_bigram(x, y, nb) for x, y in zip(row[:-1], row[1:])]
        assert valid[b].tolist() == [t < L for t in range(11)] + [t + 1 < L for t in range(10)]


def test_counts_reference_matches_python_loop_and_sums_to_2L_minus_1() -> None:
    ids, lengths = make_batch()
    nb = 101
    counts = ngram.hashed_ngram_counts_reference(ids, lengths, nb)
    for b in range(ids.shape[0]):
        L = min(int(lengths[b]), ids.shape[1])
        assert counts[b].tolist() == py_counts(ids[b].tolist(), L, nb)
        assert counts[b].sum().item() == max(2 * L - 1, 0)


def test_unigram_and_bigram_do_not_systematically_collide() -> None:
    g = torch.Generator().manual_seed(1)
    nb = 10_000
    a = torch.randint(0, 128_000, (1, 200_001), generator=g)
    buckets, _ = ngram.ngram_bucket_ids(a, torch.tensor([a.shape[1]]), nb)
    uni, bi = buckets[0, : a.shape[1] - 1], buckets[0, a.shape[1] :]  # unigram a_t vs bigram (a_t, a_t+1)
    # independent buckets collide with probability 1/nb: 20 expected among 200,000 pairs
    assert (uni == bi).sum().item() < 60
    swapped, _ = ngram.ngram_bucket_ids(a.flip(1), torch.tensor([a.shape[1]]), nb)
    assert (bi == swapped[0, a.shape[1] :].flip(0)).float().mean().item() < 0.01  # (a, b) vs (b, a)
    # spread: 200,000 unigrams over 10,000 buckets, Poisson(20) per bucket
    per_bucket = torch.bincount(uni, minlength=nb)
    assert per_bucket.min().item() > 0 and per_bucket.max().item() < 60


def test_dsir_reference_equals_counts_dot_log_ratio() -> None:
    ids, lengths = make_batch()
    log_ratio = torch.randn(101, generator=torch.Generator().manual_seed(2))
    counts = ngram.hashed_ngram_counts_reference(ids, lengths, 101).double()
    expected = (counts @ log_ratio.double()).float()
    torch.testing.assert_close(ngram.dsir_log_weights_reference(ids, lengths, log_ratio), expected, rtol=1e-6, atol=1e-5)


def test_dispatch_on_cpu_uses_reference() -> None:
    ids, lengths = make_batch()
    log_ratio = torch.randn(64, generator=torch.Generator().manual_seed(3))
    assert torch.equal(ngram.hashed_ngram_counts(ids, lengths, 64), ngram.hashed_ngram_counts_reference(ids, lengths, 64))
    assert torch.equal(ngram.dsir_log_weights(ids, lengths, log_ratio), ngram.dsir_log_weights_reference(ids, lengths, log_ratio))
    with pytest.raises(ValueError):
        ngram.hashed_ngram_counts(ids, lengths[:2], 64)


def test_empty_sequences() -> None:
    ids = torch.zeros((2, 0), dtype=torch.int64)
    buckets, valid = ngram.ngram_bucket_ids(ids, torch.zeros(2, dtype=torch.int64), 10)
    assert buckets.shape == (2, 0) and valid.shape == (2, 0)
    assert torch.equal(ngram.hashed_ngram_counts(ids, torch.zeros(2, dtype=torch.int64), 10), torch.zeros(2, 10))


ID_LAYOUTS = ["contiguous", "transposed", "int32"]


def layout(ids: torch.Tensor, kind: str) -> torch.Tensor:
    if kind == "transposed":
        return ids.t().contiguous().t()  # same values, column-major strides
    if kind == "int32":
        return ids.to(torch.int32)  # -1 / -100 stay negative; the 2^40 id wraps, like any int32 cast would
    return ids


# ---------------------------------------------------------------- Triton kernels (interpreter on CPU, compiled on CUDA)


@pytest.mark.parametrize("kind", ID_LAYOUTS)
@pytest.mark.parametrize("nb", [101, 10_000])
def test_triton_counts_match_reference(kind: str, nb: int, kernel_device: torch.device, poisoned: None) -> None:
    raw, lengths = make_batch()
    ids = layout(raw, kind)
    got = ngram.hashed_ngram_counts(layout(raw.to(kernel_device), kind), lengths.to(kernel_device), nb).cpu()
    assert torch.equal(got, ngram.hashed_ngram_counts_reference(ids, lengths, nb))  # integer counts: exact


@pytest.mark.parametrize("kind", ID_LAYOUTS)
@pytest.mark.parametrize("ratio_dtype", [torch.float32, torch.float16, torch.bfloat16])
def test_triton_dsir_matches_reference(kind: str, ratio_dtype: torch.dtype, kernel_device: torch.device, poisoned: None) -> None:
    raw, lengths = make_batch(B=5, T=1100)  # several 1024-token tiles
    ids = layout(raw, kind)
    log_ratio = (torch.randn(10_000, generator=torch.Generator().manual_seed(4)) * 5).to(ratio_dtype)
    got = ngram.dsir_log_weights(layout(raw.to(kernel_device), kind), lengths.to(kernel_device), log_ratio.to(kernel_device)).cpu()
    want = ngram.dsir_log_weights_reference(ids, lengths, log_ratio)  # fp64 sum of the same rounded ratios
    assert_written(got)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-3)  # fp32 accumulation of ~2,000 terms of size ~5
    assert got[1].item() == 0.0  # empty document


def test_kernels_compile_for_gpu(compile_for_gpu) -> None:
    common = dict(ids_ptr="*i64", len_ptr="*i64", T="i32", stride_b="i32", stride_t="i32", NUM_BUCKETS="i32", BLOCK_T="constexpr")
    compile_for_gpu(
        "ngram.py",
        [
            ("_ngram_counts_kernel", dict(common, out_ptr="*fp32"), dict(BLOCK_T=1024), {}),
            ("_dsir_kernel", dict(common, ratio_ptr="*fp32", out_ptr="*fp32"), dict(BLOCK_T=1024), {}),
            ("_dsir_kernel", dict(common, ids_ptr="*i32", ratio_ptr="*bf16", out_ptr="*fp32"), dict(BLOCK_T=64), {}),
            # Triton turns int arguments equal to 1 into constants
            ("_ngram_counts_kernel", dict(common, out_ptr="*fp32"), dict(T=1, stride_b=1, stride_t=1, BLOCK_T=16), {}),
            ("_dsir_kernel", dict(common, ratio_ptr="*fp32", out_ptr="*fp32"), dict(T=1, stride_t=1, BLOCK_T=16), {}),
        ],
    )
