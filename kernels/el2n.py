"""Per-token EL2N and cross-entropy in one online pass over the vocabulary (METHODS.md section 3.3).

EL2N_t = ||softmax(z_t) - onehot(y_t)||_2 and CE_t = logsumexp(z_t) - z_t[y_t]. The kernel streams the
logits row once, keeping a running max m and the sums s1 = sum e^(z-m), s2 = sum e^(2(z-m)) over the
vocabulary *except the label*, and loads z_y on its own. With d = m + log(s1) - z_y:

    CE              = softplus(d)                  (= -log p_y)
    1 - p_y         = sigmoid(d)
    sum_{j!=y} p_j^2 = s2 * e^(2 (m - logsumexp(z)))
    EL2N^2          = (1 - p_y)^2 + sum_{j!=y} p_j^2  (= sum p^2 - 2 p_y + 1, each term >= 0)

This is the identity of METHODS.md without the cancellations of sum p^2 - 2 p_y + 1 and of
logsumexp(z) - z_y in fp32 for confident predictions (both keep relative accuracy as p_y -> 1).

Positions whose label is `ignore_index` get 0 and are not counted; labels are aligned with the logits
positions already (the caller shifts). A label outside [0, V) that
is not ignore_index gives NaN on the Triton path (no device sync to check it) and an error on the
torch path.

`lm_head_el2n_and_loss` goes from final hidden states to per-sample means without the [B, T, V] logits:
it gathers the counted tokens, and per chunk of tokens runs the LM-head matmul (cuBLAS / torch) and
the reduction (Triton on CUDA, the fp32 torch reduction on CPU), so only [chunk, V] logits exist.
"""
from __future__ import annotations

from typing import Callable

import torch

from .dispatch import tl, triton, use_triton  # triton is None without Triton: the reference runs

TokenStatsFn = Callable[[torch.Tensor, torch.Tensor, int], "tuple[torch.Tensor, torch.Tensor]"]


# ----------------------------------------------------------------------------------------------
# torch references
# ----------------------------------------------------------------------------------------------


def token_el2n_and_ce_reference(
    logits: torch.Tensor, labels: torch.Tensor, ignore_index: int = -100, dtype: torch.dtype = torch.float64
) -> tuple[torch.Tensor, torch.Tensor]:
    """The naive definition: softmax minus one-hot, its norm, and -log p_y, all in `dtype`.

    logits [..., V], labels [...] -> el2n [...] float32, ce [...] float32 (0 where labels == ignore_index)
    Builds several [..., V] tensors: use it for tests and as the naive baseline, not at scale.
    """
    z = logits.to(dtype)  # [..., V]
    valid = labels != ignore_index  # [...]
    y = torch.where(valid, labels, 0).long()  # [...]
    p = torch.softmax(z, dim=-1)  # [..., V]
    onehot = torch.nn.functional.one_hot(y, z.shape[-1]).to(dtype)  # [..., V]
    el2n = torch.linalg.vector_norm(p - onehot, dim=-1)  # [...]
    ce = torch.logsumexp(z, dim=-1) - z.gather(-1, y.unsqueeze(-1)).squeeze(-1)  # [...]
    return torch.where(valid, el2n, 0).float(), torch.where(valid, ce, 0).float()


def _rows_el2n_ce_torch(z: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """fp32 on a [C, V] chunk whose labels y [C] are all valid. Uses the fused softmax / log_softmax
    kernels (logsumexp and exp are several times slower per element on CPU); the label's probability
    is zeroed before any sum, so 1 - p_y and sum_{j!=y} p_j^2 are sums of non-negative terms, accurate
    as p_y -> 1."""
    z = z.float()  # [C, V]
    logp_y = torch.log_softmax(z, dim=1).gather(1, y[:, None]).squeeze(1)  # [C]
    p_rest = torch.softmax(z, dim=1).scatter_(1, y[:, None], 0.0)  # [C, V] p without the label's term
    one_minus_py = p_rest.sum(dim=1)  # [C]
    sumsq_rest = torch.linalg.vector_norm(p_rest, dim=1).square()  # [C]
    # -log p_y = log1p((1 - p_y) / p_y) keeps relative accuracy for confident tokens; -logp_y is exact enough otherwise
    ce = torch.where(one_minus_py < 0.5, torch.log1p(one_minus_py / (1.0 - one_minus_py).clamp_min(0.5)), -logp_y)
    return torch.sqrt(one_minus_py * one_minus_py + sumsq_rest), ce


def token_el2n_and_ce_torch(
    logits: torch.Tensor, labels: torch.Tensor, ignore_index: int = -100, chunk_elems: int = 1 << 21
) -> tuple[torch.Tensor, torch.Tensor]:
    """The CPU path: fp32, chunked over tokens so temporaries stay around `chunk_elems` elements.

    logits [B, T, V] or [N, V] (any strides), labels [B, T] or [N] -> el2n, ce shaped like labels, float32
    """
    z3, y2 = (logits, labels) if logits.dim() == 3 else (logits.unsqueeze(0), labels.unsqueeze(0))
    B, T, V = z3.shape
    el2n = torch.zeros((B, T), dtype=torch.float32, device=logits.device)  # [B, T]
    ce = torch.zeros((B, T), dtype=torch.float32, device=logits.device)  # [B, T]
    step = max(1, chunk_elems // max(V, 1))
    for b in range(B):
        for t0 in range(0, T, step):
            y = y2[b, t0 : t0 + step]  # [C]
            keep = (y != ignore_index).nonzero().squeeze(1)  # [C'] counted positions of this chunk
            if keep.numel() == 0:
                continue
            z = z3[b, t0 : t0 + step]  # [C, V] view
            if keep.numel() < y.numel():  # compact only when something is masked: the copy costs a pass
                z, y = z.index_select(0, keep), y.index_select(0, keep)
            e, c = _rows_el2n_ce_torch(z, y.long())
            el2n[b, t0 + keep] = e
            ce[b, t0 + keep] = c
    return el2n.view(labels.shape), ce.view(labels.shape)


def _sequence_means(
    el2n: torch.Tensor, ce: torch.Tensor, labels: torch.Tensor, ignore_index: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """[B, T] per-token values (0 where not counted) -> means over counted tokens [B], and counts [B]."""
    n_tokens = (labels != ignore_index).sum(dim=1)  # [B] int64
    denom = n_tokens.clamp_min(1).to(torch.float32)  # [B]; 0 counted tokens -> mean 0
    return el2n.sum(dim=1) / denom, ce.sum(dim=1) / denom, n_tokens


# ----------------------------------------------------------------------------------------------
# Triton kernel
# ----------------------------------------------------------------------------------------------

if triton is not None:

    @triton.jit
    def _log1p(x):
        # no libdevice under the interpreter; Goldberg's correction makes log(1 + x) exact to rounding
        u = 1.0 + x
        return tl.where(u == 1.0, x, tl.log(u) * (x / tl.where(u == 1.0, 1.0, u - 1.0)))

    @triton.jit
    def _el2n_ce_kernel(
        z_ptr, y_ptr, el2n_ptr, ce_ptr, T, V,
        s_zb, s_zt, s_zv, s_yb, s_yt, ignore_index,
        BLOCK_V: tl.constexpr,
    ):
        # grid (B*T,): one token per program, one pass over its V logits
        r = tl.program_id(0).to(tl.int64)
        b = r // T
        t = r % T
        y = tl.load(y_ptr + b * s_yb + t * s_yt).to(tl.int64)
        counted = y != ignore_index
        in_range = (y >= 0) & (y < V)
        z_row = z_ptr + b * s_zb + t * s_zt
        z_y = tl.load(z_row + y * s_zv, mask=in_range, other=0.0).to(tl.float32)

        m = -float("inf")  # running max over j != y
        s1 = 0.0  # sum_{j!=y} e^(z_j - m)
        s2 = 0.0  # sum_{j!=y} e^(2 (z_j - m))
        v_end = tl.where(counted & in_range, V, 0)  # ignored tokens skip the vocabulary loop
        for v0 in range(0, v_end, BLOCK_V):
            offs = v0 + tl.arange(0, BLOCK_V)
            z = tl.load(z_row + offs * s_zv, mask=offs < V, other=-float("inf")).to(tl.float32)
            z = tl.where(offs == y, -float("inf"), z)
            m_new = tl.maximum(m, tl.max(z, axis=0))
            m_ref = tl.where(m_new == -float("inf"), 0.0, m_new)  # all -inf so far: avoid -inf - -inf
            alpha = tl.exp(m - m_ref)
            e = tl.exp(z - m_ref)
            s1 = s1 * alpha + tl.sum(e, axis=0)
            s2 = s2 * alpha * alpha + tl.sum(e * e, axis=0)
            m = m_new

        # d = log sum_{j!=y} e^z_j - z_y; then -log p_y = softplus(d) and 1 - p_y = sigmoid(d), both
        # without subtracting nearly equal numbers when the prediction is confident
        d = m + tl.log(tl.maximum(s1, 1.0e-30)) - z_y  # s1 >= 1 whenever m is finite
        e_neg = tl.exp(-tl.abs(d))  # in (0, 1]: no overflow for either sign of d
        ce = tl.maximum(d, 0.0) + _log1p(e_neg)
        one_minus_py = tl.where(d >= 0, 1.0 / (1.0 + e_neg), e_neg / (1.0 + e_neg))
        sumsq_rest = s2 * tl.exp(2.0 * (m - (z_y + ce)))  # sum_{j!=y} p_j^2; m <= logsumexp, so no overflow
        el2n = tl.sqrt(one_minus_py * one_minus_py + sumsq_rest)
        el2n = tl.where(in_range, el2n, float("nan"))
        ce = tl.where(in_range, ce, float("nan"))
        tl.store(el2n_ptr + r, tl.where(counted, el2n, 0.0))
        tl.store(ce_ptr + r, tl.where(counted, ce, 0.0))


def token_el2n_and_ce_triton(
    logits: torch.Tensor, labels: torch.Tensor, ignore_index: int = -100, block_v: int | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Triton launcher (CUDA tensors, or CPU tensors under TRITON_INTERPRET=1).

    logits [B, T, V] or [N, V] (any strides, bf16/fp16/fp32), labels [B, T] or [N]
    -> el2n, ce shaped like labels, float32. block_v overrides the vocabulary tile (tests use it to
    exercise several tiles at small V).
    """
    z3, y2 = (logits, labels) if logits.dim() == 3 else (logits.unsqueeze(0), labels.unsqueeze(0))
    B, T, V = z3.shape
    el2n = torch.empty((B, T), dtype=torch.float32, device=logits.device)  # [B, T]
    ce = torch.empty((B, T), dtype=torch.float32, device=logits.device)  # [B, T]
    if B * T > 0:
        block = block_v or min(4096, triton.next_power_of_2(max(V, 1)))
        _el2n_ce_kernel[(B * T,)](
            z3, y2, el2n, ce, T, V,
            z3.stride(0), z3.stride(1), z3.stride(2), y2.stride(0), y2.stride(1), ignore_index,
            BLOCK_V=block, num_warps=8 if block >= 2048 else 4,
        )
    return el2n.view(labels.shape), ce.view(labels.shape)


# ----------------------------------------------------------------------------------------------
# dispatch
# ----------------------------------------------------------------------------------------------


def _token_stats_for(t: torch.Tensor) -> TokenStatsFn:
    return token_el2n_and_ce_triton if use_triton(t) else token_el2n_and_ce_torch


def token_el2n_and_ce(
    logits: torch.Tensor, labels: torch.Tensor, ignore_index: int = -100
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-token EL2N and cross-entropy. logits [B, T, V] or [N, V], labels [B, T] or [N] -> (el2n, ce)
    float32 shaped like labels, 0 at ignored positions."""
    if logits.dim() not in (2, 3) or labels.shape != logits.shape[:-1]:
        raise ValueError(f"expected logits [B, T, V] and labels [B, T], got {tuple(logits.shape)} and {tuple(labels.shape)}")
    return _token_stats_for(logits)(logits, labels.to(logits.device), ignore_index)


def sequence_el2n_and_loss(
    logits: torch.Tensor, labels: torch.Tensor, ignore_index: int = -100
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-sample mean EL2N and mean CE over counted tokens. logits [B, T, V], labels [B, T]
    -> el2n_mean [B] float32, loss_mean [B] float32, n_tokens [B] int64 (means are 0 when n_tokens is 0)."""
    if logits.dim() != 3:
        raise ValueError(f"expected logits [B, T, V], got {tuple(logits.shape)}")
    labels = labels.to(logits.device)
    el2n, ce = token_el2n_and_ce(logits, labels, ignore_index)  # [B, T] x2
    return _sequence_means(el2n, ce, labels, ignore_index)


def _auto_chunk_tokens(V: int, device: torch.device) -> int:
    # ~2^27 logits on CUDA (256 MB in bf16) and ~2^24 on CPU (64 MB fp32) keep the GEMM efficient
    # (hundreds of rows at least); the CPU reduction then walks the chunk in cache-sized slices
    budget = 1 << 27 if device.type == "cuda" else 1 << 24
    return max(1, budget // max(V, 1))


@torch.no_grad()
def lm_head_el2n_and_loss_with(
    token_stats: TokenStatsFn,
    hidden: torch.Tensor,
    weight: torch.Tensor,
    labels: torch.Tensor,
    bias: torch.Tensor | None = None,
    ignore_index: int = -100,
    chunk_tokens: int | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """`lm_head_el2n_and_loss` with an explicit per-chunk reduction (tests pass the Triton launcher)."""
    B, T, H = hidden.shape
    flat_h = hidden.reshape(B * T, H)  # [B*T, H] (a view for a model's contiguous output)
    flat_y = labels.to(hidden.device).reshape(B * T)  # [B*T]
    rows = (flat_y != ignore_index).nonzero().squeeze(1)  # [N] counted tokens only: no logits for the rest
    el2n = torch.zeros(B * T, dtype=torch.float32, device=hidden.device)  # [B*T]
    ce = torch.zeros(B * T, dtype=torch.float32, device=hidden.device)  # [B*T]
    chunk = chunk_tokens or _auto_chunk_tokens(weight.shape[0], hidden.device)
    for start in range(0, rows.numel(), chunk):
        idx = rows[start : start + chunk]  # [C]
        logits = torch.nn.functional.linear(flat_h.index_select(0, idx), weight, bias)  # [C, V], the only V-sized tensor
        e, c = token_stats(logits, flat_y.index_select(0, idx), ignore_index)  # [C] x2
        el2n[idx] = e
        ce[idx] = c
        del logits  # free before the next chunk's GEMM allocates
    return _sequence_means(el2n.view(B, T), ce.view(B, T), flat_y.view(B, T), ignore_index)


def lm_head_el2n_and_loss(
    hidden: torch.Tensor,
    weight: torch.Tensor,
    labels: torch.Tensor,
    bias: torch.Tensor | None = None,
    ignore_index: int = -100,
    chunk_tokens: int | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-sample mean EL2N and CE straight from final hidden states, never building [B, T, V] logits.

    hidden [B, T, H], weight [V, H] (the LM head), bias [V] or None, labels [B, T] aligned with hidden
    positions (already shifted) -> el2n_mean [B] float32, loss_mean [B] float32, n_tokens [B] int64.
    Runs without autograd (scoring only). chunk_tokens: tokens per LM-head GEMM (auto by default).
    """
    if hidden.dim() != 3 or labels.shape != hidden.shape[:2] or weight.dim() != 2 or weight.shape[1] != hidden.shape[2]:
        raise ValueError(
            f"expected hidden [B, T, H], weight [V, H], labels [B, T]; got {tuple(hidden.shape)}, "
            f"{tuple(weight.shape)}, {tuple(labels.shape)}"
        )
    return lm_head_el2n_and_loss_with(
        _token_stats_for(hidden), hidden, weight, labels, bias, ignore_index, chunk_tokens
    )
