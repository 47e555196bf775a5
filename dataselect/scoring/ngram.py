"""DSIR's featurisers (METHODS.md section 2): a batch of documents -> the hashed buckets of their
unigrams and bigrams (NgramFeatures).

  reference  lowercase -> WordPunct words (`\\w+|[^\\w\\s]+`) -> sha256(n-gram) mod num_buckets,
             bit-compatible with the `data-selection` package (1.0.3, with the nltk it installs).
             Speed without changing the output: ASCII documents go through an equivalent bytes
             regex, word and bigram hashes are memoised, and the rest is numpy.
  tokens     the model tokenizer's ids (for BERT-style tokenizers through the exact, vectorised memo
             of `token_memo`, 14x the tokenizer's own encode_batch on one core) with the
             hash of `dataselect.kernels.ngram`: the kernel itself on CUDA, a numpy twin checked
             against it on the CPU. No string is hashed at all.

The score phase that runs them over a source into a shard store is `ngram_store`; the fit and the log
importance weights are `importance`.
"""
from __future__ import annotations

import hashlib
import itertools
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import regex

from dataselect.hardware import one_cpu_thread
from dataselect.scoring.token_memo import ChunkMemo

# The featuriser worker processes import this module: it imports none of the store, source and
# progress-bar modules (pyarrow and tqdm among them).


# NLTK's WordPunctTokenizer is this pattern with findall. nltk >= 3.10 compiles it with the `regex`
# engine (nltk.redos), whose \w also takes combining marks ('i\u0307brahim' is one word; stdlib `re` makes
# three), so the same engine is used here; `regex` comes with transformers.
WORDPUNCT = regex.compile(r"\w+|[^\w\s]+", regex.UNICODE | regex.MULTILINE | regex.DOTALL)
# The same split of ASCII text, on bytes: about 2x faster, and sha256 wants bytes anyway. On ASCII it
# agrees with WORDPUNCT (tested on every ASCII character; \x1c-\x1f are punctuation to `regex`, though
# whitespace to stdlib str `re`).
WORDPUNCT_ASCII = re.compile(rb"\w+|[^\w\s]+")


def bucket_dtype(num_buckets: int) -> np.dtype:
    """The smallest integer dtype that holds a bucket number below `num_buckets`."""
    return np.dtype(np.uint16) if num_buckets <= 1 << 16 else np.dtype(np.int32) if num_buckets <= 1 << 31 else np.dtype(np.int64)


def hash_bucket(ngram: str | bytes, num_buckets: int = 10_000) -> int:
    """The package's `hash_buckets`: int(sha256(utf8).hexdigest(), 16) % num_buckets."""
    data = ngram.encode("utf-8") if isinstance(ngram, str) else ngram
    return int.from_bytes(hashlib.sha256(data).digest(), "big") % num_buckets


def wordpunct_words(text: str) -> list[bytes]:
    """Lowercased WordPunct tokens as UTF-8 bytes (what gets hashed)."""
    lowered = text.lower()
    if lowered.isascii():  # checked after lower(): the Kelvin sign lowers to an ASCII 'k'
        return WORDPUNCT_ASCII.findall(lowered.encode("ascii"))
    return [w.encode("utf-8") for w in WORDPUNCT.findall(lowered)]


# ------------------------------------------------------------------------------------------------
# features of a batch of documents
# ------------------------------------------------------------------------------------------------


@dataclass
class NgramFeatures:
    """The n-gram buckets of n documents in two flat blocks: every unigram (documents back to back),
    then every bigram (likewise). Document i owns lengths[i] unigrams and n_bigrams[i] bigrams."""

    unigrams: np.ndarray  # [W] uint16/int32, W = lengths.sum()
    bigrams: np.ndarray  # [Wb] uint16/int32, Wb = n_bigrams.sum()
    lengths: np.ndarray  # [n] int64: words (reference) or tokens (tokens); the min-length filter reads it
    n_bigrams: np.ndarray  # [n] int64: max(L - 1, 0), or 0 in unigram mode

    @classmethod
    def from_pairs(cls, unigrams: np.ndarray, pairs: np.ndarray | None, lengths: np.ndarray, dtype: np.dtype) -> "NgramFeatures":
        """unigrams [W] and the bucket of every adjacent pair [W-1] (None: unigram mode); the pairs
        that straddle two documents are dropped."""
        lengths = np.asarray(lengths, np.int64)
        if pairs is None:
            return cls(unigrams.astype(dtype), np.zeros(0, dtype), lengths, np.zeros(len(lengths), np.int64))
        return cls(unigrams.astype(dtype), pairs[doc_internal_pairs(lengths)].astype(dtype), lengths, np.maximum(lengths - 1, 0))

    @property
    def n_ngrams(self) -> np.ndarray:
        return self.lengths + self.n_bigrams  # [n]: 2L-1 for L >= 1 (the package's sum of counts)

    def __len__(self) -> int:
        return len(self.lengths)

    @classmethod
    def concat(cls, parts: Sequence["NgramFeatures"], dtype: np.dtype) -> "NgramFeatures":
        empty = np.zeros(0, dtype)
        return cls(
            np.concatenate([empty] + [p.unigrams for p in parts]).astype(dtype, copy=False),
            np.concatenate([empty] + [p.bigrams for p in parts]).astype(dtype, copy=False),
            np.concatenate([np.zeros(0, np.int64)] + [p.lengths for p in parts]),
            np.concatenate([np.zeros(0, np.int64)] + [p.n_bigrams for p in parts]),
        )

    def stored(self) -> np.ndarray:
        """The shard file's content: [unigram block | bigram block]. [W + Wb]"""
        return np.concatenate([self.unigrams, self.bigrams])

    @classmethod
    def from_stored(cls, flat: np.ndarray, lengths: np.ndarray, n_ngrams: np.ndarray) -> "NgramFeatures":
        W = int(lengths.sum())
        return cls(flat[:W], flat[W:], lengths, n_ngrams - lengths)


def doc_internal_pairs(lengths: np.ndarray) -> np.ndarray:
    """[W-1] bool: the adjacent word pair (w, w+1) lies inside one document."""
    W = int(lengths.sum())
    inside = np.ones(max(W - 1, 0), bool)
    starts = np.cumsum(lengths)[:-1]  # first word of documents 1..n-1
    starts = starts[(starts >= 1) & (starts <= W - 1)]
    inside[starts - 1] = False
    return inside


def segment_sums(values: np.ndarray, sizes: np.ndarray) -> np.ndarray:
    """Sum of consecutive runs of `sizes` columns. values [T, M], sizes [n] (sum M) -> [n, T] (0 for empty runs)"""
    out = np.zeros((len(sizes), values.shape[0]), np.float64)  # [n, T]
    nonempty = sizes > 0
    if nonempty.any():
        starts = np.cumsum(sizes) - sizes  # [n]
        out[nonempty] = np.add.reduceat(values, starts[nonempty], axis=1).T  # reduceat would misread empty runs
    return out


def number_new(keys: list, numbers: list, index: dict, known: list) -> None:
    """Fill the -1 entries of `numbers` (looked up from `keys`) with new numbers, in order of first
    appearance, recording each new key in `known`. The scans are C-level list.index calls on ints,
    so a text with a few new words costs little more than one with none."""
    position = -1
    while True:
        try:
            position = numbers.index(-1, position + 1)
        except ValueError:
            return
        key = keys[position]
        number = index.get(key)
        if number is None:
            number = index[key] = len(known)
            known.append(key)
        numbers[position] = number


class ReferenceFeaturizer:
    """WordPunct + sha256 n-grams, bit-compatible with `data_selection.hashed_ngram_dsir`.

    Word and bigram hashes are memoised per process (they are pure functions, so the cache never
    changes an output); the caches are bounded and start over when full."""

    kind = "reference"
    max_vocab = 2_000_000  # distinct words remembered (about 150 MB of dict)
    max_bigrams = 8_000_000  # distinct bigrams remembered (16 bytes each in the sorted arrays)

    def __init__(self, num_buckets: int = 10_000, ngrams: int = 2) -> None:
        self.num_buckets = num_buckets
        self.ngrams = ngrams
        self.dtype = bucket_dtype(num_buckets)
        self._reset()

    def _reset(self) -> None:
        self._vocab: dict[bytes, int] = {}
        self._words: list[bytes] = []
        self._word_bucket = np.zeros(0, np.int64)  # [V] bucket of each vocabulary word
        self._pair_keys = np.zeros(0, np.int64)  # [P] sorted (id_a << 32 | id_b)
        self._pair_buckets = np.zeros(0, np.int64)  # [P]
        self._pending: dict[int, int] = {}  # recent bigrams, merged into the sorted arrays in bulk

    def __getstate__(self) -> dict[str, Any]:
        return {"num_buckets": self.num_buckets, "ngrams": self.ngrams}  # caches stay in their process

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(**state)

    def identity(self) -> dict[str, Any]:
        return {"features": "reference", "num_buckets": self.num_buckets, "ngrams": self.ngrams, "tokenizer": "wordpunct", "hash": "sha256"}

    def _word_ids(self, words: list[bytes]) -> list[int]:
        try:
            return list(map(self._vocab.__getitem__, words))  # the common case: every word seen before
        except KeyError:
            ids = list(map(self._vocab.get, words, itertools.repeat(-1)))
            number_new(words, ids, self._vocab, self._words)
            return ids

    def _bigram_buckets(self, keys: np.ndarray) -> np.ndarray:
        """Bucket of each bigram key (id_a << 32 | id_b). [P] -> [P] int64"""
        unique, inverse = np.unique(keys, return_inverse=True)  # [U], [P]
        values = np.full(len(unique), -1, np.int64)  # [U]
        if len(self._pair_keys):
            pos = np.minimum(np.searchsorted(self._pair_keys, unique), len(self._pair_keys) - 1)
            hit = self._pair_keys[pos] == unique
            values[hit] = self._pair_buckets[pos[hit]]
        missing = np.flatnonzero(values < 0)
        if len(missing):
            pending, words, nb, sha256 = self._pending, self._words, self.num_buckets, hashlib.sha256
            found = []
            for key in unique[missing].tolist():
                bucket = pending.get(key)
                if bucket is None:  # hash_bucket, inlined: this loop runs once per new bigram
                    bucket = int.from_bytes(sha256(words[key >> 32] + b" " + words[key & 0xFFFFFFFF]).digest(), "big") % nb
                    pending[key] = bucket
                found.append(bucket)
            values[missing] = found
            if len(pending) >= max(1 << 16, len(self._pair_keys) // 4):
                self._merge_pending()  # geometric merges keep the sorted-array upkeep O(1) per bigram
        return values[inverse]

    def _merge_pending(self) -> None:
        keys = np.fromiter(self._pending.keys(), np.int64, len(self._pending))
        buckets = np.fromiter(self._pending.values(), np.int64, len(self._pending))
        all_keys = np.concatenate([self._pair_keys, keys])
        order = np.argsort(all_keys, kind="stable")
        self._pair_keys, self._pair_buckets = all_keys[order], np.concatenate([self._pair_buckets, buckets])[order]
        self._pending = {}

    def prepare(self, texts: Sequence[str]) -> NgramFeatures:
        """Worker side: everything (hashing strings needs no device)."""
        return self.featurize(texts)

    def finish(self, prepared: NgramFeatures) -> NgramFeatures:
        return prepared

    def featurize(self, texts: Sequence[str]) -> NgramFeatures:
        if len(self._vocab) > self.max_vocab or len(self._pair_keys) + len(self._pending) > self.max_bigrams:
            self._reset()
        ids: list[int] = []
        lengths = np.zeros(len(texts), np.int64)  # [n]
        for i, text in enumerate(texts):
            word_ids = self._word_ids(wordpunct_words(text))
            lengths[i] = len(word_ids)
            ids.extend(word_ids)
        known = len(self._word_bucket)
        if len(self._words) > known:
            fresh = self._words[known:]
            self._word_bucket = np.concatenate([self._word_bucket, np.fromiter((hash_bucket(w, self.num_buckets) for w in fresh), np.int64, len(fresh))])
        word_ids = np.asarray(ids, np.int64)  # [W]
        unigrams = self._word_bucket[word_ids].astype(self.dtype)  # [W]
        if self.ngrams < 2:
            return NgramFeatures.from_pairs(unigrams, None, lengths, self.dtype)
        keys = ((word_ids[:-1] << 32) | word_ids[1:])[doc_internal_pairs(lengths)]  # [Wb] pairs inside a document
        bigrams = self._bigram_buckets(keys).astype(self.dtype)  # [Wb]
        return NgramFeatures(unigrams, bigrams, lengths, np.maximum(lengths - 1, 0))


MASK32 = 0xFFFFFFFF


class KernelHashTwin:
    """The n-gram hash of `dataselect.kernels.ngram` in numpy, for the CPU path: the kernel module's
    torch reference costs about 75 ns per token on one CPU thread (its int64 ops and the [B, 2T-1]
    masks), this about 5, and it runs in the featuriser workers without importing torch there.
    `verified` checks it against the kernel itself on a fixed sample before it is used, so a change
    to the kernel's hash can never make the two disagree silently (the kernel is used instead)."""

    def __init__(self, mix: int, multiplier: int, salt: int) -> None:
        self.mix, self.multiplier, self.salt = mix, multiplier, salt

    def _mix32(self, x: np.ndarray) -> np.ndarray:
        """The kernel's 32-bit finaliser on int64 values in [0, 2^32); every product stays below 2^59."""
        x = ((x >> 16) ^ x) * self.mix & MASK32
        x = ((x >> 16) ^ x) * self.mix & MASK32
        return (x >> 16) ^ x

    def buckets(self, flat: np.ndarray, num_buckets: int) -> tuple[np.ndarray, np.ndarray]:
        """(unigram bucket of each id [W], bigram bucket of each adjacent pair [W-1]) of one row."""
        ids = np.asarray(flat, np.int64) & MASK32  # [W]
        mixed = self._mix32(ids)  # [W]
        pairs = self._mix32(((mixed[:-1] * self.multiplier) & MASK32) ^ ids[1:] ^ self.salt)  # [W-1]
        return mixed % num_buckets, pairs % num_buckets

    @classmethod
    def verified(cls, num_buckets: int) -> "KernelHashTwin | None":
        import torch

        from dataselect.kernels import ngram as kernel

        twin = cls(kernel.MIX, kernel.BIGRAM_MUL, kernel.BIGRAM_SALT)
        rng = np.random.default_rng(0)
        sample = np.concatenate([rng.integers(-(2**40), 2**40, 4096), np.arange(-3, 300), [2**32 - 1, 2**32, 2**63 - 1]])  # [S]
        expected, _ = kernel.ngram_bucket_ids(torch.from_numpy(sample)[None, :], torch.tensor([len(sample)]), num_buckets)
        unigrams, pairs = twin.buckets(sample, num_buckets)
        return twin if np.array_equal(np.concatenate([unigrams, pairs]), expected[0].numpy()) else None


class TokenFeaturizer:
    """Hashed unigrams and bigrams of the model tokenizer's ids (no special tokens, no truncation),
    with the hash of `dataselect.kernels.ngram`.

    CPU: the workers tokenise and hash (KernelHashTwin, checked against the kernel at start-up).
    CUDA: the workers tokenise and the main process hashes with the kernel on the GPU (`finish`)."""

    kind = "tokens"

    def __init__(self, backend: Any, num_buckets: int = 10_000, ngrams: int = 2, device: str = "cpu", name: str = "", memo: bool = True) -> None:
        import copy

        self.backend = copy.deepcopy(backend)
        self.backend.no_truncation()
        self.backend.no_padding()
        self.num_buckets = num_buckets
        self.ngrams = ngrams
        self.device = device
        self.name = name
        self.memo = memo
        self.dtype = bucket_dtype(num_buckets)
        self._memo: ChunkMemo | None = None
        self._memo_built = False  # built on first use: a copy that is only unpickled never pays for it (seconds)
        self.twin = KernelHashTwin.verified(num_buckets) if device == "cpu" else None

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_memo"], state["_memo_built"] = None, False  # rebuilt empty in each process
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)

    def _chunk_memo(self) -> ChunkMemo | None:
        if self.memo and not self._memo_built:
            self._memo, self._memo_built = ChunkMemo.for_backend(self.backend), True
        return self._memo

    def identity(self) -> dict[str, Any]:
        """Cache key; the kernel module's source stands for its hash."""
        import importlib.util

        kernel_file = importlib.util.find_spec("dataselect.kernels.ngram").origin
        return {
            "features": "tokens", "num_buckets": self.num_buckets, "ngrams": self.ngrams, "tokenizer": self.name,
            "tokenizer_sha256": hashlib.sha256(self.backend.to_str().encode()).hexdigest()[:16],
            "kernel_sha256": hashlib.sha256(Path(kernel_file).read_bytes()).hexdigest()[:16],
        }

    def _encode_whole(self, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        encodings = self.backend.encode_batch(list(texts), add_special_tokens=False)
        lengths = np.fromiter((len(e.ids) for e in encodings), np.int64, len(encodings))
        return np.fromiter(itertools.chain.from_iterable(e.ids for e in encodings), np.int64, int(lengths.sum())), lengths

    def tokenize(self, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """(flat ids [W] int64, lengths [n] int64), exactly the tokenizer's ids without special tokens."""
        memo = self._chunk_memo()
        if memo is None:
            return self._encode_whole(texts)
        flat, lengths, whole = memo.tokenize(texts)
        if not whole.any():
            return flat, lengths
        accepted = ~whole
        parts = [(flat, lengths[accepted]), self._encode_whole([t for t, w in zip(texts, whole) if w])]
        lengths[whole] = parts[1][1]
        # interleave the two groups' ids back into text order: text i's ids come from its group's run
        group_start = [np.cumsum(p[1]) - p[1] for p in parts]  # start of each text within its group
        position = np.zeros(len(texts), np.int64)  # [n] start of each text in `both`
        position[accepted], position[whole] = group_start[0], group_start[1] + len(flat)
        both = np.concatenate([flat, parts[1][0]])
        offsets = np.cumsum(lengths) - lengths  # [n] start of each text in the output
        gather = np.repeat(position - offsets, lengths) + np.arange(int(lengths.sum()))  # [W]
        return both[gather], lengths

    def prepare(self, texts: Sequence[str]) -> NgramFeatures | tuple[np.ndarray, np.ndarray]:
        """Worker side: features on the CPU; token ids (int32, half the pickle) for the GPU."""
        flat, lengths = self.tokenize(texts)
        if self.twin is not None:
            unigrams, pairs = self.twin.buckets(flat, self.num_buckets)
            return NgramFeatures.from_pairs(unigrams, pairs if self.ngrams >= 2 else None, lengths, self.dtype)
        return flat.astype(np.int32), lengths

    def finish(self, prepared: NgramFeatures | tuple[np.ndarray, np.ndarray]) -> NgramFeatures:
        return prepared if isinstance(prepared, NgramFeatures) else self.hash(*prepared)

    def featurize(self, texts: Sequence[str]) -> NgramFeatures:
        return self.finish(self.prepare(texts))

    def hash(self, flat: np.ndarray, lengths: np.ndarray) -> NgramFeatures:
        """With the kernel. The whole batch is one row, so no padding is ever built; the bigrams that
        straddle two documents are dropped afterwards."""
        import torch

        from dataselect.kernels.ngram import ngram_bucket_ids

        W = len(flat)
        if W == 0:
            return NgramFeatures.from_pairs(np.zeros(0, np.int64), np.zeros(0, np.int64), lengths, self.dtype)
        with one_cpu_thread(self.device):  # elementwise int64 ops on one row: a second thread only spins (20x slower measured)
            ids = torch.from_numpy(np.asarray(flat, np.int64)).to(self.device)[None, :]  # [1, W]
            buckets, _ = ngram_bucket_ids(ids, torch.tensor([W], device=self.device), self.num_buckets)  # [1, 2W-1]
            buckets = buckets[0].to(torch.int32).cpu().numpy()  # [2W-1]: W unigrams, then W-1 pairs (w, w+1)
        return NgramFeatures.from_pairs(buckets[:W], buckets[W:] if self.ngrams >= 2 else None, lengths, self.dtype)


def featurizer_settings(options: Any, model_name: str) -> dict[str, Any]:
    """What a saved scorer records of a featuriser (`featurizer_from_settings` rebuilds it): its kind, buckets,
    n-gram order, and for token features the tokenizer's model name."""
    return {"features": options.features, "num_buckets": options.num_buckets, "ngrams": options.ngrams,
            "tokenizer": model_name if options.features == "tokens" else None}


def featurizer_from_settings(settings: dict[str, Any], device: str) -> ReferenceFeaturizer | TokenFeaturizer:
    """The n-gram featuriser a saved DSIR or BETR scorer describes (its settings), on `device`."""
    from types import SimpleNamespace

    return make_featurizer(SimpleNamespace(**settings), settings["tokenizer"] or "", device)


def make_featurizer(options: Any, model_name: str, device: str) -> ReferenceFeaturizer | TokenFeaturizer:
    """The featuriser `method.dsir.features` asks for; tokens mode loads the model's tokenizer offline."""
    if options.features == "reference":
        return ReferenceFeaturizer(options.num_buckets, options.ngrams)
    from dataselect.errors import ConfigError
    from dataselect.scoring.models import load_tokenizer, resolve_device, resolve_model_path

    path = resolve_model_path(model_name)
    if Path(path).exists():
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
    tokenizer = load_tokenizer(path)
    if not getattr(tokenizer, "is_fast", False):
        raise ConfigError(f"config error: method.dsir.features: 'tokens' needs a fast tokenizer; {model_name!r} has none")
    return TokenFeaturizer(tokenizer._tokenizer, options.num_buckets, options.ngrams, str(resolve_device(device)), model_name)
