"""Pooling of a model's last hidden state into one vector per sample.

Modes (METHODS.md section 1.3):
  mean           masked mean over real tokens
  weighted_mean  RDS+ position-weighted mean: weight i / sum(1..L) for the i-th *real* token (1-based),
                 so padding (left or right) gets weight 0 instead of the largest weights
  last           the last real token's state
  cls            the first token's state (BERT-style encoders that declare it)

`pool` is the one entry point; `dispatch.use_triton` picks the Triton kernel (CUDA tensors) or the reference.
The kernel reads `last_hidden_state` in place (any strides, bf16/fp16/fp32), accumulates in fp32 and
derives every weight from the attention mask inside the kernel, so nothing [B, T, H]-sized is copied.
"""
from __future__ import annotations

import torch

from .dispatch import tl, triton, use_triton  # triton is None without Triton: the reference runs

POOLING_MODES = ("mean", "weighted_mean", "last", "cls")


def pooling_weights(attention_mask: torch.Tensor, mode: str) -> torch.Tensor:
    """Per-token pooling weights, fp32, each row summing to 1 over real tokens.

    attention_mask: [B, T] (1 = real token, 0 = padding; left or right padding)
    returns:        [B, T] float32
    """
    mask = attention_mask.to(torch.float32)  # [B, T]
    if mode == "mean":
        weights = mask
    elif mode == "weighted_mean":
        weights = torch.cumsum(mask, dim=1) * mask  # [B, T] 1..L over real tokens, 0 on padding
    elif mode == "last":
        # the last real token is where the running count reaches the row's length
        position = torch.cumsum(mask, dim=1) * mask  # [B, T]
        weights = (position == mask.sum(dim=1, keepdim=True)).to(torch.float32) * mask
    elif mode == "cls":
        first = torch.cumsum(mask, dim=1) * mask  # [B, T]
        weights = (first == 1).to(torch.float32)
    else:
        raise ValueError(f"unknown pooling mode {mode!r}; expected one of {POOLING_MODES}")
    return weights / weights.sum(dim=1, keepdim=True).clamp_min(1.0e-12)


def pool_reference(
    hidden: torch.Tensor, attention_mask: torch.Tensor, mode: str, normalize: bool = False
) -> torch.Tensor:
    """Plain-torch pooling with fp32 accumulation.

    hidden:         [B, T, H] any float dtype, any strides
    attention_mask: [B, T]
    returns:        [B, H] float32
    """
    weights = pooling_weights(attention_mask, mode)  # [B, T]
    pooled = torch.einsum("bt,bth->bh", weights, hidden.to(torch.float32))  # [B, H]
    if normalize:
        pooled = torch.nn.functional.normalize(pooled, dim=-1)
    return pooled


if triton is not None:

    @triton.jit
    def _pool_partial_kernel(
        h_ptr, m_ptr, out_ptr, T, H, t_per_split,
        s_hb, s_ht, s_hh, s_mb, s_mt, s_ob, s_os,
        MODE: tl.constexpr, BLOCK_T: tl.constexpr, BLOCK_H: tl.constexpr, BLOCK_M: tl.constexpr,
    ):
        # grid (B, cdiv(H, BLOCK_H), splits): program (b, hb, sp) pools tokens [sp*t_per_split, +t_per_split)
        # of row b for columns hb*BLOCK_H.. and writes out[b, sp, cols], already divided by the row's weight sum
        b = tl.program_id(0).to(tl.int64)
        sp = tl.program_id(2)
        offs_h = tl.program_id(1) * BLOCK_H + tl.arange(0, BLOCK_H)
        h_ok = offs_h < H
        t_start = sp * t_per_split
        t_end = tl.minimum(T, t_start + t_per_split)
        m_row = m_ptr + b * s_mb
        h_row = h_ptr + b * s_hb

        # Row statistics from the mask (1/H-th of the hidden bytes, re-read by each column block):
        # L real tokens, `before` real tokens ahead of this split, first and last real positions.
        n_real = 0.0
        before = 0.0
        first = T
        last = -1
        for t0 in range(0, T, BLOCK_M):
            offs_m = t0 + tl.arange(0, BLOCK_M)
            real = tl.load(m_row + offs_m * s_mt, mask=offs_m < T, other=0) != 0
            mf = real.to(tl.float32)
            n_real += tl.sum(mf, axis=0)
            before += tl.sum(tl.where(offs_m < t_start, mf, 0.0), axis=0)
            first = tl.minimum(first, tl.min(tl.where(real, offs_m, T), axis=0))
            last = tl.maximum(last, tl.max(tl.where(real, offs_m, -1), axis=0))

        if MODE >= 2:  # last / cls: a single row of hidden, zeros when the row has no real token
            idx = last if MODE == 2 else first
            idx = tl.where(n_real > 0, idx, 0).to(tl.int64)  # row 0 is a safe address when no token is real
            x = tl.load(h_row + idx * s_ht + offs_h * s_hh, mask=h_ok, other=0.0).to(tl.float32)
            x = tl.where(n_real > 0, x, 0.0)
            tl.store(out_ptr + b * s_ob + sp * s_os + offs_h, x, mask=h_ok)
        else:
            acc = tl.zeros([BLOCK_H], dtype=tl.float32)
            running = before  # real tokens before the current block: the 1-based RDS+ position is running + cumsum
            for t0 in range(t_start, t_end, BLOCK_T):
                offs_t = t0 + tl.arange(0, BLOCK_T)
                t_ok = offs_t < t_end
                mf = (tl.load(m_row + offs_t * s_mt, mask=t_ok, other=0) != 0).to(tl.float32)  # [BLOCK_T]
                if MODE == 1:
                    w = (running + tl.cumsum(mf, axis=0)) * mf
                    running += tl.sum(mf, axis=0)
                else:
                    w = mf
                x = tl.load(
                    h_row + offs_t[:, None] * s_ht + offs_h[None, :] * s_hh,
                    mask=t_ok[:, None] & h_ok[None, :], other=0.0,
                ).to(tl.float32)  # [BLOCK_T, BLOCK_H]
                acc += tl.sum(w[:, None] * x, axis=0)
            denom = n_real if MODE == 0 else n_real * (n_real + 1.0) * 0.5
            acc = acc / tl.maximum(denom, 1.0e-12)
            tl.store(out_ptr + b * s_ob + sp * s_os + offs_h, acc, mask=h_ok)

    @triton.jit
    def _pool_finish_kernel(part_ptr, out_ptr, H, n_split, NORMALIZE: tl.constexpr, BLOCK_H: tl.constexpr):
        # grid (B,): sum the splits of part[b, :, :] and optionally L2-normalise the row (F.normalize, eps 1e-12)
        b = tl.program_id(0).to(tl.int64)
        part_row = part_ptr + b * n_split * H
        scale = 1.0
        if NORMALIZE:
            sumsq = tl.zeros([BLOCK_H], dtype=tl.float32)
            for h0 in range(0, H, BLOCK_H):
                offs_h = h0 + tl.arange(0, BLOCK_H)
                v = tl.zeros([BLOCK_H], dtype=tl.float32)
                for sp in range(0, n_split):
                    v += tl.load(part_row + sp * H + offs_h, mask=offs_h < H, other=0.0)
                sumsq += v * v
            scale = 1.0 / tl.maximum(tl.sqrt(tl.sum(sumsq, axis=0)), 1.0e-12)
        # second pass recomputes the sum rather than re-reading `out`, so no store->load ordering is needed
        for h0 in range(0, H, BLOCK_H):
            offs_h = h0 + tl.arange(0, BLOCK_H)
            v = tl.zeros([BLOCK_H], dtype=tl.float32)
            for sp in range(0, n_split):
                v += tl.load(part_row + sp * H + offs_h, mask=offs_h < H, other=0.0)
            tl.store(out_ptr + b * H + offs_h, v * scale, mask=offs_h < H)


_MODE_IDS = {"mean": 0, "weighted_mean": 1, "last": 2, "cls": 3}


def _pool_blocks(B: int, T: int, H: int, mode: str) -> tuple[int, int, int, int]:
    """Fixed tiles (autotuning needs a device, which the interpreter lacks) and the number of token splits.

    A [16, 256] tile is 32 values per thread at 4 warps (~80 registers on sm_90, several CTAs per SM, 8 KB of
    bf16 loads in flight per CTA). Splitting T gives >= ~4096 programs so the last wave is a small
    share of the launch; each split still covers >= 8 tiles so the per-program mask scan stays cheap.
    """
    block_h = min(256, triton.next_power_of_2(H))
    block_t = max(1, min(triton.next_power_of_2(T), 4096 // block_h))
    block_m = min(1024, triton.next_power_of_2(T))
    n_h = triton.cdiv(H, block_h)
    splits = 1
    if _MODE_IDS[mode] < 2:
        splits = max(1, min(triton.cdiv(4096, B * n_h), triton.cdiv(T, 8 * block_t)))
    return block_t, block_h, block_m, splits


def pool_triton(
    hidden: torch.Tensor, attention_mask: torch.Tensor, mode: str, normalize: bool = False
) -> torch.Tensor:
    """Triton launcher (CUDA tensors, or CPU tensors under TRITON_INTERPRET=1).

    hidden [B, T, H] any float dtype and strides, attention_mask [B, T] -> [B, H] float32
    """
    B, T, H = hidden.shape
    out = torch.empty((B, H), dtype=torch.float32, device=hidden.device)  # [B, H]
    if B == 0 or H == 0:
        return out
    if T == 0:
        return out.zero_()
    mask = attention_mask.view(torch.uint8) if attention_mask.dtype == torch.bool else attention_mask  # [B, T]
    block_t, block_h, block_m, splits = _pool_blocks(B, T, H, mode)
    t_per_split = triton.cdiv(triton.cdiv(T, splits), block_t) * block_t
    splits = triton.cdiv(T, t_per_split)
    direct = splits == 1 and not normalize
    # [B, splits, H] partial sums; with one split and no normalisation the kernel writes `out` directly
    part = out.view(B, 1, H) if direct else torch.empty((B, splits, H), dtype=torch.float32, device=hidden.device)
    grid = (B, triton.cdiv(H, block_h), splits)
    _pool_partial_kernel[grid](
        hidden, mask, part, T, H, t_per_split,
        hidden.stride(0), hidden.stride(1), hidden.stride(2), mask.stride(0), mask.stride(1),
        part.stride(0), part.stride(1),
        MODE=_MODE_IDS[mode], BLOCK_T=block_t, BLOCK_H=block_h, BLOCK_M=block_m,
    )
    if not direct:
        _pool_finish_kernel[(B,)](part, out, H, splits, NORMALIZE=normalize, BLOCK_H=min(1024, triton.next_power_of_2(H)))
    return out


def pool(hidden: torch.Tensor, attention_mask: torch.Tensor, mode: str, normalize: bool = False) -> torch.Tensor:
    """The Triton kernel or the torch reference, as `dispatch.use_triton` decides for `hidden`.

    hidden [B, T, H], attention_mask [B, T] -> [B, H] float32 (scoring only: the Triton path has no autograd)
    """
    if mode not in POOLING_MODES:
        raise ValueError(f"unknown pooling mode {mode!r}; expected one of {POOLING_MODES}")
    if hidden.dim() != 3 or attention_mask.shape != hidden.shape[:2]:
        raise ValueError(
            f"expected hidden [B, T, H] and attention_mask [B, T], got {tuple(hidden.shape)} and {tuple(attention_mask.shape)}"
        )
    if use_triton(hidden):
        return pool_triton(hidden, attention_mask.to(hidden.device), mode, normalize)
    return pool_reference(hidden, attention_mask, mode, normalize)
