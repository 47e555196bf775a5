"""The loss score stage (kind "loss"): per-sample mean-token EL2N and loss, with a causal LM
(model.name) or with the trained proxies (averaged over their seeds).

Per shard it returns the columns el2n, loss (float32; NaN for a sample that cannot be scored),
n_tokens (counted tokens), truncated (the sample was cut to its scoring window) and error (None, or
why the sample is bad input: no response tokens, ...), and for proxies the per-seed arrays
el2n_seeds and loss_seeds [n, seeds]. The stage holds configuration only until `setup` loads the
model in the worker.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from dataselect.config import ModelConfig, ProxyConfig, SourceConfig
from dataselect.scoring.stage import Resources, ShardOutput

if TYPE_CHECKING:
    from dataselect.io.samples import Sample
    from dataselect.scoring.proxy import TrainedProxies

MASKS_VERSION = 1  # bump when loss_masks changes which tokens count


def average_over_seeds(per_seed: np.ndarray) -> np.ndarray:
    """The Data Diet average: per-seed scores [S, n] -> their mean [n] (NaN stays NaN)."""
    return np.asarray(per_seed, np.float64).mean(axis=0).astype(np.float32)


@dataclass
class LossStage:
    """Loss scores of one source. proxies=None: score with model.name (a causal LM)."""

    model: ModelConfig
    source: SourceConfig
    device: str = "auto"  # runtime.device, used when setup gets no device
    batch_tokens: int = 16384
    proxies: "TrainedProxies | None" = None
    proxy_config: ProxyConfig | None = None
    tokenizer_name: str | None = None  # the proxies' tokenizer (default: model.name's)

    kind = "loss"

    def __post_init__(self) -> None:
        from dataselect.scoring.models import resolve_device

        self.resources = Resources(gpu=resolve_device(self.device).type == "cuda")
        self._scorers: list[Any] | None = None
        self._encoder: Any = None

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_scorers"], state["_encoder"] = None, None  # weights never travel: each worker loads its own
        return state

    def identity(self) -> dict[str, Any]:
        from dataselect.scoring.causal import causal_lm_config, require_causal_lm
        from dataselect.scoring.models import resolve_device, resolve_dtype

        device = resolve_device(self.device)
        # batch_tokens: the padded width of a batch changes float sums by an ulp, and a cached store must
        # hold exactly what this config computes
        common = {"stage": "loss", "masks": MASKS_VERSION, "batch_tokens": self.batch_tokens}
        if self.proxies is not None:
            return common | {"scorer": "proxy", "device_type": device.type, **self.proxies.identity}
        path, hf_config = causal_lm_config(self.model.name, self.model.trust_remote_code)
        require_causal_lm(self.model.name, hf_config)
        return common | {
            "scorer": "model",
            "model": path,
            "model_type": getattr(hf_config, "model_type", None),
            "name_or_path": getattr(hf_config, "_name_or_path", None),
            "max_length": self.model.max_length,
            "dtype": str(resolve_dtype(self.model.dtype, device)),
            "device_type": device.type,
        }

    def setup(self, device: str | None) -> None:
        if self.proxies is None:
            self._encoder, self._scorers = model_scorers(self.model, self.source, device or self.device, self.batch_tokens)
            return
        from dataselect.scoring.models import resolve_device
        from dataselect.scoring.proxy import load_proxies

        assert self.proxy_config is not None
        torch_device = resolve_device(device or self.device)
        id_map, models = load_proxies(self.proxies.path, self.proxy_config, torch_device)
        self._encoder, self._scorers = proxy_scorers(self.tokenizer_name or self.model.name, self.source, self.proxy_config, id_map, models,
                                                     torch_device, self.batch_tokens)

    def score(self, samples: list["Sample"]) -> ShardOutput:
        if self._scorers is None:
            raise RuntimeError("LossStage.score before setup")
        prepared, el2n_seeds, loss_seeds, n_tokens = score_samples(self._encoder, self._scorers, [s.text for s in samples], [s.record for s in samples])
        import pyarrow as pa

        columns = {  # typed, so a shard without any error (a null column) has the same schema as one with
            "el2n": pa.array(average_over_seeds(el2n_seeds), pa.float32()),
            "loss": pa.array(average_over_seeds(loss_seeds), pa.float32()),
            "n_tokens": pa.array(n_tokens, pa.int64()),
            "truncated": pa.array([p.truncated for p in prepared], pa.bool_()),
            "error": pa.array([p.error for p in prepared], pa.string()),
        }
        arrays = {} if self.proxies is None else {"el2n_seeds": el2n_seeds.T.copy(), "loss_seeds": loss_seeds.T.copy()}
        counters = {
            "docs": len(samples),
            "tokens": int(sum(len(p.ids) for p in prepared)),
            "scored_tokens": int(n_tokens.sum()),
            "padded_tokens": int(sum(s.padded_tokens for s in self._scorers[:1])),
            "bad": int(sum(p.error is not None for p in prepared)),
        }
        for scorer in self._scorers:
            scorer.padded_tokens = 0
        return ShardOutput(columns=columns, arrays=arrays, counters=counters)

    def close(self) -> None:
        self._scorers, self._encoder = None, None


def model_scorers(model: ModelConfig, source: SourceConfig, device: str, batch_tokens: int) -> tuple[Any, list[Any]]:
    """(encoder, [one LossScorer]) for a Hugging Face causal LM."""
    from dataselect.scoring.causal import LossScorer, SampleEncoder, check_head_matches_logits, load_causal_lm

    loaded = load_causal_lm(model, device)
    check_head_matches_logits(loaded.model, loaded.device, loaded.dtype, int(loaded.model.config.vocab_size))
    tokenizer = loaded.tokenizer
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else (tokenizer.eos_token_id or 0)
    return SampleEncoder(tokenizer, source, loaded.max_length), [LossScorer(loaded.model, loaded.device, loaded.dtype, int(pad), batch_tokens)]


def proxy_scorers(tokenizer_name: str, source: SourceConfig, proxy: ProxyConfig, id_map: np.ndarray, models: list[Any], device: Any,
                  batch_tokens: int) -> tuple[Any, list[Any]]:
    """(encoder, a LossScorer per proxy seed) for trained proxies (eval-mode models on `device`)."""
    import torch

    from dataselect.scoring.causal import LossScorer, SampleEncoder
    from dataselect.scoring.models import load_tokenizer, resolve_model_path

    encoder = SampleEncoder(load_tokenizer(resolve_model_path(tokenizer_name)), source, proxy.context, id_map)
    return encoder, [LossScorer(m, device, torch.float32, 0, batch_tokens) for m in models]


def score_samples(encoder: Any, scorers: list[Any], texts: list[str], records: list[dict[str, Any]]) -> tuple[list[Any], np.ndarray, np.ndarray, np.ndarray]:
    """(prepared samples, el2n [S, n], loss [S, n] per scorer, counted tokens [n]) of rendered samples."""
    prepared = encoder.encode(texts, records)
    results = [scorer.score(prepared) for scorer in scorers]
    return prepared, np.stack([r[0] for r in results]), np.stack([r[1] for r in results]), results[0][2]  # the same masks for every seed


def saved_loss_model(stage: LossStage, name: str) -> tuple[dict[str, Any], dict[str, np.ndarray], dict[str, dict[str, np.ndarray]]]:
    """What a scorer folder keeps of a loss stage, under `name`: (its description, arrays, weights). Proxies:
    their config and tokenizer, the reduced vocabulary `<name>.id_map` and one weight file `<name>-<seed>` a
    seed; a causal LM: its ModelConfig, by name or absolute path."""
    from dataselect.scorer.base import portable_name

    if stage.proxies is None:
        model = stage.model
        return {"model": {"name": portable_name(model.name), "max_length": model.max_length, "dtype": model.dtype,
                          "trust_remote_code": model.trust_remote_code}}, {}, {}
    import torch

    from dataselect.scoring.proxy import load_proxies

    assert stage.proxy_config is not None
    id_map, models = load_proxies(stage.proxies.path, stage.proxy_config, torch.device("cpu"))
    part = {"proxy": stage.proxy_config.model_dump(mode="json"), "tokenizer": portable_name(stage.tokenizer_name or stage.model.name),
            "seeds": len(models)}
    weights = {f"{name}-{seed}": {key: value.numpy() for key, value in model.state_dict().items()} for seed, model in enumerate(models)}
    return part, {f"{name}.id_map": id_map}, weights


def loaded_loss_model(part: dict[str, Any], arrays: dict[str, Any], name: str, source: SourceConfig, device: str,
                      batch_tokens: int) -> tuple[Any, list[Any]]:
    """(encoder, scorers) of what saved_loss_model kept under `name`."""
    if "proxy" not in part:
        return model_scorers(ModelConfig(**part["model"]), source, device, batch_tokens)
    import torch

    from dataselect.scoring.models import resolve_device
    from dataselect.scoring.proxy import proxy_model

    proxy, id_map, torch_device = ProxyConfig(**part["proxy"]), np.asarray(arrays[f"{name}.id_map"], np.int64), resolve_device(device)
    models = []
    for seed in range(int(part["seeds"])):
        model = proxy_model(proxy, int(id_map.max()) + 1)
        model.load_state_dict({key: torch.from_numpy(value) for key, value in arrays[f"{name}-{seed}"].items()})
        models.append(model.eval().to(torch_device))
    return proxy_scorers(part["tokenizer"], source, proxy, id_map, models, torch_device, batch_tokens)


def uses_proxy(config: Any, scorer: str | None = None) -> bool:
    """scorer (default method.el2n.scorer) auto: the proxy for the bundled default model (an encoder),
    model.name when it is a causal LM, and a config error for any other model."""
    from dataselect.scoring.causal import causal_lm_config, require_causal_lm
    from dataselect.scoring.models import BUNDLED_NAMES

    scorer = config.method.el2n.scorer if scorer is None else scorer
    if scorer == "proxy" or (scorer == "auto" and config.model.name.lower() in BUNDLED_NAMES):
        return True
    _, hf_config = causal_lm_config(config.model.name, config.model.trust_remote_code)
    require_causal_lm(config.model.name, hf_config)
    return False


def loss_stage_for(config: Any, cache_root: Any, pool_samples: Any, scorer: str | None = None, proxy: ProxyConfig | None = None) -> LossStage:
    """The loss stage a run's config asks for. With the proxy, it is trained first (or found in the
    cache) on a seeded random part of `pool_samples()` (an iterable of rendered Samples). scorer and
    proxy default to method.el2n's (CoLoR-Filter's prior passes method.color's)."""
    from pathlib import Path

    from dataselect.scoring.proxy import train_proxies

    stage = LossStage(config.model, config.input, config.runtime.device, config.runtime.batch_tokens)
    if not uses_proxy(config, scorer):
        return stage
    proxy = config.method.el2n.proxy if proxy is None else proxy
    path, tokenizer, samples = proxy_sample(config, proxy, pool_samples)
    seeds = [config.method.seed + i for i in range(proxy.seeds)]
    try:
        trained = train_proxies(samples, tokenizer, path, config.input, proxy, seeds, Path(cache_root), config.runtime.progress)
    except ValueError as error:
        from dataselect.errors import InputError

        raise InputError(f"input error: input.path: cannot train the proxy model: {error}") from None
    return LossStage(config.model, config.input, config.runtime.device, config.runtime.batch_tokens,
                     proxies=trained, proxy_config=proxy, tokenizer_name=config.model.name)


def proxy_sample(config: Any, proxy: ProxyConfig, pool_samples: Any) -> tuple[str, Any, list[Any]]:
    """(tokenizer path, tokenizer, the proxy's training sample): the seeded `proxy.sample` of `pool_samples()`
    a proxy (or LESS's warm-up run) trains on; an input error when the pool has no usable sample."""
    from dataselect.errors import InputError
    from dataselect.scoring.models import load_tokenizer, resolve_model_path
    from dataselect.scoring.proxy import training_sample

    path = resolve_model_path(config.model.name)
    tokenizer = load_tokenizer(path, config.model.trust_remote_code)
    samples = training_sample(pool_samples(), proxy.sample, config.method.seed)
    if not samples:
        raise InputError("input error: input.path: no usable samples to train the proxy model on")
    return path, tokenizer, samples
