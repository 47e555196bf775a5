"""One run: method score phase -> select phase -> output directory (selection, manifest, rows)."""
from __future__ import annotations

import json
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa

from dataselect.config import Config
from dataselect.errors import ConfigError
from dataselect.io.outputs import package_versions, selection_table, write_manifest, write_selected_rows, write_selection
from dataselect.io.sources import resolve_locations
from dataselect.methods import get_method
from dataselect.select.base import Selection
from dataselect.stats import RunStats


@dataclass
class RunContext:
    """What a method needs from the run around it."""

    config: Config
    output_dir: Path
    cache_root: Path
    stats: RunStats = field(default_factory=RunStats)


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


def _check_runtime(config: Config) -> None:
    if config.runtime.executor == "ray":
        raise ConfigError("config error: runtime.executor: 'ray' is not available in this build yet; use 'local'")


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


def run(config: Config, quiet: bool = False) -> RunResult:
    """Run a validated config end to end and write its output directory."""
    _check_runtime(config)
    method = get_method(config.method.name)
    output_dir = _writable_dir(Path(config.output.dir), "output.dir")
    context = RunContext(config=config, output_dir=output_dir, cache_root=_writable_dir(config.runtime.resolved_cache_dir(), "runtime.cache_dir"))
    started = time.perf_counter()
    selection = method.run(context)
    with context.stats.stage("write"):
        write_selection(output_dir, selection)
        _remove_earlier_rows(output_dir, config)
        if config.output.write != "none":
            write_selected_rows(output_dir, config, selection, progress=config.runtime.progress)
    total = time.perf_counter() - started
    manifest = build_manifest(config, selection, context.stats, total)
    write_manifest(output_dir, manifest)
    if not quiet:
        print_summary(manifest, selection, config.output.show_top)
    return RunResult(selection=selection, output_dir=output_dir, manifest=manifest)


def build_manifest(config: Config, selection: Selection, stats: RunStats, total_seconds: float) -> dict[str, Any]:
    pool = selection.pool_stats
    counts = {
        "read": pool.read if pool else None,
        "skipped": pool.skipped if pool else None,
        "scored": selection.scored,
        "unique": selection.unique,
        "selected": len(selection.ids),
    }
    return {
        "config": config.model_dump(mode="json"),
        "versions": package_versions(),
        "counts": counts,
        "input": pool.to_dict() if pool else None,
        "target": selection.target_stats.to_dict() if selection.target_stats else None,
        "cache": selection.cache,
        "timings_s": {name: round(seconds, 3) for name, seconds in stats.timings.items()} | {"total": round(total_seconds, 3)},
        "throughput": selection.throughput,
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
