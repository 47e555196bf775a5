"""One run: the method's score stages on the executor -> its select phase -> the output directory
(selection, manifest, rows). The pipeline owns the executor and the bookkeeping every method shares."""
from __future__ import annotations

import json
import multiprocessing
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from dataselect.config import Config, SourceConfig
from dataselect.errors import ConfigError
from dataselect.executors.base import Executor
from dataselect.io.outputs import package_versions, selection_table, write_manifest, write_selected_rows, write_selection
from dataselect.io.render import TextRenderer
from dataselect.io.sources import resolve_locations
from dataselect.methods import get_method
from dataselect.scoring.loop import ScoredSource, run_stage
from dataselect.scoring.stage import ScoreStage
from dataselect.select.base import Selection, require_usable_pool, score_throughput
from dataselect.stats import RunStats


@dataclass
class RunContext:
    """What a method needs from the run around it: the config, where to write, and `score_source`,
    the one way a method's stage runs over a source (on the run's executor, with the bookkeeping)."""

    config: Config
    output_dir: Path
    cache_root: Path
    executor: Executor
    stats: RunStats = field(default_factory=RunStats)
    scored: dict[str, ScoredSource] = field(default_factory=dict)
    stage_kinds: dict[str, str] = field(default_factory=dict)
    excluded_target_copies: int = 0

    def score_source(self, name: str, source: SourceConfig, stage: ScoreStage, renderer: TextRenderer, fields: dict[str, str] | None = None) -> ScoredSource:
        """Score `source` with `stage` through the score-phase loop; `name` ("pool", "target", ...) names
        it in the manifest. A pool with no usable sample stops the run here."""
        role = "pool" if name == "pool" else name
        with self.stats.stage(f"score_{name}"):
            result = run_stage(source, role, renderer, stage, self.config.runtime, self.cache_root, self.executor, fields)
        if name == "pool":
            require_usable_pool(result.stats)
        self.scored[name] = result
        self.stage_kinds[name] = stage.kind
        return result

    def eligible(self, pool: ScoredSource) -> np.ndarray:
        """[N] bool: pool rows that may be selected. Rows whose text equals a target sample's (after
        normalising whitespace) are not, unless method.exclude_target_copies is off."""
        mask = np.ones(int(pool.store.rows().sum()), bool)
        target = self.scored.get("target")
        if target is None or not self.config.method.exclude_target_copies or not len(mask):
            return mask
        copies = np.isin(pool.store.column("norm_hash").to_numpy(), target.store.column("norm_hash").to_numpy())
        self.excluded_target_copies = int(copies.sum())
        if copies.all():
            raise ConfigError("config error: method.exclude_target_copies: every pool sample is a copy of a target sample; "
                              "set it to false to select from them anyway")
        return ~copies


@dataclass
class RunResult:
    selection: Selection
    output_dir: Path
    manifest: dict[str, Any]

    @property
    def table(self) -> pa.Table:
        """selection.parquet's content: id, rank, score (+ method columns)."""
        return selection_table(self.selection)

    @property
    def ids(self) -> list[str]:
        return self.selection.ids

    @property
    def scores(self) -> np.ndarray | None:
        """Every pool sample's score, in pool store order ([N], or [N, T] per task)."""
        return self.selection.pool_scores


def make_executor(config: Config) -> Executor:
    runtime = config.runtime
    if runtime.executor == "ray":
        raise ConfigError("config error: runtime.executor: 'ray' is not available in this build yet; use 'local'")
    from dataselect.executors.local import local_executor

    return local_executor(runtime.num_workers, runtime.device, runtime.devices)


def _writable_dir(path: Path, key: str) -> Path:
    """The folder, created if need be, or a one-line error now rather than after hours of scoring."""
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise ConfigError(f"config error: {key}: cannot create {path}: {error.strerror}") from None
    if not os.access(path, os.W_OK | os.X_OK):
        raise ConfigError(f"config error: {key}: {path} is not writable")
    return path


def _remove_earlier_rows(output_dir: Path, config: Config) -> None:
    """Selected rows an earlier run wrote here in another format (its manifest says which) would pass
    for this run's; this run's own format is replaced anyway. Never a file this run reads (pool or
    target: last round's selection is a natural next target)."""
    try:
        earlier = json.loads((output_dir / "manifest.json").read_text(encoding="utf-8"))["config"]["output"]["write"]
    except (OSError, ValueError, KeyError, TypeError):
        return
    if earlier not in ("jsonl", "parquet") or earlier == config.output.write:
        return
    stale = output_dir / f"selected.{earlier}"
    if not stale.exists():
        return
    sources = [config.input] + ([config.target] if config.target.path is not None else [])
    inputs = {Path(str(loc)).resolve() for source in sources for _, loc in resolve_locations(source)}
    if stale.resolve() not in inputs:
        stale.unlink()


def run(config: Config, quiet: bool = False, executor: Executor | None = None) -> RunResult:
    """Run a validated config end to end and write its output directory. `executor` replaces the one
    `runtime.executor` / `runtime.num_workers` would choose (it is closed at the end)."""
    if getattr(multiprocessing.current_process(), "_inheriting", False):
        # a spawned worker is re-running the caller's unguarded script: stop it before any work
        raise ConfigError("config error: dataselect.run was called while a worker process was starting; put the call under "
                          "`if __name__ == \"__main__\":` or set runtime.num_workers: 0")
    method = get_method(config.method.name)
    output_dir = _writable_dir(Path(config.output.dir).expanduser(), "output.dir")
    cache_root = _writable_dir(config.runtime.resolved_cache_dir(), "runtime.cache_dir")
    executor = executor if executor is not None else make_executor(config)
    context = RunContext(config=config, output_dir=output_dir, cache_root=cache_root, executor=executor)
    started = time.perf_counter()
    try:
        scored = method.score(context)
    finally:
        executor.close()
    with context.stats.stage("select"):
        selection = method.select(context, scored)
    with context.stats.stage("write"):
        write_selection(output_dir, selection)
        _remove_earlier_rows(output_dir, config)
        if config.output.write != "none":
            write_selected_rows(output_dir, config, selection, progress=config.runtime.progress)
    total = time.perf_counter() - started
    manifest = build_manifest(config, selection, context, total)
    write_manifest(output_dir, manifest)
    if not quiet:
        print_summary(manifest, selection, config.output.show_top)
    return RunResult(selection=selection, output_dir=output_dir, manifest=manifest)


def _throughput(scored: dict[str, ScoredSource]) -> dict[str, Any]:
    """Summed over the sources: what this run's score phase processed (0 docs on a cache hit)."""
    total = lambda name: sum(s.counter(name) for s in scored.values())  # noqa: E731
    units = {s.token_unit for s in scored.values()}
    return score_throughput(
        docs=total("docs"), tokens=total("tokens"), seconds=sum(s.seconds for s in scored.values()),
        padded_tokens=total("padded_tokens") or None, unit=units.pop() if len(units) == 1 else "tokens",
    )


def build_manifest(config: Config, selection: Selection, context: RunContext, total_seconds: float) -> dict[str, Any]:
    scored = context.scored
    pool = scored.get("pool")
    counts = {
        "read": pool.stats.read if pool else None,
        "skipped": pool.stats.skipped if pool else None,
        "scored": selection.scored,
        "unique": selection.unique,
        "excluded_target_copies": context.excluded_target_copies,
        "selected": len(selection.ids),
    }
    stages = {
        name: {
            "stage": context.stage_kinds[name], "cache": s.cached, "shards": s.store.num_shards, "resumed_shards": s.resumed_shards,
            "docs": int(s.counter("docs")), "tokens": int(s.counter("tokens")), "seconds": round(s.seconds, 3),
            "shard_seconds": round(s.counter("seconds"), 3), "store": str(s.store.root),
        }
        for name, s in scored.items()
    }
    return {
        "config": config.model_dump(mode="json"),
        "versions": package_versions(),
        "counts": counts,
        "input": pool.stats.to_dict() if pool else None,
        "target": scored["target"].stats.to_dict() if "target" in scored else None,
        "cache": {name: s.cached for name, s in scored.items()},
        "stages": stages,
        "executor": context.executor.describe(),
        "timings_s": {name: round(seconds, 3) for name, seconds in context.stats.timings.items()} | {"total": round(total_seconds, 3)},
        "throughput": _throughput(scored),
        "method": selection.metrics,
    }


def print_summary(manifest: dict[str, Any], selection: Selection, show_top: int) -> None:
    counts = manifest["counts"]
    throughput = manifest.get("throughput") or {}
    out = sys.stdout
    print(
        f"\nselected {counts['selected']:,} of {counts['unique']:,} unique samples "
        f"(read {counts['read']:,}, skipped {counts['skipped']:,} bad) in {manifest['timings_s']['total']:.1f}s",
        file=out,
    )
    if throughput.get("docs_per_s"):
        padding = throughput.get("padding_waste")
        print(
            f"scored {throughput['scored_docs']:,} docs at {throughput['docs_per_s']:,.1f} docs/s, "
            f"{throughput['tokens_per_s']:,.0f} {throughput['token_unit']}/s"
            + (f" (padding {100 * padding:.1f}%)" if padding is not None else ""),
            file=out,
        )
    if manifest.get("cache"):
        print("cache: " + ", ".join(f"{k} {v}" for k, v in manifest["cache"].items()), file=out)
    if show_top and selection.previews:
        print(f"top {min(show_top, len(selection.ids))}:", file=out)
        for rank in range(min(show_top, len(selection.ids))):
            preview = " ".join(selection.previews[rank].split())[:110]
            print(f"  {rank:>3}  {selection.scores[rank]:.4f}  {selection.ids[rank]}  {preview}", file=out)
    print(f"wrote {manifest['config']['output']['dir']}/selection.parquet and manifest.json", file=out)
