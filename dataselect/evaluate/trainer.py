"""The model every arm starts from, one fine-tune per (arm, seed) by the proxy trainer's one training loop
(scoring/proxy.train_one), and the eval target's bits per byte read at the last checkpoints.

The base is a proxy causal LM pre-trained once on a seeded sample of the pool (cached under its identity,
like EL2N's proxies), or any Hugging Face causal LM by name. Every arm fine-tunes a fresh copy of it for
the same steps with the same settings; the seed sets the data order (and a random arm's subset).
"""
from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import numpy as np
import torch

from dataselect.config import EvalConfig, ModelConfig, ProxyConfig, SourceConfig
from dataselect.errors import InputError
from dataselect.evaluate.statistics import bits_per_byte
from dataselect.scoring.causal import LossScorer, SampleEncoder
from dataselect.scoring.finetune import one_context_at_least
from dataselect.scoring.proxy import encoded_samples, proxy_model, train_one, train_proxies, training_rows, training_sample

PRETRAIN_SALT = "eval-pretrain"  # the pre-training sample is drawn apart from the random arms' subsets of the same seed


@dataclass
class BaseModel:
    """What each arm fine-tunes: a fresh copy per (arm, seed), with the tokenizer, rows and vocabulary it reads."""

    identity: dict[str, Any]
    tokenizer: Any
    config: ProxyConfig  # batch_size, context and train_tokens of the fine-tunes
    device: torch.device
    id_map: np.ndarray | None = None  # [tokenizer vocab] -> the proxy's reduced vocabulary; None: a causal LM's own
    state: dict[str, torch.Tensor] | None = None  # the pre-trained proxy's weights
    model_config: ModelConfig | None = None  # a causal LM's, loaded afresh each time
    pad_id: int = 0
    curve: list[float] = field(default_factory=list)  # the proxy's pre-training loss per step

    def fresh(self) -> torch.nn.Module:
        """A new copy of the base weights, in train mode, on the device."""
        if self.state is not None:
            model = proxy_model(self.config, int(self.id_map.max()) + 1)
            model.load_state_dict(self.state)
            return model.to(self.device).train()
        from dataselect.scoring.causal import load_causal_lm

        return load_causal_lm(self.model_config, str(self.device)).model.float().train()

    def key(self) -> str:
        """A short hash of the identity (what the fine-tune results are filed under)."""
        return hashlib.sha256(json.dumps(self.identity, sort_keys=True, default=str).encode()).hexdigest()[:16]


def pretrained_proxy(pool: Sequence[Any], tokenizer: Any, tokenizer_path: str, source: SourceConfig, settings: EvalConfig,
                     cache_dir: Path, device: torch.device, progress: bool = True) -> BaseModel:
    """The proxy pre-trained on a seeded sample of the pool (found in cache_dir when trained before)."""
    sample = training_sample(pool, settings.proxy.sample, settings.seed, PRETRAIN_SALT)
    try:
        trained = train_proxies(sample, tokenizer, tokenizer_path, source, settings.proxy, [settings.seed], cache_dir, progress)
    except ValueError as error:
        raise InputError(f"input error: the run's pool: cannot pre-train the proxy model: {error}") from None
    saved = torch.load(trained.path, map_location="cpu", weights_only=True)
    return BaseModel({"proxy": trained.identity}, tokenizer, settings.proxy, device, id_map=saved["id_map"].numpy().astype(np.int64),
                     state=saved["states"][0], curve=[float(x) for x in saved["losses"][0]])


def causal_lm_base(name: str, settings: EvalConfig, device: torch.device) -> BaseModel:
    """A Hugging Face causal LM given by name or folder; its windows are at most its own max length."""
    from dataselect.scoring.causal import causal_lm_config, load_causal_lm, require_causal_lm

    path, hf_config = causal_lm_config(name)
    require_causal_lm(name, hf_config)
    model_config = ModelConfig(name=name, dtype="float32")
    loaded = load_causal_lm(model_config, str(device))
    tokenizer = loaded.tokenizer
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else (tokenizer.eos_token_id or 0)
    config = settings.proxy.model_copy(update={"context": min(settings.proxy.context, loaded.max_length)})
    identity = {"model": path, "name_or_path": getattr(hf_config, "_name_or_path", None), "context": config.context}
    return BaseModel(identity, tokenizer, config, device, model_config=model_config, pad_id=int(pad))


def arm_rows(base: BaseModel, samples: Sequence[Any], source: SourceConfig) -> tuple[np.ndarray, np.ndarray | None]:
    """Packed training rows [R, context] of the samples' windows (and their targets), through the base's vocabulary."""
    try:
        prepared = one_context_at_least(encoded_samples(samples, base.tokenizer, source, base.config.context), base.config.context)
    except ValueError as error:
        raise InputError(f"input error: cannot train on this arm: {error}") from None
    return training_rows(prepared, base.id_map, base.config)


class TargetLoss:
    """Bits per byte of a model on the eval target: the summed loss of the counted (answer) tokens over the
    UTF-8 bytes they cover (METHODS.md 11.3)."""

    def __init__(self, base: BaseModel, samples: Sequence[Any], source: SourceConfig, batch_tokens: int) -> None:
        encoder = SampleEncoder(base.tokenizer, source, base.config.context, base.id_map, count_bytes=True)
        prepared = encoder.encode([s.text for s in samples], [s.record for s in samples])
        self.prepared = [p for p in prepared if p.error is None]
        if not self.prepared:
            raise InputError(f"input error: --eval-target: no sample has tokens to score (the first: {prepared[0].error if prepared else 'none read'})")
        self.bytes = int(sum(p.target_bytes for p in self.prepared))
        self.base = base
        self.batch_tokens = batch_tokens

    def __call__(self, model: torch.nn.Module) -> float:
        scorer = LossScorer(model, self.base.device, torch.float32, self.base.pad_id, self.batch_tokens)
        _, loss, n_tokens = scorer.score(self.prepared)  # [n] mean token loss (nats), [n] counted tokens
        return bits_per_byte(float((loss.astype(np.float64) * n_tokens).sum()), self.bytes)


def checkpoint_steps(steps: int, checkpoints: int) -> list[int]:
    """The steps (1-based, after the update) whose model is measured: the last, and every steps // 20 before it."""
    gap = max(1, steps // 20)
    return sorted({max(1, steps - k * gap) for k in range(checkpoints)})


def train_and_measure(base: BaseModel, rows: np.ndarray, targets: np.ndarray | None, steps: int, lr: float, seed: int,
                      measure: Callable[[torch.nn.Module], float], checkpoints: int, sampler: Iterable[int] | None = None,
                      progress: bool = True, label: str = "arm") -> tuple[list[float], list[float]]:
    """Fine-tunes a fresh base on the rows for `steps` steps; -> (bits per byte at each checkpoint, training loss per step)."""
    at = set(checkpoint_steps(steps, checkpoints))
    measured: list[float] = []

    def callback(step: int, model: torch.nn.Module, optimizer: torch.optim.Optimizer) -> None:
        """Measures the model after the checkpoint steps (in eval mode, then back to training)."""
        if step + 1 in at:
            measured.append(measure(model.eval()))
            model.train()

    _, losses = train_one(rows, 0, base.config, seed, progress, label=label, callback=callback, targets=targets, model=base.fresh(),
                          steps=steps, lr=lr, sampler=sampler)
    if not all(math.isfinite(x) for x in measured):
        raise InputError(f"input error: training on {label} (seed {seed}) diverged: bits per byte {measured}")
    return measured, losses
