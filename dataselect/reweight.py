"""Online loss reweighting for a training loop (Sow et al., ICLR 2025; METHODS.md section 4).

    reweighter = LossReweighter(strategy="linupper", r=0.4, burn_in_steps=1000)
    loss = reweighter(per_sample_losses, step)          # per_sample_losses: [B] mean token CE per sequence
    loss.backward()

During burn-in the loss is exactly the plain mean (or, with `lengths`, the token-weighted mean). After
it, weights are computed without gradient from the detached losses of the *global* batch (all-gathered
when torch.distributed is initialised; every rank must pass the same batch size), and the gradient
flows through this rank's losses: W * sum_i w_i l_i (README variant), or with lengths trainer.py's
W * B * sum_i w_i lambda_i l_i, lambda_i = n_i / sum_local n_j. Both reduce to the burn-in loss when the
weights are uniform, and DDP's gradient averaging over W ranks then matches the single-process result.
"""
from __future__ import annotations

import torch
import torch.distributed as dist

from dataselect.kernels.reweight import canonical_strategy, reweight_weights


class LossReweighter:
    """Per-sample loss weights for a training loop (METHODS.md 4, docs/reweighting.md): after `burn_in_steps`, a batch's losses weighted by the strategy."""
    def __init__(self, strategy: str = "linupper", r: float = 0.4, burn_in_steps: int = 1000, delta: float = 1.0):
        self.strategy = canonical_strategy(strategy)
        if not r > 0:  # r is a temperature: weights are softmax(f / r)
            raise ValueError(f"LossReweighter: temperature r must be > 0, got {r}")
        if not delta > 0:
            raise ValueError(f"LossReweighter: delta must be > 0, got {delta}")
        self.r = r
        self.burn_in_steps = burn_in_steps
        self.delta = delta
        self.last_weights: torch.Tensor | None = None  # this rank's weights of the latest step, for logging

    def __call__(self, per_sample_losses: torch.Tensor, step: int, lengths: torch.Tensor | None = None) -> torch.Tensor:
        """per_sample_losses [B] (with grad), lengths [B] valid tokens or None -> scalar loss."""
        losses = per_sample_losses
        lam = None if lengths is None else lengths.to(losses.dtype) / lengths.sum().to(losses.dtype)  # [B]
        if step < self.burn_in_steps:
            self.last_weights = None
            return losses.mean() if lam is None else (lam * losses).sum()
        with torch.no_grad():
            world, rank = (dist.get_world_size(), dist.get_rank()) if dist.is_available() and dist.is_initialized() else (1, 0)
            local = losses.detach().float()  # [B]
            if world > 1:
                gathered = [torch.empty_like(local) for _ in range(world)]
                dist.all_gather(gathered, local)
                local = torch.cat(gathered)  # [W*B] global batch, rank-major
            weights = reweight_weights(local, self.strategy, self.r, self.delta)  # [W*B]
            w = weights.view(world, -1)[rank].to(losses.dtype)  # [B] this rank's slice
        self.last_weights = w
        if lam is None:
            return world * (w * losses).sum()
        return world * losses.shape[0] * (w * lam * losses).sum()
