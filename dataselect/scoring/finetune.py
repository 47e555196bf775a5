"""CoLoR-Filter's conditional model (METHODS.md 7.3): the prior model fine-tuned on the target for a
fixed number of steps, by the proxy trainer's one training loop (proxy.train_one).

  proxies   each seed's trained proxy, on the target's scoring windows through the prior's reduced
            vocabulary; saved in the proxy file format, so the loss stage scores it like any proxy
  model     a Hugging Face causal LM (model.name), saved as a model folder the loss stage loads by path

What a conditional model learned depends on its identity: the prior's, the fine-tune settings, the
target (ids and texts, hashed) and the fields that decide its masks. The identity names the cached
file or folder, and through the loss stage's identity it keys the conditional scores; the prior's
scores are keyed by the prior alone, so a run with another target reuses them.
"""
from __future__ import annotations

import hashlib
import json
import logging
import shutil
import time
from pathlib import Path
from typing import Any, Sequence

import torch

from dataselect.config import ModelConfig, ProxyConfig, SourceConfig
from dataselect.scoring.proxy import (
    TrainedProxies,
    encoded_samples,
    proxy_model,
    sample_digest,
    save_proxies,
    train_one,
    training_rows,
)

logger = logging.getLogger(__name__)

FINETUNE_FORMAT = 1  # bump when fine-tuning changes what the same settings learn
MASK_FIELDS = ("prompt_field", "response_field", "messages_field", "text_field", "render")


def _key(identity: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(identity, sort_keys=True, default=str).encode()).hexdigest()[:24]


def finetune_identity(prior: dict[str, Any], samples: Sequence[Any], source: SourceConfig, steps: int, lr: float,
                      settings: dict[str, Any]) -> dict[str, Any]:
    """The cache key of a fine-tuned model: the prior's identity, the target samples and the training settings."""
    return {"finetune_format": FINETUNE_FORMAT, "prior": prior, "steps": steps, "lr": lr, **settings,
            "target": sample_digest(samples), "target_size": len(samples), "fields": {k: getattr(source, k) for k in MASK_FIELDS}}


def one_context_at_least(prepared: list[Any], context: int) -> list[Any]:
    """A target shorter than one packed row is repeated until it fills one (a tiny target still trains)."""
    total = sum(len(p.ids) for p in prepared)
    return prepared * max(1, -(-context // max(total, 1)))


def finetune_proxies(prior: TrainedProxies, samples: Sequence[Any], tokenizer: Any, source: SourceConfig, config: ProxyConfig,
                     steps: int, lr: float, cache_dir: Path, progress: bool = True, label: str = "target") -> TrainedProxies:
    """Every seed's prior proxy fine-tuned on `samples` (found in cache_dir when done before)."""
    identity = finetune_identity(prior.identity, samples, source, steps, lr, {"batch_size": config.batch_size})
    path = Path(cache_dir) / "proxy" / f"{_key(identity)}.pt"
    if path.exists():
        logger.info("conditional model for %s found in the cache: %s", label, path)
        return TrainedProxies(str(path), identity)
    saved = torch.load(prior.path, map_location="cpu", weights_only=True)
    id_map = saved["id_map"].numpy()
    vocab = int(id_map.max()) + 1
    prepared = one_context_at_least(encoded_samples(samples, tokenizer, source, config.context), config.context)
    rows, targets = training_rows(prepared, id_map, config)
    started = time.perf_counter()
    states, curves = [], []
    for seed, state in zip(prior.identity["seeds"], saved["states"]):
        model = proxy_model(config, vocab)
        model.load_state_dict(state)
        model, losses = train_one(rows, vocab, config, seed, progress, label=f"conditional {label}", targets=targets, model=model, steps=steps, lr=lr)
        states.append({k: v.detach().clone() for k, v in model.state_dict().items()})
        curves.append(losses)
        logger.info("conditional %s (seed %d): fine-tuning loss %.3f -> %.3f over %d steps", label, seed, losses[0], losses[-1], len(losses))
    save_proxies(path, identity, id_map, states, curves, len(rows), time.perf_counter() - started)
    return TrainedProxies(str(path), identity)


def finetune_causal_lm(model: ModelConfig, device: str, samples: Sequence[Any], source: SourceConfig, config: ProxyConfig, steps: int,
                       lr: float, seed: int, cache_dir: Path, progress: bool = True, label: str = "target") -> tuple[str, list[float]]:
    """model.name fine-tuned on `samples` in packed rows of config.context tokens, config.batch_size rows
    a step; -> (the saved model folder, the fine-tuning loss per step)."""
    from dataselect.scoring.causal import causal_lm_config, load_causal_lm

    path, hf_config = causal_lm_config(model.name, model.trust_remote_code)
    prior = {"model": path, "name_or_path": getattr(hf_config, "_name_or_path", None), "model_type": getattr(hf_config, "model_type", None),
             "dtype": model.dtype, "max_length": model.max_length}
    settings = {"seed": seed, "batch_size": config.batch_size, "context": config.context, "train_tokens": config.train_tokens}
    identity = finetune_identity(prior, samples, source, steps, lr, settings)
    folder = Path(cache_dir) / "finetuned" / _key(identity)
    record = folder / "finetune.json"
    if record.exists():
        logger.info("conditional model for %s found in the cache: %s", label, folder)
        return str(folder), json.loads(record.read_text())["losses"]
    loaded = load_causal_lm(model, device)
    context = min(config.context, loaded.max_length)
    prepared = one_context_at_least(encoded_samples(samples, loaded.tokenizer, source, context), context)
    rows, targets = training_rows(prepared, None, config.model_copy(update={"context": context}))
    lm, losses = train_one(rows, 0, config, seed, progress, label=f"conditional {label}", targets=targets, model=loaded.model, steps=steps, lr=lr)
    logger.info("conditional %s: fine-tuning loss %.3f -> %.3f over %d steps", label, losses[0], losses[-1], len(losses))
    staging = folder.with_name(folder.name + ".tmp")
    shutil.rmtree(staging, ignore_errors=True)
    lm.save_pretrained(staging)
    loaded.tokenizer.save_pretrained(staging)
    (staging / "finetune.json").write_text(json.dumps({"identity": identity, "losses": losses}, default=str))
    shutil.rmtree(folder, ignore_errors=True)
    staging.replace(folder)  # a folder with finetune.json is whole
    return str(folder), losses
