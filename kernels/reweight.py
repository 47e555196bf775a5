"""Sample-level loss reweighting weights (Sow et al., ICLR 2025; METHODS.md section 4).

For per-sample losses l_1..l_N of one (global) batch:

    h_i = delta * ((l_i - l_min) - (l_max - l_i)) / max(l_max - l_min, 1e-6)   # l_min -> -delta, l_max -> +delta
    f_i = linupper:  min(h + delta, delta)       (trainer.py `linupper`)
          quadratic: 1 - h^2 / delta^2           (README `quadratic`, trainer.py `mid`; both names accepted)
          extremes:  |h|
          upper:     0.5 h + 0.5 delta           (trainer.py only)
    w   = softmax((f - max f) / r)

h is the section 4.2 formula 2 delta l/(max-min) - delta (max+min)/(max-min), regrouped so the extremes
map to exactly -delta and +delta. If l_max - l_min < eps the weights are exactly 1/N. The strategy
`uniform` here is *true* uniform (every weight exactly 1/N): the README's `uniform` returns h unchanged
and, through the softmax, up-weights high losses, which METHODS.md section 4.5 flags as a misnomer.

`reweight` returns the weights and the reweighted loss sum_i w_i l_i, which equals the plain mean for
uniform weights. With `lengths` (valid tokens per sample) it returns trainer.py's variant
N * sum_i w_i lambda_i l_i with lambda_i = n_i / sum_j n_j, which for uniform weights is the
token-weighted mean sum_i lambda_i l_i. Weights carry no gradient; the loss is differentiable in `losses`.
"""
from __future__ import annotations

import torch

from .dispatch import tl, triton, use_triton  # triton is None without Triton: the reference runs

STRATEGIES = ("linupper", "quadratic", "extremes", "upper", "uniform")
_ALIASES = {"mid": "quadratic"}
_STRATEGY_IDS = {"linupper": 0, "quadratic": 1, "extremes": 2, "upper": 3}
DENOM_MIN = 1.0e-6  # clamp of l_max - l_min (trainer.py)
TRITON_MAX_N = 65536  # one program handles the batch; beyond this the torch reference runs


def canonical_strategy(strategy: str) -> str:
    name = _ALIASES.get(strategy, strategy)
    if name not in STRATEGIES:
        raise ValueError(f"unknown reweighting strategy {strategy!r}; expected one of {STRATEGIES + tuple(_ALIASES)}")
    return name


def _check(losses: torch.Tensor, r: float, delta: float) -> None:
    if losses.dim() != 1:
        raise ValueError(f"losses must be [N], got shape {tuple(losses.shape)}")
    if not r > 0:
        raise ValueError(f"temperature r must be > 0, got {r}")
    if not delta > 0:
        raise ValueError(f"delta must be > 0, got {delta}")


def _uniform(n: int, device: torch.device) -> torch.Tensor:
    return torch.full((n,), 1.0 / n, dtype=torch.float32, device=device)  # [N], exactly 1/N in fp32


# ----------------------------------------------------------------------------------------------
# torch reference (fp64)
# ----------------------------------------------------------------------------------------------


def normalize_losses(losses: torch.Tensor, delta: float = 1.0) -> torch.Tensor:
    """Min-max map to [-delta, delta] in fp64 (l_min -> -delta, l_max -> +delta exactly). [N] -> [N]"""
    x = losses.detach().to(torch.float64)  # [N]
    lo, hi = x.min(), x.max()
    return delta * ((x - lo) - (hi - x)) / torch.clamp(hi - lo, min=DENOM_MIN)


def strategy_values(h: torch.Tensor, strategy: str, delta: float = 1.0) -> torch.Tensor:
    """f(h) for the normalised losses h in [-delta, delta]. [N] -> [N]"""
    name = canonical_strategy(strategy)
    if name == "linupper":
        return torch.clamp(h + delta, max=delta)
    if name == "quadratic":
        return 1.0 - h * h / (delta * delta)
    if name == "extremes":
        return h.abs()
    if name == "upper":
        return 0.5 * h + 0.5 * delta
    raise ValueError("uniform has no strategy values")


def reweight_weights_reference(
    losses: torch.Tensor, strategy: str, r: float, delta: float = 1.0, eps: float = 1.0e-6
) -> torch.Tensor:
    """Weights in fp64, returned as float32. losses [N] -> weights [N] summing to 1."""
    _check(losses, r, delta)
    n = losses.shape[0]
    if n == 0:
        return torch.empty(0, dtype=torch.float32, device=losses.device)
    x = losses.detach().to(torch.float64)  # [N]
    lo, hi = x.min(), x.max()
    if canonical_strategy(strategy) == "uniform" or (hi - lo).item() < eps:
        return _uniform(n, losses.device)
    h = normalize_losses(x, delta)  # [N] in [-delta, delta]
    f = strategy_values(h, strategy, delta)  # [N]
    return torch.softmax((f - f.max()) / r, dim=0).to(torch.float32)


# ----------------------------------------------------------------------------------------------
# Triton kernel: one program, four passes over the losses (N <= TRITON_MAX_N)
# ----------------------------------------------------------------------------------------------

if triton is not None:

    @triton.jit
    def _strategy_f(h, delta, STRATEGY: tl.constexpr):
        if STRATEGY == 0:
            f = tl.minimum(h + delta, delta)
        elif STRATEGY == 1:
            f = 1.0 - h * h / (delta * delta)
        elif STRATEGY == 2:
            f = tl.abs(h)
        else:
            f = 0.5 * h + 0.5 * delta
        return f

    @triton.jit
    def _reweight_kernel(
        loss_ptr, w_ptr, N, stride, delta, inv_r, inv_n, eps, denom_min,
        STRATEGY: tl.constexpr, BLOCK: tl.constexpr,
    ):
        # grid (1,): min/max -> max f -> softmax denominator -> weights; f is recomputed per pass
        # because N is small next to the launch cost, and it avoids a scratch buffer
        lo = float("inf")
        hi = -float("inf")
        for i0 in range(0, N, BLOCK):
            offs = i0 + tl.arange(0, BLOCK)
            x = tl.load(loss_ptr + offs * stride, mask=offs < N, other=0.0).to(tl.float32)
            lo = tl.minimum(lo, tl.min(tl.where(offs < N, x, float("inf")), axis=0))
            hi = tl.maximum(hi, tl.max(tl.where(offs < N, x, -float("inf")), axis=0))
        span = hi - lo
        denom = tl.maximum(span, denom_min)

        f_max = -float("inf")
        for i0 in range(0, N, BLOCK):
            offs = i0 + tl.arange(0, BLOCK)
            x = tl.load(loss_ptr + offs * stride, mask=offs < N, other=0.0).to(tl.float32)
            f = _strategy_f(delta * ((x - lo) - (hi - x)) / denom, delta, STRATEGY)
            f_max = tl.maximum(f_max, tl.max(tl.where(offs < N, f, -float("inf")), axis=0))

        total = 0.0
        for i0 in range(0, N, BLOCK):
            offs = i0 + tl.arange(0, BLOCK)
            x = tl.load(loss_ptr + offs * stride, mask=offs < N, other=0.0).to(tl.float32)
            f = _strategy_f(delta * ((x - lo) - (hi - x)) / denom, delta, STRATEGY)
            total += tl.sum(tl.where(offs < N, tl.exp((f - f_max) * inv_r), 0.0), axis=0)

        for i0 in range(0, N, BLOCK):
            offs = i0 + tl.arange(0, BLOCK)
            x = tl.load(loss_ptr + offs * stride, mask=offs < N, other=0.0).to(tl.float32)
            f = _strategy_f(delta * ((x - lo) - (hi - x)) / denom, delta, STRATEGY)
            w = tl.exp((f - f_max) * inv_r) / total
            w = tl.where(span < eps, inv_n, w)  # near-equal losses: exactly uniform
            tl.store(w_ptr + offs, w, mask=offs < N)


def reweight_weights_triton(
    losses: torch.Tensor, strategy: str, r: float, delta: float = 1.0, eps: float = 1.0e-6
) -> torch.Tensor:
    """Triton launcher (CUDA tensors, or CPU tensors under TRITON_INTERPRET=1). losses [N] -> [N] float32."""
    _check(losses, r, delta)
    n = losses.shape[0]
    name = canonical_strategy(strategy)
    if n == 0:
        return torch.empty(0, dtype=torch.float32, device=losses.device)
    if name == "uniform":
        return _uniform(n, losses.device)
    x = losses.detach()
    w = torch.empty(n, dtype=torch.float32, device=losses.device)  # [N]
    block = min(1024, triton.next_power_of_2(n))
    # inv_n travels as an fp32 argument rounded from the double 1/N, the same value torch.full gives
    _reweight_kernel[(1,)](
        x, w, n, x.stride(0), float(delta), 1.0 / float(r), 1.0 / n, float(eps), DENOM_MIN,
        STRATEGY=_STRATEGY_IDS[name], BLOCK=block,
    )
    return w


# ----------------------------------------------------------------------------------------------
# dispatch
# ----------------------------------------------------------------------------------------------


def reweight_weights(
    losses: torch.Tensor, strategy: str, r: float, delta: float = 1.0, eps: float = 1.0e-6
) -> torch.Tensor:
    """Weights only (no gradient). losses [N] -> [N] float32 summing to 1."""
    if use_triton(losses, supported=losses.dim() == 1 and losses.shape[0] <= TRITON_MAX_N):
        return reweight_weights_triton(losses, strategy, r, delta, eps)
    return reweight_weights_reference(losses, strategy, r, delta, eps)


def reweight(
    losses: torch.Tensor,
    strategy: str,
    r: float,
    delta: float = 1.0,
    lengths: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Weights and reweighted loss for one batch of per-sample losses.

    losses [N] (may require grad), lengths [N] valid tokens per sample or None
    -> weights [N] float32 (detached), loss: sum_i w_i l_i, or N * sum_i w_i lambda_i l_i with lengths
    """
    weights = reweight_weights(losses, strategy, r, delta)  # [N]
    w = weights.to(losses.dtype)
    if lengths is None:
        return weights, (w * losses).sum()
    lam = lengths.to(losses.dtype) / lengths.sum().to(losses.dtype)  # [N] token share of each sample
    return weights, losses.shape[0] * (w * lam * losses).sum()
