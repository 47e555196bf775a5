from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest
import torch
from kernel_checks import assert_written

from dataselect.kernels import projection
from dataselect.kernels.projection import project, project_reference, project_triton, signs_reference

SHAPES = [(1, 1, 1), (3, 301, 70), (17, 130, 300), (33, 77, 16)]  # (B, P, dim): single elements, ragged tiles and r columns, > one batch tile


def block(B: int, P: int, dtype: torch.dtype = torch.float32, seed: int = 0) -> torch.Tensor:
    """A [B, P] gradient block drawn on the CPU."""
    return torch.randn(B, P, generator=torch.Generator().manual_seed(seed)).to(dtype)


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
def test_kernel_matches_reference(kernel_device: torch.device, shape: tuple[int, int, int], dtype: torch.dtype, poisoned: None) -> None:
    B, P, dim = shape
    g = block(B, P, dtype)
    expected = project_reference(g, dim, seed=7, chunk_elems=97)  # several ragged chunks
    got = project(g.to(kernel_device), dim, seed=7).cpu()
    assert_written(got)
    # both sum the same rounded inputs in fp32 (exact +-1 products); only the order differs
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-4 * (P ** 0.5))


@pytest.mark.parametrize("shape", SHAPES)
def test_bf16_kernel_sums_the_bf16_rounded_gradients(kernel_device: torch.device, shape: tuple[int, int, int], poisoned: None) -> None:
    """dtype bfloat16: the kernel multiplies bf16-rounded gradients by exact signs and accumulates in fp32, so it equals
    the fp32 projection of the rounded block."""
    B, P, dim = shape
    g = block(B, P, seed=2)
    expected = project_reference(g.bfloat16(), dim, seed=7, chunk_elems=97)
    got = project(g.to(kernel_device), dim, seed=7, dtype=torch.bfloat16).cpu()
    assert_written(got)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-4 * (P ** 0.5))


@pytest.mark.parametrize("chunk_elems", [97, 1 << 22])
def test_bf16_reference_rounds_only_each_chunks_partial_sums(chunk_elems: int) -> None:
    """The CPU's bf16 GEMM rounds each chunk's [B, dim] partial sum to bf16 (relative 2^-8 at most) before the fp32
    sum: within that of the fp32 projection of the rounded block, and a cosine to fp32's far above the JL noise."""
    B, P, dim = 5, 3000, 300
    g = block(B, P, seed=3)
    exact = project_reference(g.bfloat16(), dim, seed=7)  # [B, dim]
    got = project_reference(g, dim, seed=7, chunk_elems=chunk_elems, dtype=torch.bfloat16)
    chunks = -(-P // max(1, min(4096, chunk_elems // (B * 3))))  # H = 3 sign columns of 128 for dim 300
    partial = g.abs().max().item() * P**0.5  # a chunk's partial sum is at most about this large (sums of random signs)
    assert (got - exact).abs().max().item() <= 2**-8 * partial * chunks**0.5
    cosines = torch.nn.functional.cosine_similarity(got, project_reference(g, dim, seed=7), dim=1)
    assert cosines.min().item() > 0.9999


def test_bf16_rows_do_not_depend_on_the_block_they_are_projected_in() -> None:
    """Identical gradients give identical features, whatever rows share their block (LESS's identical-samples answer)."""
    g = block(9, 2000, seed=4)
    whole = project_reference(g, 256, seed=1, dtype=torch.bfloat16)
    assert torch.equal(project_reference(g[3:4], 256, seed=1, dtype=torch.bfloat16), whole[3:4])
    assert torch.equal(project_reference(torch.cat([g[5:6], g[5:6]]), 256, seed=1, dtype=torch.bfloat16)[1], whole[5])


def test_reference_rejects_other_product_dtypes() -> None:
    with pytest.raises(ValueError, match="float32 or bfloat16"):
        project_reference(block(2, 10), 8, seed=0, dtype=torch.float16)


def test_kernel_splits_and_strides(kernel_device: torch.device, poisoned: None) -> None:
    """A non-contiguous block, and the P range cut into several partial sums, give the reference's result."""
    g = block(6, 2 * 260)[:, ::2]  # [6, 260] with stride 2 along P
    expected = project_reference(g, 40, seed=1)
    for splits in (1, 3, 5):
        got = project_triton(g.to(kernel_device), 40, seed=1, splits=splits, block_p=32, block_k=32).cpu()
        torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-3)


def test_kept_sign_factors_give_what_hashing_each_chunk_gives(monkeypatch: pytest.MonkeyPatch) -> None:
    g = block(3, 5000)
    kept = project_reference(g, 300, seed=4, chunk_elems=3 * 3 * 700)  # the factors of P = 5000 are hashed once and kept
    monkeypatch.setattr(projection, "FACTOR_CACHE_ELEMS", 0)  # too large to keep: hashed chunk by chunk
    assert torch.equal(project_reference(g, 300, seed=4, chunk_elems=3 * 3 * 700), kept)


def test_signs_are_seeded_balanced_and_not_materialised_by_chunking() -> None:
    rows = torch.arange(4096)
    a, b = signs_reference(rows, 64, seed=0), signs_reference(rows, 64, seed=1)
    assert set(a.unique().tolist()) == {-1.0, 1.0}
    assert torch.equal(a, signs_reference(rows, 64, seed=0))  # the same seed: the same matrix
    assert (a != b).float().mean().item() == pytest.approx(0.5, abs=0.02)  # another seed: an independent one
    assert abs(a.mean().item()) < 0.02
    gram = a.T @ a / len(rows)  # [64, 64] columns nearly orthogonal
    assert (gram - torch.eye(64)).abs().max().item() < 5 / len(rows) ** 0.5
    # chunking only changes which rows are hashed together (and the order of the fp32 sums): every chunking gives
    # g @ S for the one sign matrix S, within the rounding bound of a float32 sum of P terms, n u sum |g_i S_ij|
    g = block(2, 1000)
    signs = signs_reference(torch.arange(1000), 33, 5).double()  # [P, dim]
    exact = g.double() @ signs  # [2, dim]
    bound = 1000 * 2.0**-24 * (g.double().abs() @ signs.abs())  # [2, dim]
    for chunk in (33, 1000, 10**6):
        assert ((project_reference(g, 33, 5, chunk_elems=chunk).double() - exact).abs() <= bound).all()


def test_reference_preserves_inner_products_within_the_jl_bound() -> None:
    """METHODS.md 10.7.1: <Pu, Pv> / k estimates <u, v>; for unit vectors the error is within 4 / sqrt(k)."""
    d, k = 3000, 1024
    g = torch.Generator().manual_seed(3)
    u = torch.nn.functional.normalize(torch.randn(24, d, generator=g, dtype=torch.float64), dim=1).float()  # [24, d]
    exact = u @ u.T  # [24, 24]
    p = project_reference(u, k, seed=11)  # [24, k]
    estimate = p @ p.T / k
    errors = (estimate - exact)[~torch.eye(24, dtype=torch.bool)]
    assert errors.abs().max().item() < 4 / k**0.5
    assert errors.std().item() == pytest.approx(1 / k**0.5, rel=0.25)  # about 1/sqrt(k) for near-orthogonal pairs
    cosines = torch.nn.functional.normalize(p, dim=1) @ torch.nn.functional.normalize(p, dim=1).T
    assert (cosines - exact).abs().max().item() < 4 / k**0.5


_PEAK_SCRIPT = textwrap.dedent(
    """
    import json, resource, sys
    import torch
    from dataselect.kernels.projection import project_reference
    B, P, dim = 2, 16384, 4096
    g = torch.randn(B, P)
    project_reference(g[:, :64], dim, 0)  # warm the allocator and kernels
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    out = project_reference(g, dim, 0)
    after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"grew_kib": after - before, "finite": bool(torch.isfinite(out).all())}))
    """
)


def test_projection_never_allocates_a_p_by_dim_matrix() -> None:
    """The reference projects a [2, 16384] block to 4096 dimensions: a [P, dim] float32 matrix alone would be
    256 MiB (512 MiB as int64 hashes); the process's peak resident memory grows by far less than that."""
    proc = subprocess.run([sys.executable, "-c", _PEAK_SCRIPT], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "OMP_NUM_THREADS": "1", "DATASELECT_KERNELS": "reference"})
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["finite"]
    assert result["grew_kib"] < 96 * 1024, result  # chunks of 2^21 entries: ~16 MiB of int64 per temporary


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_kernel_peak_cuda_memory() -> None:
    """On a GPU the kernel's only allocation besides its output is the [splits, B, dim] partial sums."""
    g = torch.randn(16, 1 << 22, device="cuda", dtype=torch.bfloat16)  # P = 4M: a [P, 8192] matrix would be 64 GiB in fp16
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    base = torch.cuda.memory_allocated()
    out = project(g, 8192, seed=0)
    torch.cuda.synchronize()
    assert out.shape == (16, 8192)
    assert torch.cuda.max_memory_allocated() - base < 1 << 30


def test_rejects_bad_shapes() -> None:
    with pytest.raises(ValueError):
        project(torch.zeros(3), 4, 0)
    with pytest.raises(ValueError):
        project(torch.zeros(2, 3), 0, 0)


def test_kernel_compiles_for_gpu(compile_for_gpu) -> None:
    sig = dict(g_ptr="*bf16", out_ptr="*fp32", B="i32", P="i32", DIM="i32", s_gb="i32", s_gp="i32", seed_word="i64",
               p_per_split="i32", BLOCK_B="constexpr", BLOCK_P="constexpr", BLOCK_K="constexpr", LO="constexpr", BF16_DOT="constexpr")
    compile_for_gpu(projection.__file__, [
        ("_project_kernel", sig, dict(BLOCK_B=16, BLOCK_P=64, BLOCK_K=64, LO=128, BF16_DOT=False), dict(num_warps=4)),
        ("_project_kernel", sig, dict(BLOCK_B=16, BLOCK_P=64, BLOCK_K=64, LO=128, BF16_DOT=True), dict(num_warps=4)),
        ("_project_kernel", dict(sig, g_ptr="*fp32"), dict(BLOCK_B=32, BLOCK_P=64, BLOCK_K=64, LO=128, s_gp=1, BF16_DOT=False), {}),
    ])
