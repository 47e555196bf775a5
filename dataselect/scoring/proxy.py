"""The proxy model: a small GPT-2-style causal LM trained on a seeded random part of the pool, for
loss scores when no causal LM is given (the Data Diet protocol: scores are read early in training
and averaged over several training seeds).

Sized for a CPU: the output (and input) vocabulary is reduced to the training sample's most frequent
token ids plus one "other" class, so the LM head is small; the windows are short; training is a few
large steps over packed windows (no padding). The windows are the ones that are scored later
(scoring/loss_masks.token_window): a response and at most half a context of prompt before it.

What the proxies learn depends on everything in `ProxyPlan.identity()`: the training config, the
seeds, the tokenizer, the sample's ids and texts (hashed); that identity is part of the loss stage's
cache key, and the trained weights are cached under it.
"""
from __future__ import annotations

import hashlib
import heapq
import itertools
import json
import logging
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Sequence

import numpy as np
import torch
from tqdm import tqdm

from dataselect.config import ProxyConfig, SourceConfig
from dataselect.scoring.causal import SampleEncoder
from dataselect.scoring.sampled import fraction_limit, sample_key

logger = logging.getLogger(__name__)

FORMAT_VERSION = 1  # bump when training changes what the same config learns


def training_sample(samples: Iterable[Any], size: int | float, seed: int, salt: str = "") -> list[Any]:
    """A uniform random part of the pool, in stream order, that does not depend on how the pool is
    read or sharded: by a seeded hash of each sample's id, the `size` smallest hashes (a count; memory:
    `size` samples), or every sample whose hash falls under the fraction `size` (a float). `salt` draws
    a part independent of the unsalted one of the same seed."""
    if isinstance(size, float):
        limit = fraction_limit(size)
        return [sample for sample in samples if sample_key(seed, sample.id, salt) < limit]
    heap: list[tuple[int, int, Any]] = []  # the `size` smallest keys, as a max-heap (negated keys)
    for order, sample in enumerate(samples):
        key = sample_key(seed, sample.id, salt)
        if len(heap) < size:
            heapq.heappush(heap, (-key, order, sample))
        elif -heap[0][0] > key:
            heapq.heapreplace(heap, (-key, order, sample))
    return [sample for _, _, sample in sorted(heap, key=lambda item: item[1])]


def reduced_vocabulary(ids: np.ndarray, tokenizer_vocab: int, size: int) -> np.ndarray:
    """id_map [tokenizer_vocab] int64: the `size - 1` most frequent ids of `ids` (ties: the smaller id)
    get classes 0..size-2 in that order, every other id the "other" class size - 1."""
    counts = np.bincount(ids, minlength=tokenizer_vocab)[:tokenizer_vocab]  # [vocab]
    kept = np.lexsort((np.arange(tokenizer_vocab), -counts))[: size - 1]
    kept = kept[counts[kept] > 0]
    id_map = np.full(tokenizer_vocab, len(kept), np.int64)  # [vocab] "other" by default
    id_map[kept] = np.arange(len(kept))
    return id_map


def _unshifted_targets(id_map: np.ndarray, ids: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """HF-style labels (the model shifts them) from next-token labels: position t + 1 is a target
    where labels[t] is. ids, labels [n] -> [n] mapped ids or -100"""
    out = np.full(len(ids), -100, np.int64)  # [n]
    counted = labels[:-1] != -100  # [n - 1] position t predicts a counted token t + 1
    out[1:][counted] = id_map[ids[1:][counted]]
    return out


def packed_rows(windows: Sequence[np.ndarray], context: int) -> np.ndarray:
    """Windows laid end to end and cut into rows of `context` tokens (the tail is dropped): [R, context]"""
    stream = np.concatenate(list(windows)) if windows else np.zeros(0, np.int64)
    rows = len(stream) // context
    return stream[: rows * context].reshape(rows, context)


def proxy_model(config: ProxyConfig, vocab: int) -> torch.nn.Module:
    """A small GPT-2 causal LM sized by the proxy config, with `vocab` output classes, randomly initialised."""
    from transformers import GPT2Config, GPT2LMHeadModel
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()  # its notes on a config without bos/eos ids are noise here
    gpt2 = GPT2Config(
        vocab_size=vocab, n_positions=config.context, n_embd=config.hidden, n_layer=config.layers,
        n_head=config.heads, n_inner=4 * config.hidden, resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0,
        bos_token_id=None, eos_token_id=None,
    )
    return GPT2LMHeadModel(gpt2)


def training_steps(config: ProxyConfig, rows: int) -> int:
    """config.steps, but at most config.epochs passes over the rows: a small pool is not memorised
    (and a demo pool trains in seconds)."""
    return max(1, min(config.steps, math.ceil(config.epochs * rows / config.batch_size)))


def learning_rate(step: int, steps: int, peak: float) -> float:
    """Linear warm-up over the first 10% of steps, then cosine decay to a tenth of the peak."""
    warmup = max(1, steps // 10)
    if step < warmup:
        return peak * (step + 1) / warmup
    progress = (step - warmup) / max(1, steps - warmup)
    return peak * (0.1 + 0.9 * 0.5 * (1.0 + math.cos(math.pi * progress)))


def reshuffled(n: int, seed: int) -> Iterator[int]:
    """Row indices without end: one seeded permutation of range(n) after another (the epochs)."""
    rng = np.random.default_rng(seed)
    while True:
        yield from rng.permutation(n).tolist()


def training_dtype(config: ProxyConfig, device: torch.device) -> torch.dtype:
    """The autocast dtype of a training step: config.dtype, `auto` resolved as model.dtype's (bf16 on CUDA
    and on a CPU with native bf16, fp32 elsewhere). Weights and optimiser state stay fp32 either way."""
    from dataselect.scoring.models import resolve_dtype

    return resolve_dtype(config.dtype, device)


def train_one(rows: np.ndarray, vocab: int, config: ProxyConfig, seed: int, progress: bool = True,
              label: str = "proxy", objective: Callable[[torch.nn.Module, torch.Tensor, int], torch.Tensor] | None = None,
              callback: Callable[[int, torch.nn.Module, torch.optim.Optimizer], None] | None = None,
              targets: np.ndarray | None = None, model: torch.nn.Module | None = None,
              steps: int | None = None, lr: float | None = None,
              sampler: Iterable[int] | None = None) -> tuple[torch.nn.Module, list[float]]:
    """Trains one proxy on packed rows [R, context] for training_steps(config, R) steps of
    config.batch_size rows (epochs reshuffled with the seed, or the row indices `sampler` yields, e.g. an
    RS2Sampler's rounds). Returns the model (eval mode) and the training loss per step.

    objective(model, batch [b, T], step) -> scalar loss lets a caller change the loss (the reweighting
    bench); None is the plain mean token loss. callback(step, model, optimizer) runs after each step (a warm-up run reads Adam's state there). targets
    [R, context] (token ids, -100 where a token is not a target) restricts the plain loss to them.
    `model` trains that model instead of a freshly initialised proxy (fine-tuning, with its own `steps`
    and peak `lr`)."""
    if len(rows) == 0:
        raise ValueError("no training rows: the training sample is shorter than one context")
    torch.manual_seed(seed)
    model = proxy_model(config, vocab) if model is None else model
    model.train()
    peak = config.lr if lr is None else lr
    optimizer = torch.optim.AdamW(model.parameters(), lr=peak, betas=(0.9, 0.95), weight_decay=0.01)
    order = iter(reshuffled(len(rows), seed) if sampler is None else sampler)
    losses: list[float] = []
    steps = training_steps(config, len(rows)) if steps is None else steps
    device = next(model.parameters()).device  # a fine-tuned causal LM may live on a GPU
    dtype = training_dtype(config, device)
    autocast = torch.autocast(device.type, dtype=dtype, enabled=dtype != torch.float32)
    bar = tqdm(range(steps), desc=f"train {label} (seed {seed})", unit="step", disable=not progress, leave=False)
    for step in bar:
        batch = np.fromiter(itertools.islice(order, config.batch_size), np.int64)  # [b] row indices
        if len(batch) == 0:
            raise ValueError(f"the sampler ran out of rows at step {step} of {steps}")
        x = torch.from_numpy(rows[batch]).to(device)  # [b, T]
        y = x if targets is None else torch.from_numpy(targets[batch]).to(device)  # [b, T] HF shifts them by one
        if targets is not None and not bool((y != -100).any()):
            y = x  # a batch without any target token (rare): the plain loss rather than NaN
        for group in optimizer.param_groups:
            group["lr"] = learning_rate(step, steps, peak)
        with autocast:
            loss = model(input_ids=x, labels=y).loss if objective is None else objective(model, x, step)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        losses.append(loss.item())
        bar.set_postfix(loss=f"{losses[-1]:.3f}")
        if callback is not None:
            callback(step, model, optimizer)
    bar.close()
    return model.eval(), losses


@dataclass
class ProxyPlan:
    """What the proxies are trained from: config, seeds, tokenizer, and the training sample's digest."""

    config: ProxyConfig
    seeds: list[int]
    tokenizer_path: str
    sample_digest: str
    sample_size: int

    def identity(self) -> dict[str, Any]:
        return {
            "proxy_format": FORMAT_VERSION,
            "proxy": self.config.model_dump(mode="json"),
            "train_dtype": str(training_dtype(self.config, torch.device("cpu"))),  # `auto` differs between CPUs; proxies train on the CPU
            "seeds": list(self.seeds),
            "tokenizer": self.tokenizer_path,
            "sample": self.sample_digest,
            "sample_size": self.sample_size,
        }

    def key(self) -> str:
        return hashlib.sha256(json.dumps(self.identity(), sort_keys=True).encode()).hexdigest()[:24]


def sample_digest(samples: Sequence[Any]) -> str:
    """A hash of the training sample's ids and texts, in order."""
    digest = hashlib.sha256()
    for sample in samples:
        digest.update(sample.id.encode("utf-8", "surrogatepass") + b"\0" + sample.text.encode("utf-8", "surrogatepass") + b"\0")
    return digest.hexdigest()[:24]


def encoded_samples(samples: Sequence[Any], tokenizer: Any, source: SourceConfig, context: int) -> list[Any]:
    """The samples' scoring windows (SampleEncoder), without those that have nothing to score."""
    encoder = SampleEncoder(tokenizer, source, context)
    encoded = encoder.encode([s.text for s in samples], [s.record for s in samples])
    prepared = [p for p in encoded if p.error is None]
    if not prepared:
        raise ValueError(f"no training sample has tokens to score (the first: {encoded[0].error})" if encoded else "no training samples")
    return prepared


def training_rows(prepared: Sequence[Any], id_map: np.ndarray | None, config: ProxyConfig) -> tuple[np.ndarray, np.ndarray | None]:
    """Packed rows [R, context] of the windows (ids through id_map when given), and with
    train_tokens: scored their targets [R, context] (-100 where a token is not one a score counts)."""
    identity_map = np.arange(max(int(p.ids.max()) for p in prepared) + 1) if id_map is None else id_map
    rows = packed_rows([identity_map[p.ids] for p in prepared], config.context)  # [R, context]
    targets = None
    if config.train_tokens == "scored":  # only the tokens a score counts are targets (the responses)
        targets = packed_rows([_unshifted_targets(identity_map, p.ids, p.labels) for p in prepared], config.context)  # [R, context]
    return rows, targets


def proxy_training_rows(samples: Sequence[Any], tokenizer: Any, source: SourceConfig,
                        config: ProxyConfig) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """What a proxy trains on: (id_map [vocab] of the samples' reduced vocabulary, packed rows [R, context],
    their targets [R, context] or None; see training_rows)."""
    prepared = encoded_samples(samples, tokenizer, source, config.context)
    vocab_size = max(len(tokenizer), int(max(int(p.ids.max()) for p in prepared)) + 1)
    id_map = reduced_vocabulary(np.concatenate([p.ids for p in prepared]), vocab_size, config.vocab)
    rows, targets = training_rows(prepared, id_map, config)
    return id_map, rows, targets


@dataclass
class TrainedProxies:
    """The trained proxies, as the loss stage loads them in each worker: a file and its identity."""

    path: str
    identity: dict[str, Any]


def train_proxies(
    samples: Sequence[Any],
    tokenizer: Any,
    tokenizer_path: str,
    source: SourceConfig,
    config: ProxyConfig,
    seeds: Sequence[int],
    cache_dir: Path,
    progress: bool = True,
) -> TrainedProxies:
    """Trains (or finds in cache_dir) one proxy per seed on `samples`, and saves them in one file."""
    plan = ProxyPlan(config, list(seeds), tokenizer_path, sample_digest(samples), len(samples))
    path = Path(cache_dir) / "proxy" / f"{plan.key()}.pt"
    if path.exists():
        logger.info("proxy models found in the cache: %s", path)
        return TrainedProxies(str(path), plan.identity())
    id_map, rows, targets = proxy_training_rows(samples, tokenizer, source, config)
    states, curves = [], []
    started = time.perf_counter()
    for seed in seeds:
        model, losses = train_one(rows, int(id_map.max()) + 1, config, seed, progress, targets=targets)
        states.append({k: v.detach().clone() for k, v in model.state_dict().items()})
        curves.append(losses)
        logger.info("proxy seed %d: training loss %.3f -> %.3f over %d steps", seed, losses[0], losses[-1], len(losses))
    save_proxies(path, plan.identity(), id_map, states, curves, len(rows), time.perf_counter() - started)
    return TrainedProxies(str(path), plan.identity())


def save_proxies(path: Path, identity: dict[str, Any], id_map: np.ndarray, states: list[dict[str, torch.Tensor]],
                 curves: list[list[float]], rows: int, seconds: float) -> None:
    """One file of trained proxies (what load_proxies reads), written atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    torch.save({"identity": identity, "id_map": torch.from_numpy(id_map), "states": states, "losses": curves,
                "rows": int(rows), "seconds": seconds}, tmp)
    tmp.replace(path)  # atomic: a half-written file is never taken for a finished one


def training_losses(path: str) -> list[list[float]]:
    """The per-step training loss of every proxy in a train_proxies (or fine-tune) file, one list per seed."""
    return [list(map(float, curve)) for curve in torch.load(path, map_location="cpu", weights_only=True)["losses"]]


def load_proxies(path: str, config: ProxyConfig, device: torch.device) -> tuple[np.ndarray, list[torch.nn.Module]]:
    """(id_map [vocab], one eval-mode model per seed) from a train_proxies file."""
    saved = torch.load(path, map_location="cpu", weights_only=True)
    id_map = saved["id_map"].numpy().astype(np.int64)
    models = []
    for state in saved["states"]:
        model = proxy_model(config, int(id_map.max()) + 1)
        model.load_state_dict(state)
        models.append(model.eval().to(device))
    return id_map, models
