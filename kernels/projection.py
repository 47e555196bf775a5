"""Seeded Rademacher random projection of gradient blocks (METHODS.md 10.3: TRAK's projector, as LESS uses it).

    out[b, j] = sum_p g[b, p] * s(p, j),   s(p, j) = +1 or -1

The signs are never stored: each is a hash of (seed, p, j), recomputed wherever it is needed, so a
[B, P] block projects to [B, dim] without a [P, dim] matrix (P is millions of parameters, dim
thousands). The entries are not scaled by 1/sqrt(dim) (TRAK's convention); E[<Pu, Pv>] = dim <u, v>.

The hash is 32-bit integer arithmetic that the Triton kernel (uint32, wrapping) and the torch
reference (int64, masked to 32 bits; every product stays below 2^63) compute bit for bit alike:

    row(p)  = mix(p ^ mix(seed))              one value per parameter index
    s(p, j) = 1 - 2 * (mix(row(p) + j * GOLDEN mod 2^32) >> 31)

where mix is a two-round multiply-xorshift finaliser. Indices p must be below 2^32.
"""
from __future__ import annotations

import torch

from .dispatch import tl, triton, use_triton  # triton is None without Triton: the reference runs

MASK32 = 0xFFFFFFFF
MUL_A = 0x7FEB352D  # odd multipliers below 2^31: an int64 product with a 32-bit value cannot overflow
MUL_B = 0x5BD1E995
GOLDEN = 0x61C88647  # 2^32 / phi mod 2^32 (odd, below 2^31): spreads the column index over the word
DEFAULT_CHUNK_ELEMS = 1 << 21  # reference: sign entries generated at a time (16 MiB of int64 temporaries)


# ----------------------------------------------------------------------------------------------
# torch reference
# ----------------------------------------------------------------------------------------------


def _mix_torch(x: torch.Tensor) -> torch.Tensor:
    """The 32-bit finaliser on int64 tensors holding values in [0, 2^32)."""
    x = x ^ (x >> 16)
    x = (x * MUL_A) & MASK32
    x = x ^ (x >> 15)
    x = (x * MUL_B) & MASK32
    return x ^ (x >> 16)


def seed_word(seed: int) -> int:
    """The seed as the 32-bit word every row hash starts from."""
    x = torch.tensor([int(seed) & MASK32], dtype=torch.int64)
    return int(_mix_torch(x).item())


def signs_reference(rows: torch.Tensor, dim: int, seed: int) -> torch.Tensor:
    """The sign block of parameter indices `rows` ([c] int64, each < 2^32) -> [c, dim] float32 of +-1."""
    row = _mix_torch((rows.to(torch.int64) & MASK32) ^ seed_word(seed))  # [c]
    col = (torch.arange(dim, dtype=torch.int64, device=rows.device) * GOLDEN) & MASK32  # [dim]
    h = _mix_torch((row[:, None] + col[None, :]) & MASK32)  # [c, dim]
    return (1 - 2 * (h >> 31)).to(torch.float32)


def project_reference(grads: torch.Tensor, dim: int, seed: int, chunk_elems: int = DEFAULT_CHUNK_ELEMS) -> torch.Tensor:
    """The projection streamed over parameter chunks: grads [B, P] (any float dtype) -> [B, dim] float32.

    Peak extra memory is about chunk_elems sign entries (int64 while hashed), whatever P is."""
    B, P = grads.shape
    out = torch.zeros((B, dim), dtype=torch.float32, device=grads.device)  # [B, dim]
    step = max(1, chunk_elems // max(dim, 1))
    for p0 in range(0, P, step):
        rows = torch.arange(p0, min(P, p0 + step), dtype=torch.int64, device=grads.device)  # [c]
        out.addmm_(grads[:, p0 : p0 + step].to(torch.float32), signs_reference(rows, dim, seed))  # [B, c] @ [c, dim]
    return out


# ----------------------------------------------------------------------------------------------
# Triton kernel
# ----------------------------------------------------------------------------------------------

if triton is not None:

    @triton.jit
    def _mix(x):
        # x uint32: the same finaliser as _mix_torch, wrapping in 32 bits
        x = x ^ (x >> 16)
        x = x * 0x7FEB352D
        x = x ^ (x >> 15)
        x = x * 0x5BD1E995
        return x ^ (x >> 16)

    @triton.jit
    def _project_kernel(
        g_ptr, out_ptr, B, P, DIM, s_gb, s_gp, seed_word, p_per_split,
        BLOCK_B: tl.constexpr, BLOCK_P: tl.constexpr, BLOCK_K: tl.constexpr,
    ):
        # grid (dim tiles, batch tiles, P splits): each program sums its P range into a partial [BLOCK_B, BLOCK_K]
        pid_k = tl.program_id(0)
        pid_b = tl.program_id(1)
        split = tl.program_id(2)
        offs_b = pid_b * BLOCK_B + tl.arange(0, BLOCK_B)
        offs_k = pid_k * BLOCK_K + tl.arange(0, BLOCK_K)
        col = offs_k.to(tl.uint32) * 0x61C88647  # [BLOCK_K]
        p_start = split * p_per_split
        p_end = tl.minimum(p_start + p_per_split, P)
        acc = tl.zeros((BLOCK_B, BLOCK_K), dtype=tl.float32)
        for p0 in range(p_start, p_end, BLOCK_P):
            offs_p = p0 + tl.arange(0, BLOCK_P)
            g = tl.load(
                g_ptr + offs_b[:, None].to(tl.int64) * s_gb + offs_p[None, :].to(tl.int64) * s_gp,
                mask=(offs_b[:, None] < B) & (offs_p[None, :] < p_end), other=0.0,
            ).to(tl.float32)  # [BLOCK_B, BLOCK_P]
            row = _mix(offs_p.to(tl.uint32) ^ seed_word.to(tl.uint32))  # [BLOCK_P]
            h = _mix(row[:, None] + col[None, :])  # [BLOCK_P, BLOCK_K]
            s = 1.0 - 2.0 * (h >> 31).to(tl.float32)  # [BLOCK_P, BLOCK_K] +-1
            acc += tl.dot(g, s, input_precision="ieee")
        out = out_ptr + split.to(tl.int64) * B * DIM + offs_b[:, None] * DIM + offs_k[None, :]
        tl.store(out, acc, mask=(offs_b[:, None] < B) & (offs_k[None, :] < DIM))


def project_triton(grads: torch.Tensor, dim: int, seed: int, splits: int | None = None,
                   block_p: int = 64, block_k: int = 64) -> torch.Tensor:
    """Triton launcher (CUDA tensors, or CPU tensors under TRITON_INTERPRET=1): grads [B, P] -> [B, dim] float32.

    The P range is cut into `splits` parts (default: enough programs to fill a GPU) whose partial sums
    are added in a fixed order afterwards, so the result does not depend on scheduling."""
    B, P = grads.shape
    block_b = 16 if B <= 16 else 32
    tiles = triton.cdiv(dim, block_k) * triton.cdiv(B, block_b)
    if splits is None:
        splits = max(1, min(triton.cdiv(P, 16 * block_p), -(-512 // tiles)))  # ~512 programs, each >= 16 P tiles
    p_per_split = triton.cdiv(triton.cdiv(P, splits), block_p) * block_p
    splits = max(1, triton.cdiv(P, p_per_split))
    partial = torch.empty((splits, B, dim), dtype=torch.float32, device=grads.device)  # [S, B, dim]
    if B * dim > 0 and P > 0:
        grid = (triton.cdiv(dim, block_k), triton.cdiv(B, block_b), splits)
        _project_kernel[grid](grads, partial, B, P, dim, grads.stride(0), grads.stride(1), seed_word(seed), p_per_split,
                              BLOCK_B=block_b, BLOCK_P=block_p, BLOCK_K=block_k)
    else:
        partial.zero_()
    return partial.sum(dim=0)  # [B, dim]


# ----------------------------------------------------------------------------------------------
# dispatch
# ----------------------------------------------------------------------------------------------


def project(grads: torch.Tensor, dim: int, seed: int) -> torch.Tensor:
    """Seeded Rademacher projection of a gradient block: grads [B, P] -> [B, dim] float32 (unscaled)."""
    if grads.dim() != 2 or dim < 1:
        raise ValueError(f"expected grads [B, P] and dim >= 1, got {tuple(grads.shape)} and {dim}")
    if grads.shape[1] >= 1 << 32:
        raise ValueError(f"the projection hashes parameter indices in 32 bits; P = {grads.shape[1]} is too large")
    if use_triton(grads):
        return project_triton(grads, dim, seed)
    return project_reference(grads, dim, seed)
