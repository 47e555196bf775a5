"""The one score-phase loop: a stage over a source's planned shards, on an executor.

For each source and stage: the store keyed by the source, the rendering, the stage's identity and the
copied fields (so it doubles as the cache); a finished store is a hit (its recorded bad inputs still
stop an `on_error: fail` run); otherwise every planned shard not yet done goes to the executor, whose
workers read, render, score and write it atomically, and the loop sums their counters under a progress
bar. When all shards are done the store is completed (row index, consolidated metadata).
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator

import pyarrow as pa
from tqdm import tqdm
from tqdm.contrib.logging import logging_redirect_tqdm

from dataselect.config import RuntimeConfig, SourceConfig
from dataselect.errors import ConfigError, InputError
from dataselect.io.locks import store_lock
from dataselect.io.mirror import keyed_store, open_store
from dataselect.io.plan import ShardSpec, plan_shards, source_bytes, source_is_sequential
from dataselect.io.readers import read_spec
from dataselect.io.remote import use_storage_options
from dataselect.io.render import TextRenderer
from dataselect.io.samples import Sample, to_sample
from dataselect.io.shards import VERIFY_FULL_BYTES, ShardStore, sample_columns, source_key
from dataselect.scoring.stage import ScoreStage
from dataselect.stats import BadInputPrinter, SourceStats

if TYPE_CHECKING:
    from dataselect.executors.base import Executor

STORE_FORMAT = 4  # bump when shard contents change meaning (3: planned shards, one layout for every stage; 4: file checksums)

logger = logging.getLogger(__name__)


@dataclass
class ScoredSource:
    """A source after its score phase: the store the select phase reads, and what this run did."""

    store: ShardStore
    stats: SourceStats
    cached: str  # "hit" (nothing recomputed), "partial" (resumed) or "miss"
    counters: dict[str, float] = field(default_factory=dict)  # summed over the shards this run scored
    resumed_shards: int = 0  # shards an earlier run had finished
    token_unit: str = "tokens"  # what the "tokens" counter counts (DSIR's reference features count words)
    seconds: float = 0.0  # wall time of this run's score phase for the source

    def counter(self, name: str) -> float:
        return self.counters.get(name, 0)


# ------------------------------------------------------------------------------------------------
# the worker side: one shard, read -> render -> score -> atomic write
# ------------------------------------------------------------------------------------------------

_READY: dict[str, ScoreStage] = {}  # this process's set-up stages, by identity: a model loads once per worker
_WORKER_DEVICE: list[str | None] = [None]  # the device this worker process was given (None: runtime.device)


def set_worker_device(device: str | None) -> None:
    """The device a worker process scores on (set once, when the worker starts)."""
    _WORKER_DEVICE[0] = device


def stage_token(stage: ScoreStage) -> str:
    """A stage's identity as a short hash: workers keep one set-up stage per token."""
    return hashlib.sha256(json.dumps([stage.kind, stage.identity()], sort_keys=True, default=str).encode()).hexdigest()


def ready(stage: ScoreStage) -> ScoreStage:
    """The stage set up in this process (set up now if it is the first shard of its kind here)."""
    token = stage_token(stage)
    if token not in _READY:
        stage.setup(_WORKER_DEVICE[0])
        _READY[token] = stage
    return _READY[token]


def close_ready() -> None:
    """Close every stage this process set up (its model and buffers go)."""
    for stage in _READY.values():
        stage.close()
    _READY.clear()


@dataclass
class ShardResult:
    index: int
    rows: int
    counters: dict[str, float]
    stats: SourceStats


@dataclass
class ShardTask:
    """Everything a worker needs to score shards of one source with one stage (picklable)."""

    source: SourceConfig
    role: str
    renderer: TextRenderer
    stage: ScoreStage
    fields: dict[str, str]
    store_root: str  # a local folder, or the store's URL in object storage (each worker writes its own mirror, then uploads)
    storage_options: dict[str, Any] = field(default_factory=dict)  # runtime.storage_options: a worker reads URLs with them

    def load(self, spec: ShardSpec) -> tuple[list[Sample], SourceStats, Any]:
        """Read and render one shard: its usable samples, its input counts and bad records, and what the
        stage's optional `prepare` makes of the samples (tokens), so that this work runs wherever the
        shard is read (the in-process executor's reader thread, while the previous shard is scored)."""
        use_storage_options(self.storage_options)  # this process may be a worker that never saw the run's config
        stats = SourceStats(self.role)  # the driver prints bad inputs (BadInputPrinter), grouped for the whole run
        samples = [s for s in (to_sample(r, self.source, self.renderer, stats) for r in read_spec(spec)) if s is not None]
        stage = _READY.get(stage_token(self.stage), self.stage)  # the set-up copy once there is one (its tokenizer is made)
        prepare = getattr(stage, "prepare", None)
        return samples, stats, prepare(samples) if prepare is not None else None

    def score(self, spec: ShardSpec, loaded: tuple[list[Sample], SourceStats, Any]) -> ShardResult:
        samples, stats, prepared = loaded
        start = time.perf_counter()
        stage = ready(self.stage)
        output = stage.score(samples) if prepared is None else stage.score(samples, prepared)
        rows = output.rows if output.rows is not None else samples
        columns = {**sample_columns(rows, self.fields), **{k: _arrow(v) for k, v in output.columns.items()}}
        counters = {"docs": len(rows), **output.counters, "seconds": round(time.perf_counter() - start, 6)}
        open_store(self.store_root).write_shard(spec.index, pa.table(columns), stats, output.arrays, counters)
        return ShardResult(spec.index, len(rows), counters, stats)

    def __call__(self, spec: ShardSpec) -> ShardResult:
        return self.score(spec, self.load(spec))


def _arrow(values: Any) -> pa.Array:
    return values if isinstance(values, (pa.Array, pa.ChunkedArray)) else pa.array(values)


# ------------------------------------------------------------------------------------------------
# the driver side: the loop
# ------------------------------------------------------------------------------------------------


def store_for(source: SourceConfig, renderer: TextRenderer, stage: ScoreStage, shard_size: int, cache_root: Path,
              fields: dict[str, str], cache_url: str | None = None) -> ShardStore:
    """The store folder for this source, rendering, stage and copied fields (the cache key); with `cache_url`
    (runtime.cache_dir in object storage), the store there, mirrored locally."""
    key = {"format": STORE_FORMAT, **source_key(source, renderer, shard_size), "stage": stage.kind,
           "identity": stage.identity(), "fields": fields}
    return keyed_store(cache_root, stage.kind, key, cache_url)


def _check_contract(source: SourceConfig, stats: SourceStats) -> None:
    """A store scored under `on_error: skip` may hold skipped records; a `fail` run stops at the first."""
    if source.on_error == "fail" and stats.skipped:
        first = stats.bad[0] if stats.bad else "a bad record"
        raise InputError(f"input error: {first} (recorded by an earlier run in the cache; set input.on_error: skip to skip bad samples)")


def _rescore(store: ShardStore, index: int, why: str) -> None:
    """A damaged part of a cached store: one warning naming it, and it is built again (never trusted)."""
    if index < 0:
        logger.warning("cache: %s: %s; its index is rebuilt from the shards", store.location, why)
        store.discard_index()
    else:
        logger.warning("cache: %s: shard %d is damaged (%s); scoring it again", store.location, index, why)
        store.discard(index)


def run_stage(
    source: SourceConfig,
    role: str,
    renderer: TextRenderer,
    stage: ScoreStage,
    runtime: RuntimeConfig,
    cache_root: Path,
    executor: Executor,
    fields: dict[str, str] | None = None,
) -> ScoredSource:
    """Score every planned shard of `source` with `stage` (resumable; a complete store is a cache hit).
    `fields` copies record fields into metadata columns ({column: field})."""
    fields = dict(fields or {})
    store = store_for(source, renderer, stage, runtime.shard_size, cache_root, fields, runtime.cache_url())
    with store_lock(store.root):  # a second run of the same store waits here (on a mirror: on this machine), then finds it complete
        store.remove_leftovers()
        return _fill(store, source, role, renderer, stage, runtime, executor, fields)


class TotalEstimate:
    """A progress bar's total for a source read in one pass (compressed files, a JSON array): the documents
    planned so far scaled by how far through the files on disk the planner is, capped by input.limit; the
    documents of resumed shards are left out, as the bar does not count them. None while nothing tells."""

    def __init__(self, size: int | None, limit: int | None) -> None:
        self.size, self.limit = size, limit
        self.docs = self.resumed = 0

    def planned(self, spec: ShardSpec, resumed: bool) -> int | None:
        self.docs += spec.count
        self.resumed += spec.count if resumed else 0
        total = round(self.docs * self.size / spec.read_bytes) if self.size and spec.read_bytes else None
        if self.limit is not None:
            total = min(total or self.limit, self.limit)
        return None if total is None else max(total, self.docs) - self.resumed


def _log_above(bar: tqdm) -> Any:
    """While the bar is drawn, log lines (a bad record) that would go to the terminal's streams are written
    above it, never glued onto its line; otherwise logging is left as it is."""
    root = logging.getLogger()
    console = [h for h in root.handlers if isinstance(h, logging.StreamHandler) and getattr(h, "stream", None) in (sys.stderr, sys.stdout)]
    return logging_redirect_tqdm([root]) if console and not bar.disable else contextlib.nullcontext()


def _rates(scored: ScoredSource, read: int, seconds: float) -> str:
    """The bar's postfix: tokens per second, and how many documents the stage scored where it scores a part (a sample)."""
    docs = int(scored.counters.get("docs", read))
    rate = f"{scored.counters.get('tokens', 0) / max(seconds, 1e-9):,.0f} {scored.token_unit}/s"
    return rate if docs >= read else f"{docs:,} of {read:,} scored, {rate}"


def _fill(store: ShardStore, source: SourceConfig, role: str, renderer: TextRenderer, stage: ScoreStage, runtime: RuntimeConfig,
          executor: Executor, fields: dict[str, str]) -> ScoredSource:
    """run_stage's work on a store it holds: a verified cache hit, or the shards not yet (or no longer) whole."""
    writable = store.writable()
    # a read-only store cannot be repaired, so it is always checked in full before it is trusted
    checksums = not writable or runtime.verify_cache == "full" or (runtime.verify_cache == "auto" and store.size_bytes() <= VERIFY_FULL_BYTES)
    damaged = store.damaged_parts(checksums) if store.is_complete() else None
    if damaged == {}:
        stats = store.total_stats(role)
        _check_contract(source, stats)
        return ScoredSource(store, stats, cached="hit", token_unit=getattr(stage, "token_unit", "tokens"))
    if not writable:
        raise ConfigError(f"config error: runtime.cache_dir: {store.root} is read-only and does not hold this run's complete {role} "
                          f"store ({stage.kind}); point runtime.cache_dir at a writable folder")
    for index, why in (damaged or {}).items():
        _rescore(store, index, why)

    sequential = source_is_sequential(source)
    scored = ScoredSource(store, SourceStats(role), cached="miss", token_unit=getattr(stage, "token_unit", "tokens"))
    shard_count = [0]
    estimate = TotalEstimate(source_bytes(source) if sequential else None, source.limit)
    bar = tqdm(total=None, desc=f"{stage.kind} {role}", unit=" docs", disable=not runtime.progress, mininterval=0.5, smoothing=0.1)

    def unfinished(specs: Iterator[ShardSpec]) -> Iterator[ShardSpec]:
        for spec in specs:
            shard_count[0] = spec.index + 1
            done = store.is_done(spec.index)
            why = store.damaged(spec.index, checksums) if done else None
            resumed = done and why is None
            if done and why is not None:
                _rescore(store, spec.index, why)
            if sequential:
                bar.total = estimate.planned(spec, resumed)
            if resumed:
                _check_contract(source, store.shard_stats(spec.index, role))
                scored.resumed_shards += 1
                continue
            yield spec

    pending: Iterator[ShardSpec] | list[ShardSpec] = unfinished(plan_shards(source, runtime.shard_size))
    if not sequential:
        pending = list(pending)  # a random-access plan is cheap to hold, and gives the bar its total
        bar.total = sum(s.count for s in pending)
    start = time.perf_counter()
    task = ShardTask(source, role, renderer, stage, fields, store.location, runtime.storage_options)
    printer = BadInputPrinter(role)
    try:
        with _log_above(bar):
            for result in executor.map(task, pending):
                printer.show(result.stats)
                for name, value in result.counters.items():
                    scored.counters[name] = scored.counters.get(name, 0) + value
                bar.update(result.stats.read)
                bar.set_postfix_str(_rates(scored, bar.n, time.perf_counter() - start), refresh=False)
            printer.close()
    finally:
        bar.close()
    store.complete(shard_count[0], {"role": role})
    scored.stats = store.total_stats(role)
    scored.cached = "partial" if scored.resumed_shards else "miss"
    scored.seconds = time.perf_counter() - start
    return scored
