"""Per-sample loss scores with a causal LM: mean-token EL2N and mean-token cross-entropy over the
tokens a sample's label mask counts (scoring/loss_masks.py), from the model's last hidden state
through the EL2N kernel's chunked LM head (dataselect.kernels.el2n): the [B, T, V] logits are never
built.

`load_causal_lm` loads any Hugging Face causal LM (Hub name or local path) with its LM head; a model
that is not a causal LM is a config error. `LossScorer` runs token-budget batches under the shared
CUDA out-of-memory back-off. The trained proxy (scoring/proxy.py) is scored by the same code.
"""
from __future__ import annotations

import copy
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from dataselect.config import ModelConfig, SourceConfig
from dataselect.errors import ConfigError
from dataselect.io.render import BadRecord
from dataselect.kernels.el2n import lm_head_el2n_and_loss
from dataselect.scoring.backoff import OOMBackoff
from dataselect.scoring.batching import token_budget_batches
from dataselect.scoring.loss_masks import counted_tokens, response_spans, shifted_labels, token_window
from dataselect.scoring.models import is_causal_lm, load_tokenizer, resolve_device, resolve_dtype, resolve_max_length, resolve_model_path

logger = logging.getLogger(__name__)

IGNORE = -100


def causal_lm_config(name: str, trust_remote_code: bool = False) -> tuple[str, Any]:
    """(resolved path, HF config) of a model, without its weights (cheap: for identities and checks)."""
    from transformers import AutoConfig

    path = resolve_model_path(name)
    local = Path(path).exists()
    try:
        return path, AutoConfig.from_pretrained(path, local_files_only=local, trust_remote_code=trust_remote_code)
    except (OSError, ValueError) as error:
        raise ConfigError(f"config error: model.name: cannot load {name!r}: {str(error).splitlines()[0]}") from None


def require_causal_lm(name: str, hf_config: Any) -> None:
    """A config error unless `hf_config` is a causal LM's (the loss-based methods score with one)."""
    if not is_causal_lm(hf_config):
        kind = getattr(hf_config, "model_type", None) or "unknown"
        raise ConfigError(
            f"config error: model.name: {name!r} ({kind}) is not a causal LM; loss scores need a model with a "
            "causal LM head (or leave model.name at the default to train the proxy model)"
        )


@dataclass
class LoadedCausalLM:
    path: str
    tokenizer: Any
    model: torch.nn.Module  # an *ForCausalLM model
    max_length: int
    device: torch.device
    dtype: torch.dtype


def load_causal_lm(model: ModelConfig, device: str = "auto") -> LoadedCausalLM:
    """Tokenizer + causal LM with its head, in eval mode on the chosen device."""
    from transformers import AutoModelForCausalLM
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    path, hf_config = causal_lm_config(model.name, model.trust_remote_code)
    require_causal_lm(model.name, hf_config)
    local = Path(path).exists()
    if local:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
    torch_device = resolve_device(device)
    torch_dtype = resolve_dtype(model.dtype, torch_device, cpu_bf16=False)  # a causal LM may be fine-tuned: fp32 on every CPU
    tokenizer = load_tokenizer(path, model.trust_remote_code)
    try:
        lm = AutoModelForCausalLM.from_pretrained(
            path, config=hf_config, dtype=torch_dtype, local_files_only=local, trust_remote_code=model.trust_remote_code
        )
    except (OSError, ValueError) as error:
        raise ConfigError(f"config error: model.name: cannot load {model.name!r} as a causal LM: {str(error).splitlines()[0]}") from None
    lm.eval().to(torch_device)
    max_length = resolve_max_length(model.max_length, path, tokenizer, hf_config)
    return LoadedCausalLM(path, tokenizer, lm, max_length, torch_device, torch_dtype)


# ----------------------------------------------------------------------------------------------
# samples -> token windows and labels
# ----------------------------------------------------------------------------------------------


@dataclass
class PreparedSample:
    """One sample ready for the forward: token ids [n] and next-token labels [n] (IGNORE where not counted)."""

    ids: np.ndarray
    labels: np.ndarray
    truncated: bool
    error: str | None = None  # bad input: why nothing of this sample can be scored
    target_bytes: int = 0  # UTF-8 bytes of the text the counted tokens cover (SampleEncoder count_bytes only)


class SampleEncoder:
    """Tokenises rendered samples with character offsets and builds their label masks. Picklable.

    id_map [vocab] (optional) maps tokenizer ids to the model's ids (the proxy's reduced vocabulary).
    count_bytes: also count each sample's target bytes (the denominator of bits per byte)."""

    def __init__(self, tokenizer: Any, source: SourceConfig, max_length: int, id_map: np.ndarray | None = None,
                 count_bytes: bool = False) -> None:
        if not getattr(tokenizer, "is_fast", False):
            raise ConfigError("config error: model.name: loss scores need a fast tokenizer (character offsets for the label masks)")
        self.backend = copy.deepcopy(tokenizer._tokenizer)
        self.backend.no_padding()
        self.backend.no_truncation()
        self.eos_token = getattr(tokenizer, "eos_token", None)
        self.source = source
        self.max_length = max_length
        self.id_map = id_map
        self.count_bytes = count_bytes

    def encode(self, texts: Sequence[str], records: Sequence[dict[str, Any]]) -> list[PreparedSample]:
        encodings = self.backend.encode_batch(list(texts), add_special_tokens=True)
        return [self._prepare(text, record, e.ids, e.offsets) for text, record, e in zip(texts, records, encodings)]

    def _prepare(self, text: str, record: dict[str, Any], ids: list[int], offsets: list[tuple[int, int]]) -> PreparedSample:
        empty = np.zeros(0, np.int64)
        try:
            spans = response_spans(record, text, self.source, self.eos_token)
        except BadRecord as error:
            return PreparedSample(empty, empty, False, str(error))
        counted = counted_tokens(np.asarray(offsets, np.int64), spans)  # [n]
        start, end = token_window(counted, self.max_length)
        window_ids = np.asarray(ids[start:end], np.int64)  # [w]
        if self.id_map is not None:
            window_ids = self.id_map[np.minimum(window_ids, len(self.id_map) - 1)]
        labels = shifted_labels(window_ids, counted[start:end], IGNORE)  # [w]
        truncated = end - start < len(ids)
        if not (labels != IGNORE).any():
            reason = "no tokens to score" if spans is None else "no response tokens to score"
            where = f" within model.max_length={self.max_length} tokens" if truncated and counted.any() else ""
            return PreparedSample(empty, empty, truncated, reason + where)
        counted_bytes = target_bytes(text, np.asarray(offsets, np.int64)[start:end], labels != IGNORE) if self.count_bytes else 0
        return PreparedSample(window_ids, labels, truncated, target_bytes=counted_bytes)


def target_bytes(text: str, offsets: np.ndarray, predicts: np.ndarray) -> int:
    """UTF-8 bytes of the text the predicted tokens cover: each target token owns the characters from the
    end of the token before it to its own end (the space before a word goes with the word).
    offsets [w, 2] character spans of the window's tokens; predicts [w] bool: position t predicts token t + 1."""
    byte_end = np.concatenate([[0], np.cumsum([len(c.encode("utf-8", "surrogatepass")) for c in text])])  # [chars + 1]
    ends = byte_end[np.maximum.accumulate(offsets[:, 1])]  # [w] byte end of each token (special tokens: no text)
    owned = np.diff(ends)  # [w - 1] bytes token t + 1 adds after token t
    return int(owned[predicts[:-1]].sum())


# ----------------------------------------------------------------------------------------------
# forward
# ----------------------------------------------------------------------------------------------


def lm_parts(model: torch.nn.Module) -> tuple[torch.nn.Module, torch.Tensor, torch.Tensor | None]:
    """(base model giving the final hidden states, LM-head weight [V, H], bias [V] or None)."""
    head = model.get_output_embeddings()
    if head is None or not isinstance(getattr(head, "weight", None), torch.Tensor):
        raise ConfigError("config error: model.name: the model has no linear LM head to score with")
    return model.base_model, head.weight, getattr(head, "bias", None)


class LossScorer:
    """Per-sample mean EL2N, mean loss and counted tokens for prepared samples, in token-budget batches."""

    def __init__(self, model: torch.nn.Module, device: torch.device, dtype: torch.dtype, pad_id: int, batch_tokens: int) -> None:
        self.model = model
        self.base, self.weight, self.bias = lm_parts(model)
        self.device = device
        self.pad_id = pad_id
        self.batch_tokens = batch_tokens
        self.backoff = OOMBackoff(device, dtype)
        self.padded_tokens = 0

    @torch.inference_mode()
    def _forward(self, samples: Sequence[PreparedSample], rows: np.ndarray, width: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        ids = np.full((len(rows), width), self.pad_id, np.int64)  # [b, T]
        labels = np.full((len(rows), width), IGNORE, np.int64)  # [b, T]
        mask = np.zeros((len(rows), width), np.int64)  # [b, T]
        for r, i in enumerate(rows):
            n = len(samples[i].ids)
            ids[r, :n], labels[r, :n], mask[r, :n] = samples[i].ids, samples[i].labels, 1
        input_ids = torch.from_numpy(ids).to(self.device)
        attention_mask = torch.from_numpy(mask).to(self.device)
        hidden = self.base(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state  # [b, T, H]
        el2n, loss, n_tokens = lm_head_el2n_and_loss(hidden, self.weight, torch.from_numpy(labels).to(self.device), self.bias, IGNORE)
        return el2n.cpu().numpy(), loss.cpu().numpy(), n_tokens.cpu().numpy()

    def score(self, samples: Sequence[PreparedSample]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """-> el2n [n] float32, loss [n] float32, n_tokens [n] int64 (NaN, NaN, 0 for samples with an error)."""
        n = len(samples)
        el2n = np.full(n, np.nan, np.float32)
        loss = np.full(n, np.nan, np.float32)
        n_tokens = np.zeros(n, np.int64)
        good = np.array([s.error is None for s in samples], bool)
        good_rows = np.flatnonzero(good)
        lengths = np.array([len(samples[i].ids) for i in good_rows], np.int64)
        for batch in token_budget_batches(lengths, self.batch_tokens):
            rows = good_rows[batch.indices]
            self.padded_tokens += batch.padded_tokens
            width = batch.padded_length
            e, c, k = self.backoff.run(lambda part, width=width: self._forward(samples, part, width), rows, width)
            el2n[rows], loss[rows], n_tokens[rows] = e, c, k
        return el2n, loss, n_tokens


def check_head_matches_logits(model: torch.nn.Module, device: torch.device, dtype: torch.dtype, vocab: int) -> None:
    """The scores take the LM head straight from the last hidden state; a model whose logits are more
    than that (soft-capping, a logit scale) would be scored wrongly, so one short probe compares the
    model's own loss with ours before any shard is scored."""
    generator = torch.Generator().manual_seed(0)
    ids = torch.randint(0, vocab, (1, 16), generator=generator).to(device)  # [1, 16]
    with torch.inference_mode():
        expected = float(model(input_ids=ids, labels=ids).loss)
        base, weight, bias = lm_parts(model)
        hidden = base(input_ids=ids).last_hidden_state  # [1, 16, H]
        labels = torch.cat([ids[:, 1:], torch.full((1, 1), IGNORE, device=device)], dim=1)  # [1, 16]
        _, got, _ = lm_head_el2n_and_loss(hidden, weight, labels, bias, IGNORE)
    tolerance = 1e-3 if dtype == torch.float32 else 3e-2
    if not abs(float(got[0]) - expected) <= tolerance * max(1.0, abs(expected)):
        raise ConfigError(
            f"config error: model.name: this model's logits are not its LM head applied to the last hidden state "
            f"(its loss {expected:.4f}, ours {float(got[0]):.4f}); it cannot be scored without full logits"
        )
