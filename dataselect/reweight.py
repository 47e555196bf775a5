"""The training-side components a user's own training loop calls: online loss reweighting (Sow et al.,
ICLR 2025) and RS2, repeated random sampling (Okanovic et al., ICLR 2024).

    reweighter = LossReweighter(strategy="linupper", r=0.4, burn_in_steps=1000)
    loss = reweighter(per_sample_losses, step)          # per_sample_losses: [B] mean token CE per sequence
    loss.backward()

During burn-in the loss is exactly the plain mean (or, with `lengths`, the token-weighted mean). After
it, weights are computed without gradient from the detached losses of the *global* batch (all-gathered
when torch.distributed is initialised; every rank must pass the same batch size), and the gradient
flows through this rank's losses: W * sum_i w_i l_i (README variant), or with lengths trainer.py's
W * B * sum_i w_i lambda_i l_i, lambda_i = n_i / sum_local n_j. Both reduce to the burn-in loss when the
weights are uniform, and DDP's gradient averaging over W ranks then matches the single-process result.

    sampler = RS2Sampler(len(dataset), fraction=0.1, rounds=20, seed=0)
    loader = DataLoader(dataset, batch_size=32, sampler=sampler)   # 20 rounds of a fresh 10% each

Without replacement (the default) a round takes the next round_size positions of a seeded permutation
and, when it runs out, the leftovers plus the head of a fresh permutation (never an index twice in a
round): every sample is seen once before any is seen again. With replacement each round is an
independent uniform subset.
"""
from __future__ import annotations

from typing import Iterator

import numpy as np
import torch
import torch.distributed as dist

from dataselect.kernels.reweight import canonical_strategy, reweight_weights


class LossReweighter:
    """Per-sample loss weights for a training step (METHODS.md section 4): call it with the batch's losses."""

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


class RS2Sampler(torch.utils.data.Sampler[int]):
    """RS2 (METHODS.md 11.1): `rounds` rounds of `round_size` indices of range(n) (or round(n * fraction)),
    a fresh random subset each round; without replacement across rounds unless `replacement`. Iterating
    yields every round's indices in turn; `rounds_iter()` yields them a round at a time. Deterministic
    for a seed: the same seed gives the same sequence of rounds."""

    def __init__(self, n: int, fraction: float | None = None, rounds: int = 1, seed: int = 0, round_size: int | None = None,
                 replacement: bool = False) -> None:
        if n <= 0:
            raise ValueError(f"RS2Sampler: n must be > 0, got {n}")
        if (fraction is None) == (round_size is None):
            raise ValueError("RS2Sampler: give exactly one of fraction and round_size")
        size = round(n * fraction) if fraction is not None else int(round_size)
        if not 0 < size <= n:
            raise ValueError(f"RS2Sampler: the round size must be in [1, n={n}], got {size}")
        if rounds <= 0:
            raise ValueError(f"RS2Sampler: rounds must be > 0, got {rounds}")
        self.n, self.round_size, self.rounds, self.seed, self.replacement = n, size, rounds, seed, replacement

    def __len__(self) -> int:
        return self.rounds * self.round_size

    def __iter__(self) -> Iterator[int]:
        for chosen in self.rounds_iter():
            yield from chosen.tolist()

    def rounds_iter(self) -> Iterator[np.ndarray]:
        """Each round's indices, [round_size] int64, `rounds` times."""
        rng = np.random.default_rng(self.seed)
        if self.replacement:  # independent rounds; no repeat inside one
            for _ in range(self.rounds):
                yield rng.choice(self.n, size=self.round_size, replace=False)
            return
        queue = rng.permutation(self.n)  # [n] the current permutation's unseen positions
        for _ in range(self.rounds):
            if len(queue) >= self.round_size:
                chosen, queue = queue[: self.round_size], queue[self.round_size :]
                yield chosen
                continue
            fresh = rng.permutation(self.n)  # [n]
            # the head of the fresh permutation tops up the leftovers, skipping any index they already hold
            usable = ~np.isin(fresh, queue)  # [n]
            need = self.round_size - len(queue)
            taken = np.flatnonzero(usable)[:need]  # positions in `fresh`
            rest = np.ones(self.n, bool)
            rest[taken] = False
            chosen, queue = np.concatenate([queue, fresh[taken]]), fresh[rest]
            yield chosen
