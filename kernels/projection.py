"""Seeded Rademacher random projection of gradient blocks (METHODS.md 10.3: TRAK's projector, as LESS uses it).

    out[b, j] = sum_p g[b, p] * s(p, j),   s(p, j) = +1 or -1

The signs are never stored: each is a function of (seed, p, j), recomputed wherever it is needed, so
a [B, P] block projects to [B, dim] without a [P, dim] matrix (P is millions of parameters, dim
thousands). The entries are not scaled by 1/sqrt(dim) (TRAK's convention); E[<Pu, Pv>] = dim <u, v>.

A sign is the product of two hashed signs, s(p, j) = r(p, j // LO) * q(p, j % LO) with LO = 128
columns: for a fixed p the columns stay pairwise uncorrelated, and with every (p, j) mixed through
different words, the projected inner products have the variance of an i.i.d. Rademacher matrix (the
JL test checks it). It makes a block of c rows cost c * (dim / LO + LO) hashes instead of c * dim, so
the CPU reference is bound by its GEMM, not by hashing: [B, c] x r -> [B * dim / LO, c] @ q [c, LO].

Precision: `dtype` float32 multiplies the gradients as given (rounded to fp32); bfloat16 rounds them to bf16
first (LESS rounds them to fp16) and multiplies in bf16 arithmetic, accumulating in fp32: the signs are exact
in bf16, so both paths sum the same rounded products, and the CPU reference's bf16 GEMM (2x fp32's rate on a
CPU with native bf16) also rounds each parameter chunk's [B, dim] partial sum to bf16 before adding it up in
fp32 (a relative error near 2^-9 per coordinate, far below the projection's own 1/sqrt(dim)).

The hash is 32-bit integer arithmetic that the Triton kernel (uint32, wrapping) and the torch
reference (int64, masked to 32 bits; every product stays below 2^63) compute bit for bit alike:

    row(p)     = mix(p ^ mix(seed))                        one word per parameter index
    r(p, a)    = sign of mix(row(p) + a * GOLDEN)          sign: 1 - 2 * (top bit)
    q(p, c)    = sign of mix((row(p) ^ SALT) + c * GOLDEN)

where mix is a two-round multiply-xorshift finaliser. Indices p must be below 2^32.
"""
from __future__ import annotations

import threading

import torch

from .dispatch import INTERPRETER, tl, triton, use_triton  # triton is None without Triton: the reference runs

MASK32 = 0xFFFFFFFF
MUL_A = 0x7FEB352D  # odd multipliers below 2^31: an int64 product with a 32-bit value cannot overflow
MUL_B = 0x5BD1E995
GOLDEN = 0x61C88647  # 2^32 / phi mod 2^32 (odd, below 2^31): spreads the column index over the word
SALT = 0x2545F491  # separates q's words from r's
LO = 128  # columns per q block: s(p, j) = r(p, j // LO) * q(p, j % LO)
DEFAULT_CHUNK_ELEMS = 1 << 22  # reference: g * r products formed at a time ([B * dim / LO, c]: 16 MiB in float32)
MAX_CHUNK_ROWS = 4096  # ... and at most this many parameters per GEMM
FACTOR_CACHE_ELEMS = 1 << 26  # reference: keep the last (P, dim, seed)'s sign factors when P * (dim / LO + LO) fits (256 MiB)
_FACTORS: dict[tuple, tuple[torch.Tensor, torch.Tensor]] = {}  # the kept factors: r.T [H, P], q [P, LO], by (P, dim, seed, device, dtype)
_FACTORS_LOCK = threading.Lock()


# ----------------------------------------------------------------------------------------------
# torch reference
# ----------------------------------------------------------------------------------------------


def _mix_torch(x: torch.Tensor) -> torch.Tensor:
    """The 32-bit finaliser, in place, on an int64 tensor holding values in [0, 2^32) (returned)."""
    tmp = torch.empty_like(x)
    x.bitwise_xor_(torch.bitwise_right_shift(x, 16, out=tmp))
    x.mul_(MUL_A).bitwise_and_(MASK32)
    x.bitwise_xor_(torch.bitwise_right_shift(x, 15, out=tmp))
    x.mul_(MUL_B).bitwise_and_(MASK32)
    return x.bitwise_xor_(torch.bitwise_right_shift(x, 16, out=tmp))


def seed_word(seed: int) -> int:
    """The seed as the 32-bit word every row hash starts from."""
    return int(_mix_torch(torch.tensor([int(seed) & MASK32], dtype=torch.int64)).item())


def _hashed_signs(words: torch.Tensor, columns: int) -> torch.Tensor:
    """Signs of mix(word + a * GOLDEN) for a in 0..columns-1: words [c] int64 -> [c, columns] float32 of +-1."""
    col = (torch.arange(columns, dtype=torch.int64, device=words.device) * GOLDEN) & MASK32  # [columns]
    h = _mix_torch((words[:, None] + col[None, :]).bitwise_and_(MASK32))  # [c, columns]
    return h.bitwise_right_shift_(31).to(torch.float32).mul_(-2.0).add_(1.0)


def sign_factors(rows: torch.Tensor, dim: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(r [c, ceil(dim / LO)], q [c, LO]) of parameter indices `rows` ([c] int64, each < 2^32), float32 +-1."""
    row = _mix_torch((rows.to(torch.int64) & MASK32) ^ seed_word(seed))  # [c] (a fresh tensor: mixed in place)
    return _hashed_signs(row, -(-dim // LO)), _hashed_signs(row ^ SALT, LO)


def signs_reference(rows: torch.Tensor, dim: int, seed: int) -> torch.Tensor:
    """The sign block of parameter indices `rows` ([c] int64) -> [c, dim] float32 of +-1 (tests only: it is the
    [c, dim] matrix the projection never builds)."""
    r, q = sign_factors(rows, dim, seed)  # [c, H], [c, LO]
    return (r[:, :, None] * q[:, None, :]).reshape(len(rows), -1)[:, :dim]


def _transposed_factors(rows: torch.Tensor, dim: int, seed: int, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    """(r.T [H, c], q [c, LO]) of `rows` in `dtype`: r transposed so a chunk's products g * r run along contiguous memory."""
    r, q = sign_factors(rows, dim, seed)
    return r.T.contiguous().to(dtype), q.to(dtype)


def _kept_factors(P: int, dim: int, seed: int, device: torch.device, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor] | None:
    """The sign factors (r.T [H, P], q [P, LO]) of parameters 0..P-1, hashed once and kept for the next block of the
    same shape (the gradient stage projects every batch with the same P, dim and seed); None when they would exceed
    FACTOR_CACHE_ELEMS. Thread-safe: the gradient stage projects several checkpoints at once on a CPU."""
    if P * (-(-dim // LO) + LO) > FACTOR_CACHE_ELEMS:
        return None
    key = (P, dim, seed, str(device), dtype)
    with _FACTORS_LOCK:
        kept = _FACTORS.get(key)
        if kept is None:
            parts = [_transposed_factors(torch.arange(p0, min(P, p0 + MAX_CHUNK_ROWS), dtype=torch.int64, device=device), dim, seed, dtype)
                     for p0 in range(0, P, MAX_CHUNK_ROWS)]
            kept = (torch.cat([r for r, _ in parts], dim=1), torch.cat([q for _, q in parts]))
            _FACTORS.clear()  # one shape at a time: memory stays bounded
            _FACTORS[key] = kept
    return kept


def project_reference(grads: torch.Tensor, dim: int, seed: int, chunk_elems: int = DEFAULT_CHUNK_ELEMS,
                      dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """The projection streamed over parameter chunks: grads [B, P] (any float dtype) -> [B, dim] float32, the
    products taken in `dtype` (float32 or bfloat16; see the module's note on precision).

    Per chunk of c parameters: (g * r) [B * H, c] @ q [c, LO] with H = ceil(dim / LO); peak extra memory is
    about chunk_elems values plus the kept sign factors (P * (H + LO) values, only while within FACTOR_CACHE_ELEMS),
    never P * dim."""
    if dtype not in (torch.float32, torch.bfloat16):
        raise ValueError(f"the projection multiplies in float32 or bfloat16, not {dtype}")
    B, P = grads.shape
    H = -(-dim // LO)
    out = torch.zeros((B * H, LO), dtype=torch.float32, device=grads.device)  # [B * H, LO]
    step = max(1, min(MAX_CHUNK_ROWS, chunk_elems // max(B * H, 1)))
    scaled = torch.empty(B * H * min(step, P), dtype=dtype, device=grads.device)  # one chunk's products, reused
    factors = _kept_factors(P, dim, seed, grads.device, dtype)
    for p0 in range(0, P, step):
        c = min(step, P - p0)
        if factors is not None:
            rT, q = factors[0][:, p0 : p0 + c], factors[1][p0 : p0 + c]  # views of the kept factors: [H, c], [c, LO]
        else:
            rT, q = _transposed_factors(torch.arange(p0, p0 + c, dtype=torch.int64, device=grads.device), dim, seed, dtype)
        chunk = scaled[: B * H * c].view(B, H, c)
        torch.mul(grads[:, None, p0 : p0 + c].to(dtype), rT[None], out=chunk)  # [B, H, c]
        if dtype == torch.float32:
            out.addmm_(chunk.view(B * H, c), q)  # [B * H, c] @ [c, LO]
        else:
            out.add_(chunk.view(B * H, c) @ q)  # the bf16 GEMM accumulates in fp32 and rounds its [B * H, LO] result to bf16
    return out.view(B, H * LO)[:, :dim]


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
    def _sign(words):
        # +-1.0 from the top bit of mixed uint32 words
        return 1.0 - 2.0 * (_mix(words) >> 31).to(tl.float32)

    @triton.jit
    def _project_kernel(
        g_ptr, out_ptr, B, P, DIM, s_gb, s_gp, seed_word, p_per_split,
        BLOCK_B: tl.constexpr, BLOCK_P: tl.constexpr, BLOCK_K: tl.constexpr, LO: tl.constexpr,
        BF16_DOT: tl.constexpr,
    ):
        # grid (dim tiles, batch tiles, P splits): each program sums its P range into a partial [BLOCK_B, BLOCK_K]
        pid_k = tl.program_id(0)
        pid_b = tl.program_id(1)
        split = tl.program_id(2)
        offs_b = pid_b * BLOCK_B + tl.arange(0, BLOCK_B)
        offs_k = pid_k * BLOCK_K + tl.arange(0, BLOCK_K)
        col_hi = (offs_k // LO).to(tl.uint32) * 0x61C88647  # [BLOCK_K] r's column word
        col_lo = (offs_k % LO).to(tl.uint32) * 0x61C88647  # [BLOCK_K] q's column word
        p_start = split * p_per_split
        p_end = tl.minimum(p_start + p_per_split, P)
        acc = tl.zeros((BLOCK_B, BLOCK_K), dtype=tl.float32)
        for p0 in range(p_start, p_end, BLOCK_P):
            offs_p = p0 + tl.arange(0, BLOCK_P)
            g = tl.load(
                g_ptr + offs_b[:, None].to(tl.int64) * s_gb + offs_p[None, :].to(tl.int64) * s_gp,
                mask=(offs_b[:, None] < B) & (offs_p[None, :] < p_end), other=0.0,
            )  # [BLOCK_B, BLOCK_P]
            row = _mix(offs_p.to(tl.uint32) ^ seed_word.to(tl.uint32))  # [BLOCK_P]
            s = _sign(row[:, None] + col_hi[None, :]) * _sign((row ^ 0x2545F491)[:, None] + col_lo[None, :])  # [BLOCK_P, BLOCK_K] +-1
            if BF16_DOT:  # g is bf16 (rounded by the launcher): exact products, fp32 accumulation
                acc += tl.dot(g.to(tl.bfloat16), s.to(tl.bfloat16))
            else:  # also bf16 under the interpreter, whose bf16 dot is wrong: the same products in fp32
                acc += tl.dot(g.to(tl.float32), s, input_precision="ieee")
        out = out_ptr + split.to(tl.int64) * B * DIM + offs_b[:, None] * DIM + offs_k[None, :]
        tl.store(out, acc, mask=(offs_b[:, None] < B) & (offs_k[None, :] < DIM))


def project_triton(grads: torch.Tensor, dim: int, seed: int, splits: int | None = None,
                   block_p: int = 64, block_k: int = 64, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Triton launcher (CUDA tensors, or CPU tensors under TRITON_INTERPRET=1): grads [B, P] -> [B, dim] float32,
    the products taken in `dtype` (float32 or bfloat16).

    The P range is cut into `splits` parts (default: enough programs to fill a GPU) whose partial sums
    are added in a fixed order afterwards, so the result does not depend on scheduling."""
    if dtype == torch.bfloat16:
        grads = grads.to(torch.bfloat16)  # rounded here (the interpreter's in-kernel bf16 casts are not round-to-nearest)
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
                              BLOCK_B=block_b, BLOCK_P=block_p, BLOCK_K=block_k, LO=LO,
                              BF16_DOT=dtype == torch.bfloat16 and not INTERPRETER)
    else:
        partial.zero_()
    return partial.sum(dim=0)  # [B, dim]


# ----------------------------------------------------------------------------------------------
# dispatch
# ----------------------------------------------------------------------------------------------


def project(grads: torch.Tensor, dim: int, seed: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Seeded Rademacher projection of a gradient block: grads [B, P] -> [B, dim] float32 (unscaled), the products
    taken in `dtype` (float32, or bfloat16: the gradients rounded to bf16, accumulated in fp32)."""
    if grads.dim() != 2 or dim < 1:
        raise ValueError(f"expected grads [B, P] and dim >= 1, got {tuple(grads.shape)} and {dim}")
    if grads.shape[1] >= 1 << 32:
        raise ValueError(f"the projection hashes parameter indices in 32 bits; P = {grads.shape[1]} is too large")
    if use_triton(grads):
        return project_triton(grads, dim, seed, dtype=dtype)
    return project_reference(grads, dim, seed, dtype=dtype)
