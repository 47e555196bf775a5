"""DSIR's streaming score phase: a source -> a shard store of each document's bucket lists, featurised
in worker processes. The store is keyed by input, rendering and featuriser, so fitting, weighting, the
KL metric and a later run with another target never featurise the pool again. Each shard's bucket
lists are one .npy (uint16 when num_buckets <= 65,536, so about 4 bytes per word): [unigram block |
bigram block], with each document's length and n-gram count in the shard's metadata.
"""
from __future__ import annotations

import functools
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator, Sequence

import numpy as np

from dataselect.scoring.ngram import NgramFeatures

if TYPE_CHECKING:
    import pyarrow as pa

    from dataselect.config import RuntimeConfig, SourceConfig
    from dataselect.io.render import TextRenderer
    from dataselect.io.shards import ShardStore
    from dataselect.io.sources import Sample
    from dataselect.stats import SourceStats

FEATURE_FORMAT = 1  # bump when the stored bucket lists change meaning
CHUNK_TEXTS = 512  # texts per worker task: large enough for the vectorised parts to pay off


# ------------------------------------------------------------------------------------------------
# worker processes
# ------------------------------------------------------------------------------------------------

class _Prepare:
    """Picklable `featurizer.prepare`, the work a featuriser worker does."""

    def __init__(self, featurizer: Any) -> None:
        self.featurizer = featurizer

    def __call__(self, texts: Sequence[str]) -> Any:
        return self.featurizer.prepare(texts)


def _concat_prepared(parts: list[Any], dtype: np.dtype) -> Any:
    if all(isinstance(p, NgramFeatures) for p in parts):
        return NgramFeatures.concat(parts, dtype)
    return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])


class FeaturizerPool:
    """Runs a featuriser over lists of texts in `num_workers` processes (0: in this process)."""

    def __init__(self, featurizer: Any, num_workers: int) -> None:
        from dataselect.executors.local import ChunkedWorkerPool

        self.featurizer = featurizer
        combine = functools.partial(_concat_prepared, dtype=featurizer.dtype)
        self._pool = ChunkedWorkerPool(_Prepare(featurizer), combine, num_workers, chunk_texts=CHUNK_TEXTS)

    def submit(self, texts: Sequence[str]) -> "Future[Any]":
        """Start featurising; `.result()` is what `finish` turns into NgramFeatures, in input order."""
        return self._pool.submit(texts)

    def finish(self, prepared: Any) -> NgramFeatures:
        return self.featurizer.finish(prepared)

    def close(self) -> None:
        self._pool.close()

    def __enter__(self) -> "FeaturizerPool":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# ------------------------------------------------------------------------------------------------
# streaming score phase: source -> shard store of bucket lists
# ------------------------------------------------------------------------------------------------


@dataclass
class NgramSource:
    store: ShardStore
    stats: SourceStats
    cached: str  # "hit", "partial" (resumed) or "miss"
    docs: int = 0  # documents (chunks) featurised by this run
    units: int = 0  # words or tokens featurised by this run
    seconds: float = 0.0


def chunk_sample(sample: Sample, chunk_words: int | None) -> list[tuple[Sample, int]]:
    """The sample's chunks (`word_chunks`): a document no longer than `chunk_words` stays whole
    (chunk 0, same id); chunk c of a longer one gets id#c."""
    from dataselect.io.render import word_chunks

    chunks = word_chunks(sample.text, chunk_words) if chunk_words else [sample.text]
    if len(chunks) == 1:
        return [(sample, 0)]
    return [(replace(sample, id=f"{sample.id}#{c}", text=text), c) for c, text in enumerate(chunks)]


def _features_path(store: ShardStore, index: int) -> Path:
    return store.root / f"shard-{index:06d}.ngrams.npy"


def read_features(store: ShardStore, index: int) -> NgramFeatures:
    meta = store.read_meta(index, ["n_ngrams", "length"])
    flat = np.load(_features_path(store, index), mmap_mode="r")
    return NgramFeatures.from_stored(flat, meta.column("length").to_numpy(), meta.column("n_ngrams").to_numpy())


def iter_features(store: ShardStore) -> Iterator[NgramFeatures]:
    for index in range(store.num_shards):
        yield read_features(store, index)


def _shard_meta(samples: list[Sample], chunks: list[int], features: NgramFeatures, fields: dict[str, str], chunked: bool, files: bool) -> pa.Table:
    """The columns every store has (id, position, text_hash, preview, record fields), plus the
    length (words or tokens) and n-gram count of each document."""
    import pyarrow as pa

    from dataselect.io.shards import sample_columns

    columns = {
        **sample_columns(samples, fields),
        "length": pa.array(features.lengths, pa.int64()),
        "n_ngrams": pa.array(features.n_ngrams, pa.int64()),
    }
    if files:
        columns["file"] = pa.array([s.file for s in samples], pa.string())
    if chunked:
        columns["chunk"] = pa.array(chunks, pa.int64())
    return pa.table(columns)


def featurize_source(
    source: SourceConfig,
    role: str,
    renderer: TextRenderer,
    runtime: RuntimeConfig,
    cache_root: Path,
    pool: FeaturizerPool,
    chunk_words: int | None = None,
    fields: dict[str, str] | None = None,
    files: bool = False,
) -> NgramSource:
    """Featurise every sample of `source` into a shard store (resumable; a finished store is a cache
    hit for any later run with the same input, rendering and featuriser). `fields` copies record
    fields into metadata columns ({column: field}); `files` keeps each sample's file label."""
    from tqdm import tqdm

    from dataselect.scoring.stream import ShardStream
    from dataselect.stats import SourceStats

    featurizer = pool.featurizer
    fields = fields or {}
    extra = {"fields": fields, "files": files, "featurizer": featurizer.identity(), "chunk_words": chunk_words}
    from dataselect.io.shards import keyed_store, source_key

    store = keyed_store(cache_root, "ngrams", {"format": FEATURE_FORMAT, **source_key(source, renderer, runtime.shard_size), **extra})
    if store.is_complete():
        return NgramSource(store, store.total_stats(role), cached="hit")

    result = NgramSource(store, SourceStats(role), cached="miss")
    progress = tqdm(desc=f"featurise {role} ({featurizer.kind})", unit=" docs", disable=not runtime.progress, mininterval=0.5, smoothing=0.1)
    start = time.perf_counter()

    def chunk_and_submit(samples: list[Sample]) -> tuple[list[Sample], tuple[list[int], Future]]:
        if not chunk_words:
            return samples, ([0] * len(samples), pool.submit([s.text for s in samples]))
        pieces = [piece for s in samples for piece in chunk_sample(s, chunk_words)]
        samples, chunks = [p[0] for p in pieces], [p[1] for p in pieces]
        return samples, (chunks, pool.submit([s.text for s in samples]))

    shards = ShardStream(source, role, renderer, store, runtime.shard_size, chunk_and_submit)
    writer = ThreadPoolExecutor(max_workers=1)  # file writes overlap with reading the next shard
    written: Future | None = None
    try:
        for shard in shards:
            chunks, future = shard.work
            features = pool.finish(future.result())
            meta = _shard_meta(shard.samples, chunks, features, fields, bool(chunk_words), files)
            if written is not None:
                written.result()  # one shard in flight bounds memory and keeps the done records in order
            written = writer.submit(_write_shard, store, shard.index, features, meta, shard.stats)
            result.docs += len(shard.samples)
            result.units += int(features.lengths.sum())
            progress.update(len(shard.samples))
            progress.set_postfix_str(f"{result.units / max(time.perf_counter() - start, 1e-9):,.0f} {'words' if featurizer.kind == 'reference' else 'tokens'}/s", refresh=False)
        if written is not None:
            written.result()
        num_shards = shards.total_shards()
    finally:
        writer.shutdown(wait=True)
        progress.close()
    store.mark_complete(num_shards, {"role": role})
    result.stats = store.total_stats(role)
    result.cached = "partial" if shards.resumed else "miss"
    result.seconds = time.perf_counter() - start
    return result


def _write_shard(store: ShardStore, index: int, features: NgramFeatures, meta: pa.Table, stats: SourceStats) -> None:
    """Features first, then the store's metadata and done record (written last: the shard is finished)."""
    from dataselect.io.shards import atomic_write, save_npy

    atomic_write(_features_path(store, index), lambda temp: save_npy(temp, features.stored()))
    store.write_shard(index, meta, stats)
