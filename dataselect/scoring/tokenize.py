"""Tokenisation in worker processes, overlapped with the model's forward pass.

Workers get the fast tokenizer's Rust backend (picklable, and it needs no transformers import, so a
worker starts in well under a second) and return flat int32 ids with per-text lengths, which pickle
cheaply. `submit` returns a future so the caller can tokenise the next shard while the model runs.
"""
from __future__ import annotations

import multiprocessing
import os
from concurrent.futures import Future, ProcessPoolExecutor
from typing import Any, Sequence

import numpy as np

CHUNK_TEXTS = 256  # texts per worker task: large enough to amortise pickling, small enough to balance

_worker_backend: Any = None


def _init_worker(backend: Any, max_length: int) -> None:
    global _worker_backend
    os.environ["TOKENIZERS_PARALLELISM"] = "false"  # the process pool is the parallelism
    backend.no_padding()
    backend.enable_truncation(max_length)
    _worker_backend = backend


def _encode_with_backend(backend: Any, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    encodings = backend.encode_batch(list(texts), add_special_tokens=True)
    lengths = np.fromiter((len(e.ids) for e in encodings), dtype=np.int64, count=len(encodings))
    flat = np.fromiter((i for e in encodings for i in e.ids), dtype=np.int32, count=int(lengths.sum()))
    return flat, lengths


def _encode_in_worker(texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    return _encode_with_backend(_worker_backend, texts)


class TokenizedTexts:
    """Token ids of a list of texts, stored flat: ids of text i are flat[offsets[i]:offsets[i+1]]."""

    def __init__(self, flat: np.ndarray, lengths: np.ndarray) -> None:
        self.flat = flat  # [sum(lengths)] int32
        self.lengths = lengths  # [n] int64
        self.offsets = np.concatenate([[0], np.cumsum(lengths)])  # [n + 1]

    def __len__(self) -> int:
        return len(self.lengths)

    def padded(self, indices: np.ndarray, pad_id: int, width: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Right-padded ids and attention mask for the given texts: ([b, width] int64, [b, width] int64)."""
        width = width or int(self.lengths[indices].max(initial=1))
        ids = np.full((len(indices), width), pad_id, dtype=np.int64)  # [b, width]
        mask = np.zeros((len(indices), width), dtype=np.int64)  # [b, width]
        for row, i in enumerate(indices):
            n = int(self.lengths[i])
            ids[row, :n] = self.flat[self.offsets[i] : self.offsets[i] + n]
            mask[row, :n] = 1
        return ids, mask


class TokenizerPool:
    """Tokenises texts with `num_workers` processes (0: in this process)."""

    def __init__(self, tokenizer: Any, max_length: int, num_workers: int = 1) -> None:
        self.tokenizer = tokenizer
        self.max_length = max_length
        self.num_workers = num_workers
        backend = getattr(tokenizer, "_tokenizer", None) if getattr(tokenizer, "is_fast", False) else None
        self._executor: ProcessPoolExecutor | None = None
        self._local_backend = None
        if backend is not None:
            if num_workers > 0:
                self._executor = ProcessPoolExecutor(
                    max_workers=num_workers,
                    mp_context=multiprocessing.get_context("spawn"),  # fork after torch threads is unsafe
                    initializer=_init_worker,
                    initargs=(backend, max_length),
                )
            else:
                import copy

                self._local_backend = copy.deepcopy(backend)
                self._local_backend.no_padding()
                self._local_backend.enable_truncation(max_length)

    def _encode_here(self, texts: Sequence[str]) -> TokenizedTexts:
        if self._local_backend is not None:
            return TokenizedTexts(*_encode_with_backend(self._local_backend, texts))
        # slow (Python) tokenizers: no Rust backend to ship to workers
        ids = self.tokenizer(list(texts), truncation=True, max_length=self.max_length)["input_ids"]
        lengths = np.array([len(x) for x in ids], dtype=np.int64)
        flat = np.fromiter((t for x in ids for t in x), dtype=np.int32, count=int(lengths.sum()))
        return TokenizedTexts(flat, lengths)

    def submit(self, texts: Sequence[str]) -> "Future[TokenizedTexts]":
        """Start tokenising; `.result()` gives a TokenizedTexts in input order."""
        if self._executor is None or not texts:
            future: Future[TokenizedTexts] = Future()
            future.set_result(self._encode_here(texts) if texts else TokenizedTexts(np.zeros(0, np.int32), np.zeros(0, np.int64)))
            return future
        chunks = [texts[i : i + CHUNK_TEXTS] for i in range(0, len(texts), CHUNK_TEXTS)]
        parts = [self._executor.submit(_encode_in_worker, chunk) for chunk in chunks]
        combined: Future[TokenizedTexts] = Future()

        def _combine(_: Future) -> None:
            if combined.done() or not all(p.done() for p in parts):
                return
            try:
                results = [p.result() for p in parts]
                combined.set_result(
                    TokenizedTexts(np.concatenate([r[0] for r in results]), np.concatenate([r[1] for r in results]))
                )
            except BaseException as error:  # noqa: BLE001 - surfaced to the caller by .result()
                if not combined.done():
                    combined.set_exception(error)

        for part in parts:
            part.add_done_callback(_combine)
        return combined

    def tokenize(self, texts: Sequence[str]) -> TokenizedTexts:
        return self.submit(texts).result()

    def close(self) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=True, cancel_futures=True)
            self._executor = None

    def __enter__(self) -> "TokenizerPool":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
