"""LESS's warm-up run (METHODS.md 10.2) on the engine's proxy LM: the proxy trained on a seeded part of
the pool by the proxy trainer's one loop (proxy.train_one), with `checkpoints` snapshots at evenly
spaced steps (LESS saves one per epoch). Each snapshot keeps the weights, AdamW's first and second
moments (`exp_avg`, `exp_avg_sq`, by parameter name) and its weight: the mean learning rate of the
steps since the previous snapshot, as LESS weights its checkpoints.

The run is cached in cache_dir/warmup under its identity: the proxy plan's (config, seed, tokenizer,
sample digest) plus the warm-up format and checkpoint count.
"""
from __future__ import annotations

import hashlib
import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from dataselect.config import ProxyConfig, SourceConfig
from dataselect.scoring.proxy import ProxyPlan, learning_rate, proxy_training_rows, sample_digest, train_one, training_steps

logger = logging.getLogger(__name__)

WARMUP_FORMAT = 1  # bump when the warm-up run changes what the same config saves


@dataclass
class Warmup:
    """A finished warm-up run, as the gradient stage loads it in each worker: a file and its identity."""

    path: str
    identity: dict[str, Any]


@dataclass
class Checkpoint:
    """One warm-up snapshot: weights, Adam moments by parameter name, and its weight eta_i (not yet renormalised)."""

    state: dict[str, torch.Tensor]
    exp_avg: dict[str, torch.Tensor]
    exp_avg_sq: dict[str, torch.Tensor]
    weight: float
    step: int


def checkpoint_steps(steps: int, checkpoints: int) -> list[int]:
    """The 0-based steps after which a snapshot is taken: the ends of `checkpoints` equal segments
    (fewer when there are fewer steps than checkpoints)."""
    return sorted({max(0, -(-steps * (i + 1) // checkpoints) - 1) for i in range(checkpoints)})


def segment_weights(steps: int, ends: Sequence[int], peak: float) -> list[float]:
    """Each snapshot's weight: the mean learning rate over the steps since the previous snapshot."""
    rates = np.array([learning_rate(s, steps, peak) for s in range(steps)])
    starts = [0, *(e + 1 for e in ends[:-1])]
    return [float(rates[a : b + 1].mean()) for a, b in zip(starts, ends)]


def train_warmup(samples: Sequence[Any], tokenizer: Any, tokenizer_path: str, source: SourceConfig, config: ProxyConfig, seed: int,
                 checkpoints: int, cache_dir: Path, progress: bool = True) -> Warmup:
    """Trains (or finds in cache_dir) the warm-up proxy on `samples`, saving `checkpoints` snapshots."""
    plan = ProxyPlan(config, [seed], tokenizer_path, sample_digest(samples), len(samples))
    identity = {**plan.identity(), "warmup_format": WARMUP_FORMAT, "checkpoints": checkpoints}
    key = hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:24]
    path = Path(cache_dir) / "warmup" / f"{key}.pt"
    if path.exists():
        logger.info("warm-up run found in the cache: %s", path)
        return Warmup(str(path), identity)
    id_map, rows, targets = proxy_training_rows(samples, tokenizer, source, config)
    steps = training_steps(config, len(rows))
    ends = checkpoint_steps(steps, checkpoints)
    weights = segment_weights(steps, ends, config.lr)
    saved: list[dict[str, Any]] = []

    def snapshot(step: int, model: torch.nn.Module, optimizer: torch.optim.Optimizer) -> None:
        if step not in ends:
            return
        names = {id(p): name for name, p in model.named_parameters()}
        moments = {names[id(p)]: optimizer.state[p] for group in optimizer.param_groups for p in group["params"] if p in optimizer.state}
        saved.append({"state": {k: v.detach().clone() for k, v in model.state_dict().items()},
                      "exp_avg": {k: s["exp_avg"].detach().clone() for k, s in moments.items()},
                      "exp_avg_sq": {k: s["exp_avg_sq"].detach().clone() for k, s in moments.items()},
                      "weight": weights[len(saved)], "step": step})

    started = time.perf_counter()
    _, losses = train_one(rows, int(id_map.max()) + 1, config, seed, progress, label="warm-up", callback=snapshot, targets=targets)
    logger.info("warm-up: training loss %.3f -> %.3f over %d steps, %d checkpoints", losses[0], losses[-1], len(losses), len(saved))
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    torch.save({"identity": identity, "id_map": torch.from_numpy(id_map), "checkpoints": saved, "losses": [losses],
                "rows": int(len(rows)), "seconds": time.perf_counter() - started}, tmp)
    tmp.replace(path)  # atomic: a half-written file is never taken for a finished one
    return Warmup(str(path), identity)


def load_warmup(path: str) -> tuple[np.ndarray, list[Checkpoint], list[list[float]]]:
    """(id_map [vocab], the snapshots in training order, the training loss per step) of a train_warmup file."""
    saved = torch.load(path, map_location="cpu", weights_only=True)
    points = [Checkpoint(c["state"], c["exp_avg"], c["exp_avg_sq"], float(c["weight"]), int(c["step"])) for c in saved["checkpoints"]]
    return saved["id_map"].numpy().astype(np.int64), points, [list(map(float, curve)) for curve in saved["losses"]]


def warmup_for(config: Any, cache_root: Any, pool_samples: Any) -> Warmup:
    """The warm-up run a LESS config asks for: method.less.proxy trained (or found in the cache) with seed
    method.seed on its seeded sample of `pool_samples()` (an iterable of rendered Samples)."""
    from dataselect.errors import InputError
    from dataselect.scoring.loss import proxy_sample

    options = config.method.less
    path, tokenizer, samples = proxy_sample(config, options.proxy, pool_samples)
    try:
        return train_warmup(samples, tokenizer, path, config.input, options.proxy, config.method.seed, options.checkpoints,
                            Path(cache_root), config.runtime.progress)
    except ValueError as error:
        raise InputError(f"input error: input.path: cannot train the warm-up model: {error}") from None

