"""Tokenisation in worker processes, overlapped with the model's forward pass.

Workers get the fast tokenizer's Rust backend (picklable, and it needs no transformers import, so a
worker starts in well under a second) and return flat int32 ids with per-text lengths, which pickle
cheaply. `submit` returns a future so the caller can tokenise the next shard while the model runs.
"""
from __future__ import annotations

import copy
from concurrent.futures import Future
from typing import Any, Sequence

import numpy as np

from dataselect.scoring.workers import ChunkedWorkerPool


class TokenizedTexts:
    """Token ids of a list of texts, stored flat: ids of text i are flat[offsets[i]:offsets[i+1]]."""

    def __init__(self, flat: np.ndarray, lengths: np.ndarray, truncated: np.ndarray | None = None) -> None:
        self.flat = flat  # [sum(lengths)] int32
        self.lengths = lengths  # [n] int64
        self.offsets = np.concatenate([[0], np.cumsum(lengths)])  # [n + 1]
        # [n] bool: the text was cut at max_length
        self.truncated = truncated if truncated is not None else np.zeros(len(lengths), bool)

    def __len__(self) -> int:
        return len(self.lengths)

    @classmethod
    def concat(cls, parts: list["TokenizedTexts"]) -> "TokenizedTexts":
        if len(parts) == 1:
            return parts[0]
        return cls(np.concatenate([p.flat for p in parts]), np.concatenate([p.lengths for p in parts]), np.concatenate([p.truncated for p in parts]))

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


class BackendEncoder:
    """Picklable: a fast tokenizer's Rust backend set to truncate at max_length (None: whole texts), with
    special tokens (or, `special_tokens=False`, the bare content)."""

    def __init__(self, backend: Any, max_length: int | None, special_tokens: bool = True) -> None:
        self.backend = copy.deepcopy(backend)
        self.backend.no_padding()
        if max_length is None:
            self.backend.no_truncation()
        else:
            self.backend.enable_truncation(max_length)
        self.special_tokens = special_tokens

    def __call__(self, texts: Sequence[str]) -> TokenizedTexts:
        encodings = self.backend.encode_batch(list(texts), add_special_tokens=self.special_tokens)
        lengths = np.fromiter((len(e.ids) for e in encodings), dtype=np.int64, count=len(encodings))
        flat = np.fromiter((i for e in encodings for i in e.ids), dtype=np.int32, count=int(lengths.sum()))
        truncated = np.fromiter((bool(e.overflowing) for e in encodings), dtype=bool, count=len(encodings))  # cut-off tokens
        return TokenizedTexts(flat, lengths, truncated)


class SlowTokenizerEncoder:
    """Python (slow) tokenizers have no Rust backend to ship to workers: they run in this process."""

    def __init__(self, tokenizer: Any, max_length: int | None, special_tokens: bool = True) -> None:
        self.tokenizer = tokenizer
        self.max_length = max_length
        self.special_tokens = special_tokens

    def __call__(self, texts: Sequence[str]) -> TokenizedTexts:
        if not texts:
            return TokenizedTexts(np.zeros(0, np.int32), np.zeros(0, np.int64))
        encoded = self.tokenizer(list(texts), truncation=self.max_length is not None, max_length=self.max_length,
                                 return_overflowing_tokens=self.max_length is not None, add_special_tokens=self.special_tokens)
        ids, truncated = encoded["input_ids"], np.zeros(len(texts), bool)
        if "overflow_to_sample_mapping" in encoded:  # a row per max_length piece: keep each text's first
            mapping = np.asarray(encoded["overflow_to_sample_mapping"])  # [rows] text of each row
            first = np.flatnonzero(np.diff(mapping, prepend=-1) != 0)  # [n]
            ids, truncated = [ids[row] for row in first], np.bincount(mapping, minlength=len(texts)) > 1
        elif "num_truncated_tokens" in encoded:
            truncated = np.asarray(encoded["num_truncated_tokens"]) > 0
        lengths = np.array([len(x) for x in ids], dtype=np.int64)
        flat = np.fromiter((t for x in ids for t in x), dtype=np.int32, count=int(lengths.sum()))
        return TokenizedTexts(flat, lengths, truncated)


def encoder_for(tokenizer: Any, max_length: int | None, special_tokens: bool = True) -> "BackendEncoder | SlowTokenizerEncoder":
    """texts -> TokenizedTexts, truncated at max_length (None: whole) with special tokens (unless told not);
    fast tokenizers' Rust backend."""
    if getattr(tokenizer, "is_fast", False):
        return BackendEncoder(tokenizer._tokenizer, max_length, special_tokens)
    return SlowTokenizerEncoder(tokenizer, max_length, special_tokens)


class TokenizerPool:
    """Tokenises texts with `num_workers` processes (0: in this process)."""

    def __init__(self, tokenizer: Any, max_length: int, num_workers: int = 1) -> None:
        self.num_workers = num_workers
        encoder = encoder_for(tokenizer, max_length)
        if isinstance(encoder, SlowTokenizerEncoder):
            num_workers = 0  # a Python tokenizer has no Rust backend to ship to workers
        self._pool = ChunkedWorkerPool(encoder, TokenizedTexts.concat, num_workers)

    def submit(self, texts: Sequence[str]) -> "Future[TokenizedTexts]":
        """Start tokenising; `.result()` gives a TokenizedTexts in input order."""
        return self._pool.submit(texts)

    def tokenize(self, texts: Sequence[str]) -> TokenizedTexts:
        return self.submit(texts).result()

    def close(self) -> None:
        self._pool.close()

    def __enter__(self) -> "TokenizerPool":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
