"""The rater stage (kind "ratings"): a Hugging Face sequence-classification or regression model's logits
for every sample (METHODS.md 9.1-9.2), through the embedding stage's machinery: token-budget batches
of length-sorted samples, the dtype and the CUDA out-of-memory back-off (scoring/embed.py's Embedder,
whose forward this overrides), and the same tokenisation in the loop's reader thread.

Stored per shard: `logits` [n, L] float32 (every head's raw output, so a change of read-out or
weights never rescores the pool) and the columns n_tokens and truncated.

Padding: an encoder's head reads its own positions (BERT's [CLS] is position 0 under right padding).
A decoder's head (`score`, on every position) is read at the last position the attention mask marks,
not where transformers looks for the first pad id, so a genuine pad-id token or left padding cannot move it.
`readout` turns the logits into one score: a regression head's value, a classification head's
expected label value or one label's probability, several heads summed with weights.
"""
from __future__ import annotations

from typing import Any

import numpy as np
import torch

from dataselect.config import ModelConfig
from dataselect.errors import ConfigError
from dataselect.kernels.pooling import pool
from dataselect.scoring.embed import Embedder, EmbedStage
from dataselect.scoring.models import is_causal_lm

RATER_FORMAT = 1  # bump when the stored logits change meaning
READOUTS = ("auto", "value", "expected", "probability")


class Rater(Embedder):
    """A sequence-classification model's logits [n, L] float32 per token-budget batch (the Embedder's loop)."""

    auto_class = "AutoModelForSequenceClassification"

    @property
    def dim(self) -> int:
        return int(self.model.config.num_labels)

    def model_outputs(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        if reads_last_token(self.model):  # the decoder's trunk; its head is applied at the last real token below
            return self.model.base_model(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state  # [b, T, H]
        return self.model(input_ids=input_ids, attention_mask=attention_mask).logits  # [b, L]

    def read_out(self, outputs: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        if reads_last_token(self.model):
            last = pool(outputs, attention_mask, "last")  # [b, H] the last real token's state, left or right padding
            return self.model.score(last.to(self.model.score.weight.dtype)).float()  # [b, L]
        return outputs.float()  # [b, L]


def reads_last_token(model: Any) -> bool:
    """A decoder classifier whose `score` head transformers applies at the last non-pad token (Llama, Qwen, GPT-2, ...)."""
    return is_causal_lm(model.config) and isinstance(getattr(model, "score", None), torch.nn.Linear)


class RaterStage(EmbedStage):
    """The embedding stage with a sequence-classification head: stores every head's logits."""

    kind = "ratings"
    array, array_dtype = "logits", np.float32

    def __init__(self, model: ModelConfig, device: str, batch_tokens: int) -> None:
        super().__init__(model, device, batch_tokens)
        self.forward_type = Rater
        if not getattr(self.spec.hf_config, "num_labels", 0):
            raise ConfigError(f"config error: model.name: {model.name!r} declares no labels: not a sequence-classification model")

    def identity(self) -> dict[str, Any]:
        return super().identity() | {"head": "sequence-classification", "rater_format": RATER_FORMAT, "labels": self.label_names()}

    def label_names(self) -> list[str]:
        """The heads' names in output order (config.id2label)."""
        return head_names(self.spec.hf_config)


def head_names(hf_config: Any) -> list[str]:
    """A model's label names in output order; LABEL_i where it names none."""
    names = getattr(hf_config, "id2label", None) or {}
    return [str(names.get(i, names.get(str(i), f"LABEL_{i}"))) for i in range(int(hf_config.num_labels))]


def resolve_readout(readout: str, hf_config: Any) -> str:
    """`auto`: a regression head (one output, or problem_type regression) gives its value; a classifier its expected label value."""
    if readout != "auto":
        return readout
    regression = int(hf_config.num_labels) == 1 or getattr(hf_config, "problem_type", None) == "regression"
    return "value" if regression else "expected"


def readout_columns(logits: np.ndarray, readout: str, names: list[str], label: str | None = None,
                    label_values: list[float] | None = None) -> tuple[np.ndarray, list[str]]:
    """([n, C] float64, their names): a value per head (value), the expected label value (expected: softmax
    over the labels times label_values, default 0..L-1), or one label's probability (probability: `label`,
    default the last)."""
    logits = np.asarray(logits, np.float64)  # [n, L]
    if readout == "value":
        return logits, list(names)
    shifted = logits - logits.max(axis=1, keepdims=True)  # a stable softmax
    probs = np.exp(shifted) / np.exp(shifted).sum(axis=1, keepdims=True)  # [n, L]
    if readout == "expected":
        values = np.arange(len(names), dtype=np.float64) if label_values is None else np.asarray(label_values, np.float64)
        if len(values) != len(names):
            raise ConfigError(f"config error: method.quality.label_values: {len(values)} values for the model's {len(names)} labels {names}")
        return (probs @ values)[:, None], ["expected"]
    index = len(names) - 1 if label is None else label_index(label, names)
    return probs[:, index : index + 1], [names[index]]


def label_index(label: str, names: list[str]) -> int:
    """A label given by name, or by its position as text ("2")."""
    if label in names:
        return names.index(label)
    if label.isdigit() and int(label) < len(names):
        return int(label)
    raise ConfigError(f"config error: method.quality.label: {label!r} is not one of the model's labels {names}")


def combine(columns: np.ndarray, names: list[str], weights: dict[str, float] | None) -> np.ndarray:
    """One score per row: the only column, or the weighted sum of the columns `weights` names. [n, C] -> [n]"""
    if weights is None:
        if columns.shape[1] != 1:
            raise ConfigError(f"config error: method.quality.weights: the rater has {columns.shape[1]} heads {names}; "
                              "say how they combine, e.g. {" + f"{names[0]}: 1.0" + "}")
        return columns[:, 0]
    unknown = sorted(set(weights) - set(names))
    if unknown:
        raise ConfigError(f"config error: method.quality.weights: {unknown} are not among the rater's heads {names}")
    vector = np.array([weights.get(name, 0.0) for name in names], np.float64)  # [C]
    return columns @ vector
