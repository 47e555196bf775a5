"""Hashed unigram + bigram features on token ids, and the fused DSIR log-importance weight.

DSIR (METHODS.md section 2) hashes every unigram and bigram of a document into `num_buckets` shared
buckets and scores the document with log w(x) = sum_j c_j(x) * log_ratio[j]. Here the n-grams are over
*token ids* (not wordpunct strings), so the hash is an integer hash that torch (CPU or CUDA) and Triton
compute bit-identically.

The hash (all arithmetic on non-negative int64 values below 2^63, so nothing overflows):

    M32  = 0xFFFFFFFF
    MIX  = 0x045D9F3B              # < 2^31, so (x < 2^32) * MIX < 2^59
    mix32(x) = x ^= x >> 16; x = (x * MIX) & M32; x ^= x >> 16; x = (x * MIX) & M32; x ^= x >> 16
    unigram(a)    = mix32(a & M32) % num_buckets
    bigram(a, b)  = mix32(((mix32(a & M32) * 0x01000193) & M32) ^ (b & M32) ^ 0x1B873593) % num_buckets

mix32 is a bijection on 32-bit values (the well-known "hash32" integer finaliser), so distinct unigrams
only collide through the final modulo. A bigram goes through a different formula (its first token is
mixed, multiplied by the odd FNV prime, combined with the second token and a salt, then mixed again),
so unigram a and bigram (a, b) do not collide systematically, and bigram (a, b) != bigram (b, a).
Negative ids (e.g. padding) are taken modulo 2^32 like any other id; `lengths` decides what counts.

A document of length L (its first `lengths[b]` tokens) contributes L unigrams and L-1 bigrams, so a
row of `hashed_ngram_counts` sums to 2L-1 (0 for an empty document).

Public API: `ngram_bucket_ids`, `hashed_ngram_counts`, `dsir_log_weights` (`dispatch.use_triton` picks
Triton, for CUDA tensors, or vectorised torch, which is also the fast CPU path).
"""
from __future__ import annotations

import torch

from .dispatch import tl, triton, use_triton  # triton is None without Triton: the reference runs

MASK32 = 0xFFFFFFFF
MIX = 0x045D9F3B
BIGRAM_MUL = 0x01000193
BIGRAM_SALT = 0x1B873593


# ----------------------------------------------------------------------------------------------
# torch reference (vectorised; the CPU path)
# ----------------------------------------------------------------------------------------------


def _mix32(x: torch.Tensor) -> torch.Tensor:
    """The 32-bit integer finaliser on int64 values in [0, 2^32)."""
    x = ((x >> 16) ^ x) * MIX & MASK32
    x = ((x >> 16) ^ x) * MIX & MASK32
    return (x >> 16) ^ x


def ngram_bucket_ids(
    token_ids: torch.Tensor, lengths: torch.Tensor, num_buckets: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Bucket of every unigram and bigram, and which of them lie inside the document.

    token_ids: [B, T] integer ids
    lengths:   [B] number of real tokens per row (clamped to [0, T])
    returns:   buckets [B, 2T-1] int64 (columns 0..T-1: unigram at t; T..2T-2: bigram (t, t+1)),
               valid   [B, 2T-1] bool
    """
    B, T = token_ids.shape
    if T == 0:
        empty = token_ids.new_zeros((B, 0), dtype=torch.int64)
        return empty, empty.bool()
    ids = token_ids.to(torch.int64) & MASK32  # [B, T]
    mixed = _mix32(ids)  # [B, T]
    uni = mixed % num_buckets  # [B, T]
    bi = _mix32(((mixed[:, :-1] * BIGRAM_MUL) & MASK32) ^ ids[:, 1:] ^ BIGRAM_SALT) % num_buckets  # [B, T-1]
    n = lengths.to(device=token_ids.device, dtype=torch.int64).clamp(0, T)[:, None]  # [B, 1]
    pos = torch.arange(T, device=token_ids.device)  # [T]
    valid = torch.cat([pos[None, :] < n, pos[None, 1:] < n], dim=1)  # [B, 2T-1]: bigram (t, t+1) needs t+1 < L
    return torch.cat([uni, bi], dim=1), valid


def hashed_ngram_counts_reference(token_ids: torch.Tensor, lengths: torch.Tensor, num_buckets: int) -> torch.Tensor:
    """Count vector per document with one scatter-add. [B, T], [B] -> [B, num_buckets] float32."""
    B = token_ids.shape[0]
    buckets, valid = ngram_bucket_ids(token_ids, lengths, num_buckets)  # [B, 2T-1] x2
    flat = buckets + torch.arange(B, device=buckets.device)[:, None] * num_buckets  # [B, 2T-1] row-offset ids
    counts = torch.zeros(B * num_buckets, dtype=torch.float32, device=token_ids.device)
    counts.scatter_add_(0, flat.reshape(-1), valid.reshape(-1).to(torch.float32))
    return counts.view(B, num_buckets)


def dsir_log_weights_reference(token_ids: torch.Tensor, lengths: torch.Tensor, log_ratio: torch.Tensor) -> torch.Tensor:
    """sum of log_ratio over every valid n-gram (= counts @ log_ratio). [B, T], [B], [NB] -> [B] float32."""
    buckets, valid = ngram_bucket_ids(token_ids, lengths, log_ratio.shape[0])  # [B, 2T-1] x2
    terms = log_ratio.to(torch.float64)[buckets]  # [B, 2T-1]; fp64 so long documents sum without drift
    return torch.where(valid, terms, 0.0).sum(dim=1).to(torch.float32)


# ----------------------------------------------------------------------------------------------
# Triton kernels
# ----------------------------------------------------------------------------------------------

if triton is not None:

    @triton.jit
    def _mix32_tl(x):
        # int64 in, int64 out; every intermediate stays below 2^59
        x = ((x >> 16) ^ x) * 0x045D9F3B & 0xFFFFFFFF
        x = ((x >> 16) ^ x) * 0x045D9F3B & 0xFFFFFFFF
        return (x >> 16) ^ x

    @triton.jit
    def _ngram_buckets_tl(ids_ptr, row, offs, n, stride_t, NUM_BUCKETS):
        """Unigram bucket at offs and bigram bucket (offs, offs+1), with their validity."""
        uni_ok = offs < n
        bi_ok = (offs + 1) < n
        a = tl.load(ids_ptr + row + offs * stride_t, mask=uni_ok, other=0).to(tl.int64) & 0xFFFFFFFF
        b = tl.load(ids_ptr + row + (offs + 1) * stride_t, mask=bi_ok, other=0).to(tl.int64) & 0xFFFFFFFF
        ma = _mix32_tl(a)
        uni = ma % NUM_BUCKETS
        bi = _mix32_tl(((ma * 0x01000193) & 0xFFFFFFFF) ^ b ^ 0x1B873593) % NUM_BUCKETS
        return uni, uni_ok, bi, bi_ok

    @triton.jit
    def _ngram_counts_kernel(ids_ptr, len_ptr, out_ptr, T, stride_b, stride_t, NUM_BUCKETS, BLOCK_T: tl.constexpr):
        # grid (B, cdiv(T, BLOCK_T)); counts are small integers in fp32, so atomic order cannot change them
        b = tl.program_id(0).to(tl.int64)
        offs = tl.program_id(1) * BLOCK_T + tl.arange(0, BLOCK_T)
        n = tl.minimum(tl.maximum(tl.load(len_ptr + b).to(tl.int64), 0), T).to(tl.int32)
        uni, uni_ok, bi, bi_ok = _ngram_buckets_tl(ids_ptr, b * stride_b, offs, n, stride_t, NUM_BUCKETS)
        out_row = out_ptr + b * NUM_BUCKETS
        tl.atomic_add(out_row + uni, 1.0, mask=uni_ok)
        tl.atomic_add(out_row + bi, 1.0, mask=bi_ok)

    @triton.jit
    def _dsir_kernel(ids_ptr, len_ptr, ratio_ptr, out_ptr, T, stride_b, stride_t, NUM_BUCKETS, BLOCK_T: tl.constexpr):
        # grid (B,): one document per program, loop over its tokens; log_ratio is gathered (L2-resident)
        b = tl.program_id(0).to(tl.int64)
        n = tl.minimum(tl.maximum(tl.load(len_ptr + b).to(tl.int64), 0), T).to(tl.int32)
        acc = tl.zeros([BLOCK_T], dtype=tl.float32)
        for t0 in range(0, n, BLOCK_T):
            offs = t0 + tl.arange(0, BLOCK_T)
            uni, uni_ok, bi, bi_ok = _ngram_buckets_tl(ids_ptr, b * stride_b, offs, n, stride_t, NUM_BUCKETS)
            acc += tl.load(ratio_ptr + uni, mask=uni_ok, other=0.0).to(tl.float32)
            acc += tl.load(ratio_ptr + bi, mask=bi_ok, other=0.0).to(tl.float32)
        tl.store(out_ptr + b, tl.sum(acc, axis=0))


def _block_t(T: int) -> int:
    return max(16, min(1024, triton.next_power_of_2(max(T, 1))))


def hashed_ngram_counts_triton(token_ids: torch.Tensor, lengths: torch.Tensor, num_buckets: int) -> torch.Tensor:
    """Triton launcher. [B, T] (any strides), [B] contiguous -> [B, num_buckets] float32."""
    B, T = token_ids.shape
    out = torch.zeros((B, num_buckets), dtype=torch.float32, device=token_ids.device)  # [B, NB], atomics add into it
    if B == 0 or T == 0:
        return out
    block = _block_t(T)
    grid = (B, triton.cdiv(T, block))
    _ngram_counts_kernel[grid](token_ids, lengths, out, T, token_ids.stride(0), token_ids.stride(1), num_buckets, BLOCK_T=block)
    return out


def dsir_log_weights_triton(token_ids: torch.Tensor, lengths: torch.Tensor, log_ratio: torch.Tensor) -> torch.Tensor:
    """Triton launcher. [B, T] (any strides), [B] contiguous, [NB] -> [B] float32, no count matrix."""
    B, T = token_ids.shape
    out = torch.empty(B, dtype=torch.float32, device=token_ids.device)  # [B]
    if B == 0:
        return out
    if T == 0:
        return out.zero_()
    ratio = log_ratio.contiguous()
    _dsir_kernel[(B,)](
        token_ids, lengths, ratio, out, T, token_ids.stride(0), token_ids.stride(1), ratio.shape[0],
        BLOCK_T=_block_t(T),
    )
    return out


# ----------------------------------------------------------------------------------------------
# dispatch
# ----------------------------------------------------------------------------------------------


def _check(token_ids: torch.Tensor, lengths: torch.Tensor) -> None:
    if token_ids.dim() != 2:
        raise ValueError(f"token_ids must be [B, T], got shape {tuple(token_ids.shape)}")
    if lengths.shape != (token_ids.shape[0],):
        raise ValueError(f"lengths must be [B]={token_ids.shape[0]}, got shape {tuple(lengths.shape)}")


def hashed_ngram_counts(token_ids: torch.Tensor, lengths: torch.Tensor, num_buckets: int) -> torch.Tensor:
    """Hashed unigram + bigram counts of the first lengths[b] tokens. [B, T], [B] -> [B, num_buckets] float32."""
    _check(token_ids, lengths)
    if use_triton(token_ids):
        return hashed_ngram_counts_triton(token_ids, lengths.to(token_ids.device).contiguous(), num_buckets)
    return hashed_ngram_counts_reference(token_ids, lengths, num_buckets)


def dsir_log_weights(token_ids: torch.Tensor, lengths: torch.Tensor, log_ratio: torch.Tensor) -> torch.Tensor:
    """DSIR log importance weight per document: sum of log_ratio[bucket] over its n-grams. -> [B] float32."""
    _check(token_ids, lengths)
    if log_ratio.dim() != 1:
        raise ValueError(f"log_ratio must be [num_buckets], got shape {tuple(log_ratio.shape)}")
    if use_triton(token_ids):
        return dsir_log_weights_triton(token_ids, lengths.to(token_ids.device).contiguous(), log_ratio.to(token_ids.device))
    return dsir_log_weights_reference(token_ids, lengths, log_ratio.to(token_ids.device))
