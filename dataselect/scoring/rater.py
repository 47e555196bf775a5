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

Chunks (`chunk_tokens`, QuRating's annotator): a document's content tokens (no special tokens) are cut
into consecutive chunks of chunk_tokens, each framed by the special tokens the tokenizer puts around a
lone text, and scored as a text of its own; the document's row is then the token-weighted mean over its
chunks (weights: content tokens) of the logits and, beside them, of the softmax probabilities, so that
every read-out (linear in the one or the other) is the token-weighted mean of the chunks' read-outs.
Stored then: `logits` [n, 2L] (mean logits | mean probabilities).
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
from dataselect.scoring.tokenize import TokenizedTexts, encoder_for

RATER_FORMAT = 1  # bump when the stored logits change meaning
FRAME_PROBE = "quality"  # a text whose tokens show where the tokenizer puts its special tokens
READOUTS = ("auto", "value", "expected", "probability")


class Rater(Embedder):
    """A sequence-classification model's logits [n, L] float32 per token-budget batch (the Embedder's loop)."""

    auto_class = "AutoModelForSequenceClassification"

    @property
    def dim(self) -> int:
        return int(self.model.config.num_labels)

    def embed_tokens(self, tokens: "TokenizedTexts | ChunkedTexts", batch_tokens: int, on_batch: Any = None) -> np.ndarray:
        """[n, L] logits per text; for chunked documents, [n, 2L]: the token-weighted mean of their chunks'
        logits | of their chunks' softmax probabilities."""
        if not isinstance(tokens, ChunkedTexts):
            return super().embed_tokens(tokens, batch_tokens, on_batch)
        return chunk_means(super().embed_tokens(tokens.chunks, batch_tokens, on_batch), tokens.doc, tokens.weights, len(tokens))

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


def softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise softmax, stable for large or -inf logits. [n, L] -> [n, L] float64"""
    shifted = np.exp(logits - logits.max(axis=1, keepdims=True))
    return shifted / shifted.sum(axis=1, keepdims=True)


def chunk_means(logits: np.ndarray, doc: np.ndarray, weights: np.ndarray, n: int) -> np.ndarray:
    """Per document, the weighted mean over its chunks of the logits and of their softmax. [c, L] -> [n, 2L] float32"""
    logits = np.asarray(logits, np.float64)  # [c, L]
    rows = np.concatenate([logits, softmax(logits)], axis=1)  # [c, 2L]
    sums = np.zeros((n, rows.shape[1]))
    np.add.at(sums, doc, rows * weights[:, None])
    return (sums / np.bincount(doc, weights, minlength=n)[:, None]).astype(np.float32)


class ChunkedTexts:
    """Documents cut into framed chunks: `chunks` (TokenizedTexts, one row per chunk), `doc` [c] the document
    of each chunk, `weights` [c] its content tokens (at least 1), and per document `lengths` [n] (content
    tokens) and `truncated` [n] (never: every token is scored)."""

    def __init__(self, chunks: TokenizedTexts, doc: np.ndarray, weights: np.ndarray, lengths: np.ndarray) -> None:
        self.chunks, self.doc, self.weights, self.lengths = chunks, doc, weights, lengths
        self.truncated = np.zeros(len(lengths), bool)

    def __len__(self) -> int:
        return len(self.lengths)


class ChunkEncoder:
    """Picklable: texts -> ChunkedTexts, chunks of `chunk_tokens` content tokens framed by the tokenizer's special tokens."""

    def __init__(self, tokenizer: Any, chunk_tokens: int) -> None:
        self.content = encoder_for(tokenizer, None, special_tokens=False)
        self.prefix, self.suffix = special_frame(tokenizer)
        self.chunk_tokens = chunk_tokens

    def __call__(self, texts: list[str]) -> ChunkedTexts:
        tokens = self.content(texts)
        counts = np.maximum(1, -(-tokens.lengths // self.chunk_tokens))  # [n] chunks per document (an empty one: one empty chunk)
        doc = np.repeat(np.arange(len(texts)), counts)  # [c]
        start = tokens.offsets[doc] + self.chunk_tokens * (np.arange(len(doc)) - np.repeat(np.cumsum(counts) - counts, counts))  # [c]
        size = np.minimum(start + self.chunk_tokens, tokens.offsets[doc + 1]) - start  # [c] content tokens
        pieces = [part for s, m in zip(start, size) for part in (self.prefix, tokens.flat[s:s + m], self.suffix)]
        flat = np.concatenate(pieces).astype(np.int32) if pieces else np.zeros(0, np.int32)
        chunks = TokenizedTexts(flat, size + len(self.prefix) + len(self.suffix))
        return ChunkedTexts(chunks, doc, np.maximum(size, 1).astype(np.float64), tokens.lengths)


def special_frame(tokenizer: Any) -> tuple[np.ndarray, np.ndarray]:
    """(prefix, suffix) [int32 ids]: the special tokens the tokenizer puts before and after a lone text's content."""
    framed = list(tokenizer(FRAME_PROBE, add_special_tokens=True)["input_ids"])
    content = list(tokenizer(FRAME_PROBE, add_special_tokens=False)["input_ids"])
    at = next(i for i in range(len(framed) - len(content) + 1) if framed[i:i + len(content)] == content)
    return np.array(framed[:at], np.int32), np.array(framed[at + len(content):], np.int32)


class RaterStage(EmbedStage):
    """The embedding stage with a sequence-classification head: stores every head's logits (per chunk-averaged
    document with `chunk_tokens`)."""

    kind = "ratings"
    array, array_dtype = "logits", np.float32

    def __init__(self, model: ModelConfig, device: str, batch_tokens: int, chunk_tokens: int | None = None) -> None:
        super().__init__(model, device, batch_tokens)
        self.forward_type = Rater
        self.chunk_tokens = chunk_tokens
        if not getattr(self.spec.hf_config, "num_labels", 0):
            raise ConfigError(f"config error: model.name: {model.name!r} declares no labels: not a sequence-classification model")
        if chunk_tokens is not None:
            check_chunk_tokens(chunk_tokens, self.spec.tokenizer, self.spec.max_length)

    def identity(self) -> dict[str, Any]:
        chunks = {} if self.chunk_tokens is None else {"chunk_tokens": self.chunk_tokens}  # unchunked stores keep their key
        return super().identity() | {"head": "sequence-classification", "rater_format": RATER_FORMAT, "labels": self.label_names(), **chunks}

    def make_encoder(self) -> Any:
        return super().make_encoder() if self.chunk_tokens is None else ChunkEncoder(self.spec.tokenizer, self.chunk_tokens)

    def label_names(self) -> list[str]:
        """The heads' names in output order (config.id2label)."""
        return head_names(self.spec.hf_config)


def check_chunk_tokens(chunk_tokens: int, tokenizer: Any, max_length: int) -> None:
    """A chunk and its special tokens must fit the model's window."""
    prefix, suffix = special_frame(tokenizer)
    room = max_length - len(prefix) - len(suffix)
    if chunk_tokens > room:
        raise ConfigError(f"config error: method.quality.chunk_tokens: {chunk_tokens} tokens and the tokenizer's {len(prefix) + len(suffix)} special "
                          f"tokens exceed the model's {max_length} (model.max_length); use at most {room}")


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


def rater_scores(rows: np.ndarray, readout: str, names: list[str], label: str | None, label_values: list[float] | None,
                 weights: dict[str, float] | None) -> np.ndarray:
    """One score per row of the rater's output: [n, L] logits, or chunked documents' [n, 2L] (mean logits | mean
    probabilities). -> [n] float64"""
    rows = np.asarray(rows, np.float64)
    heads = len(names)
    logits, probs = (rows[:, :heads], rows[:, heads:]) if rows.shape[1] == 2 * heads else (rows, None)
    return combine(*readout_columns(logits, readout, names, label, label_values, probs), weights)


def readout_columns(logits: np.ndarray, readout: str, names: list[str], label: str | None = None,
                    label_values: list[float] | None = None, probs: np.ndarray | None = None) -> tuple[np.ndarray, list[str]]:
    """([n, C] float64, their names): a value per head (value), the expected label value (expected: softmax
    over the labels times label_values, default 0..L-1), or one label's probability (probability: `label`,
    default the last). `probs` [n, L]: the probabilities to use (chunked documents' means) instead of the softmax of the logits."""
    logits = np.asarray(logits, np.float64)  # [n, L]
    if readout == "value":
        return logits, list(names)
    if probs is None:
        probs = softmax(logits)  # [n, L]
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
