"""The streaming score phase for one source: read -> render -> tokenise (workers) -> embed -> shard files.

Shards are fixed runs of `runtime.shard_size` input records, so their boundaries do not depend on
batch size or worker count. The store folder is keyed by everything that determines its content
(input files, fields, rendering, model, pooling, max length), so it doubles as the embedding cache:
a later run over the same pool and model reuses it, and a killed run resumes at the first unfinished shard.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
from tqdm import tqdm

from dataselect.config import RuntimeConfig, SourceConfig
from dataselect.io.render import TextRenderer
from dataselect.io.shards import ShardStore, keyed_store, sample_columns, source_key
from dataselect.io.sources import Sample
from dataselect.scoring.stream import ShardStream
from dataselect.stats import SourceStats

if TYPE_CHECKING:  # torch loads only for methods that embed
    from dataselect.scoring.embed import Embedder

STORE_FORMAT = 2  # bump when shard contents change meaning (2: the `truncated` column)


@dataclass
class ScoredSource:
    store: ShardStore
    stats: SourceStats
    cached: str  # "hit" (nothing recomputed), "partial" (resumed) or "miss"
    docs: int = 0  # samples embedded by this run
    tokens: int = 0  # real tokens embedded by this run
    padded_tokens: int = 0
    seconds: float = 0.0


def store_key(source: SourceConfig, renderer: TextRenderer, runtime: RuntimeConfig, embedder: "Embedder | None", extra: dict[str, Any]) -> dict[str, Any]:
    return {
        "format": STORE_FORMAT,
        **source_key(source, renderer, runtime.shard_size),
        "embedder": embedder.identity() if embedder is not None else None,
        **extra,
    }


def _meta_table(samples: list[Sample], n_tokens: np.ndarray, truncated: np.ndarray, fields: dict[str, str]) -> pa.Table:
    return pa.table({**sample_columns(samples, fields), "n_tokens": pa.array(n_tokens, pa.int64()), "truncated": pa.array(truncated, pa.bool_())})


def score_source(
    source: SourceConfig,
    role: str,
    renderer: TextRenderer,
    runtime: RuntimeConfig,
    cache_root: Path,
    embedder: "Embedder | None" = None,
    fields: dict[str, str] | None = None,
) -> ScoredSource:
    """Embed every sample of `source` into a shard store (or, without an embedder, record ids and
    hashes only). `fields` copies record fields into metadata columns ({column: field})."""
    fields = fields or {}
    store = keyed_store(cache_root, "embeddings" if embedder else "samples", store_key(source, renderer, runtime, embedder, {"fields": fields}))
    if store.is_complete():
        return ScoredSource(store, store.total_stats(role), cached="hit")

    progress = tqdm(desc=f"embed {role}" if embedder else f"read {role}", unit=" docs", disable=not runtime.progress, mininterval=0.5, smoothing=0.1)
    pool = embedder.tokenizer_pool(runtime.num_workers) if embedder else None
    result = ScoredSource(store, SourceStats(role), cached="miss")
    start = time.perf_counter()
    real_before, padded_before = (embedder.real_tokens, embedder.padded_tokens) if embedder else (0, 0)

    def start_tokenising(samples: list[Sample]) -> tuple[list[Sample], Any]:
        return samples, pool.submit([s.text for s in samples]) if pool else None

    def on_batch(docs: int, tokens: int) -> None:
        result.docs += docs
        result.tokens += tokens
        progress.update(docs)
        elapsed = max(time.perf_counter() - start, 1e-9)
        progress.set_postfix_str(f"{result.tokens / elapsed:,.0f} tok/s", refresh=False)

    shards = ShardStream(source, role, renderer, store, runtime.shard_size, start_tokenising)
    try:
        for shard in shards:
            if embedder is not None:
                tokens = shard.work.result()
                embeddings = embedder.embed_tokens(tokens, runtime.batch_tokens, on_batch)
                n_tokens, truncated = tokens.lengths, tokens.truncated
            else:
                embeddings, n_tokens, truncated = None, np.zeros(len(shard.samples), np.int64), np.zeros(len(shard.samples), bool)
                on_batch(len(shard.samples), 0)
            store.write_shard(shard.index, _meta_table(shard.samples, n_tokens, truncated, fields), shard.stats, embeddings)
        num_shards = shards.total_shards()
    finally:
        progress.close()
    store.mark_complete(num_shards, {"role": role})
    result.stats = store.total_stats(role)
    result.cached = "partial" if shards.resumed else "miss"
    result.seconds = time.perf_counter() - start
    if embedder is not None:
        result.padded_tokens = embedder.padded_tokens - padded_before
        assert embedder.real_tokens - real_before == result.tokens
    return result
