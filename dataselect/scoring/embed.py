"""Pooled, L2-normalised embeddings from a model's last hidden state.

`Embedder` runs the forward pass over token-budget batches; `EmbeddingScorer` is the library object
that turns any iterable of samples (strings or records) into embeddings for someone else's pipeline.
"""
from __future__ import annotations

import logging
import time
from functools import partial
from typing import TYPE_CHECKING, Any, Callable, Iterable, Iterator

import numpy as np
import pyarrow as pa
import torch

from dataselect.config import ModelConfig, SourceConfig
from dataselect.hardware import forward_flops, linear_parameters
from dataselect.io.render import BadRecord, TextRenderer
from dataselect.kernels.pooling import pool
from dataselect.scoring.backoff import OOMBackoff
from dataselect.scoring.batching import padding_waste, token_budget_batches
from dataselect.scoring.models import LoadedModel, ModelSpec, dtype_choice, is_causal_lm, load_weights, resolve_model
from dataselect.scoring.stage import Resources, ShardOutput
from dataselect.scoring.tokenize import TokenizedTexts, TokenizerPool, encoder_for

if TYPE_CHECKING:
    from dataselect.io.samples import Sample


logger = logging.getLogger(__name__)
# rows padded to their own length rounded up to this (batching.py): an embedding is then the same whatever
# the batch it ran in, so a saved scorer reproduces the run's stored vectors, and 8 suits tensor cores. Bit for
# bit only where the matrix kernels do not depend on the row count: in bf16 on an Intel Xeon with AMX, oneDNN's
# do (a 1536 -> 384 layer gives a row other bits at 64 rows than at 1,024), and a row's embedding can move by
# about 1e-3 with its batch; fixed 1,024-row calls pinned it in a one-off check, but made the bf16 forward about 20% slower
WIDTH_STEP = 8


class Embedder:
    """Forward + pooling for one loaded model. Produces [n, d] float32 rows, unit L2 norm."""

    def __init__(self, loaded: LoadedModel) -> None:
        self.loaded = loaded
        self.model = loaded.model
        self.device = loaded.device
        self.pad_id = loaded.tokenizer.pad_token_id if loaded.tokenizer.pad_token_id is not None else 0
        self.real_tokens = 0
        self.padded_tokens = 0
        self.linear_params = linear_parameters(self.model)  # for the model FLOPs of each forward
        self.model_flops = 0  # 2 x linear parameters x real tokens, over every forward so far
        self.forward_seconds = 0.0  # wall time inside the model's forward (synchronised on CUDA)
        self.backoff = OOMBackoff(self.device, loaded.dtype)  # the same CUDA out-of-memory halving as the loss forward
        self._tokenizer_pool: TokenizerPool | None = None

    auto_class = "AutoModel"  # the transformers class the weights load as (a subclass: a model with its head)

    @classmethod
    def from_config(cls, model: ModelConfig, device: str = "auto") -> "Embedder":
        spec = resolve_model(model.name, model.pooling, model.max_length, model.dtype, device, model.trust_remote_code)
        return cls(load_weights(spec, None, cls.auto_class))

    @property
    def dim(self) -> int:
        return int(self.model.config.hidden_size)

    @property
    def max_batch_tokens(self) -> int | None:
        """Padded tokens per batch that fit, once a CUDA out-of-memory has been seen (else None)."""
        return self.backoff.max_batch_tokens

    def tokenizer_pool(self, num_workers: int) -> TokenizerPool:
        """One worker pool per embedder, reused by every source it embeds (workers start once)."""
        if self._tokenizer_pool is None or self._tokenizer_pool.num_workers != num_workers:
            self.close()
            self._tokenizer_pool = TokenizerPool(self.loaded.tokenizer, self.loaded.max_length, num_workers)
        return self._tokenizer_pool

    def close(self) -> None:
        if self._tokenizer_pool is not None:
            self._tokenizer_pool.close()
            self._tokenizer_pool = None

    def embed_tokens(
        self, tokens: TokenizedTexts, batch_tokens: int, on_batch: Callable[[int, int], None] | None = None
    ) -> np.ndarray:
        """Embeddings of tokenised texts in their input order: [n, d] float32.

        `on_batch(docs, tokens)` is called after each forward batch (for progress bars)."""
        out = np.empty((len(tokens), self.dim), dtype=np.float32)  # [n, d]
        batches = token_budget_batches(tokens.lengths, batch_tokens, WIDTH_STEP)
        real, padded = padding_waste(tokens.lengths, batches)
        self.real_tokens += real
        self.padded_tokens += padded
        for batch in batches:
            width = batch.padded_length
            out[batch.indices] = self.backoff.run(partial(self._forward, tokens, width=width), batch.indices, width)
            if on_batch is not None:
                on_batch(len(batch.indices), int(tokens.lengths[batch.indices].sum()))
        return out

    @torch.inference_mode()
    def _forward(self, tokens: TokenizedTexts, indices: np.ndarray, width: int) -> np.ndarray:
        """`dim` floats per row [b, dim] float32 of one padded batch (a CUDA out-of-memory propagates to the back-off)."""
        ids, mask = tokens.padded(indices, self.pad_id, width)  # [b, T] each
        input_ids = torch.from_numpy(ids).to(self.device, non_blocking=True)
        attention_mask = torch.from_numpy(mask).to(self.device, non_blocking=True)
        start = time.perf_counter()
        hidden = self.model_outputs(input_ids, attention_mask)  # [b, T, H] (or what a subclass reads out)
        if hidden.is_cuda:
            torch.cuda.synchronize(hidden.device)  # the forward's own time, not the pooling's after it
        self.forward_seconds += time.perf_counter() - start
        self.model_flops += forward_flops(self.linear_params, int(mask.sum()))
        return self.read_out(hidden, attention_mask).float().cpu().numpy()

    def model_outputs(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """The timed part of a batch: the model's forward. [b, T] ids and mask -> [b, T, H] last hidden state"""
        return self.model(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state

    def read_out(self, outputs: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """model_outputs -> one row per sample: the pooled unit embedding. [b, T, H] -> [b, H] float32"""
        return pool(outputs, attention_mask, self.loaded.pooling, normalize=True)


class EmbedStage:
    """The embedding score stage: tokenise a shard, forward it in token-budget batches, pool.

    Stored per shard: `emb` [n, d] float16 unit vectors, and the columns n_tokens and truncated."""

    kind = "embeddings"
    resources = Resources(gpu=True)
    token_unit = "tokens"
    array, array_dtype = "emb", np.float16  # what a shard stores of the forward's rows: unit vectors, halved

    def __init__(self, model: ModelConfig, device: str, batch_tokens: int) -> None:
        self.spec: ModelSpec = resolve_model(model.name, model.pooling, model.max_length, model.dtype, device, model.trust_remote_code)
        # what the manifest records of the dtype: the one the model runs in, and why (auto's choice on this machine)
        self.dtype_choice = {"dtype": str(self.spec.dtype).removeprefix("torch."), "dtype_why": dtype_choice(model.dtype, self.spec.device)[1]}
        self.batch_tokens = batch_tokens
        self.embedder: Embedder | None = None
        self.encoder: Any = None
        self.forward_type: type[Embedder] = Embedder  # what one forward batch returns (a subclass: a rater's logits)
        self._reader_encoder: Any = None  # prepare's tokenizer (the reader thread's)

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "embedder": None, "encoder": None, "_reader_encoder": None}  # weights load in each worker

    @property
    def tokenizer(self) -> Any:
        return self.spec.tokenizer

    @property
    def dim(self) -> int:
        return int(self.spec.hf_config.hidden_size)

    def identity(self) -> dict[str, Any]:
        return {**self.spec.identity(), "padded_width_step": WIDTH_STEP}

    def setup(self, device: str | None) -> None:
        self.embedder = self.forward_type(load_weights(self.spec, device, self.forward_type.auto_class))
        self.encoder = self.make_encoder()

    def make_encoder(self) -> Any:
        """texts -> what the forward takes: TokenizedTexts cut at the model's max_length."""
        return encoder_for(self.spec.tokenizer, self.spec.max_length)

    def prepare(self, samples: list[Sample]) -> tuple[TokenizedTexts, float]:
        """Tokenise a shard where it is read (the loop's reader thread): (tokens, seconds). Its own
        encoder, so that it never shares a tokenizer with `score` running in another thread."""
        if self._reader_encoder is None:
            self._reader_encoder = self.make_encoder()
        start = time.perf_counter()
        tokens = self._reader_encoder([s.text for s in samples])
        return tokens, time.perf_counter() - start

    def score(self, samples: list[Sample], prepared: tuple[TokenizedTexts, float] | None = None) -> ShardOutput:
        if prepared is None:
            start = time.perf_counter()
            prepared = self.encoder([s.text for s in samples]), time.perf_counter() - start
        tokens, tokenize_seconds = prepared
        embedder = self.embedder
        before = (embedder.padded_tokens, embedder.model_flops, embedder.forward_seconds)
        embeddings = embedder.embed_tokens(tokens, self.batch_tokens)  # [n, d] float32
        return ShardOutput(
            columns={"n_tokens": pa.array(tokens.lengths, pa.int64()), "truncated": pa.array(tokens.truncated, pa.bool_())},
            arrays={self.array: embeddings.astype(self.array_dtype)},
            counters={
                "tokens": int(tokens.lengths.sum()), "padded_tokens": embedder.padded_tokens - before[0],
                # the manifest's MFU: model FLOPs of this shard's forwards, and the seconds they took
                "model_flops": embedder.model_flops - before[1], "forward_seconds": round(embedder.forward_seconds - before[2], 6),
                "tokenize_seconds": round(tokenize_seconds, 6),
            },
        )

    def close(self) -> None:
        self.embedder = None


class EmbeddingScorer:
    """Library entry point: embeddings for an iterable of samples, in order.

    >>> scorer = EmbeddingScorer()                       # all-MiniLM-L6-v2, offline
    >>> vectors = scorer.embed(["a text", {"prompt": "q", "response": "a"}])   # [2, 384] float32

    Strings are embedded as they are; dicts are rendered like `input.*` records (messages, prompt/response
    or text fields). Memory stays bounded by `window` samples when using `embed_batches`.
    """

    def __init__(
        self,
        model: str = ModelConfig().name,
        pooling: str = "auto",
        max_length: int | None = None,
        device: str = "auto",
        dtype: str = "auto",
        batch_tokens: int = 16384,
        num_workers: int = 0,
        window: int = 4096,
        source: SourceConfig | None = None,
    ) -> None:
        self.embedder = Embedder.from_config(
            ModelConfig(name=model, pooling=pooling, max_length=max_length, dtype=dtype), device
        )
        self.renderer = TextRenderer(source or SourceConfig(), self.embedder.loaded.tokenizer, is_causal_lm(self.embedder.model.config))
        self.batch_tokens = batch_tokens
        self.window = window
        self.pool = self.embedder.tokenizer_pool(num_workers)

    @property
    def pooling(self) -> str:
        return self.embedder.loaded.pooling

    def _text(self, sample: str | dict, number: int) -> str:
        """A string as it is; a record rendered like an `input.*` record ({"text": s} gives s itself)."""
        if isinstance(sample, str):
            return sample
        if not isinstance(sample, dict):
            raise ValueError(f"cannot embed sample {number}: {type(sample).__name__} {sample!r:.40}; "
                             "a sample is a string or a record (a dict with text, prompt/response or messages)")
        try:
            return self.renderer.render(sample)
        except BadRecord as error:
            raise ValueError(f"cannot embed sample {number}: {error}") from None

    def embed_batches(self, samples: Iterable[str | dict]) -> Iterator[np.ndarray]:
        """Yields [<=window, d] float32 blocks in input order; the next window is tokenised meanwhile."""
        iterator = enumerate(samples)

        def next_window() -> list[str]:
            return [self._text(s, number) for _, (number, s) in zip(range(self.window), iterator)]

        texts = next_window()
        pending = self.pool.submit(texts)
        while texts:
            tokens = pending.result()
            texts = next_window()
            pending = self.pool.submit(texts)
            yield self.embedder.embed_tokens(tokens, self.batch_tokens)

    def embed(self, samples: Iterable[str | dict]) -> np.ndarray:
        blocks = list(self.embed_batches(samples))
        return np.concatenate(blocks) if blocks else np.zeros((0, self.embedder.dim), dtype=np.float32)

    def close(self) -> None:
        self.embedder.close()

    def __enter__(self) -> "EmbeddingScorer":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
