"""What a run tells: manifest.json (a full record of the run) and the printed summary, including why
fewer samples than the budget were selected and ids that will not join back to the input."""
from __future__ import annotations

import contextlib
import datetime
import io
import logging
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator

import numpy as np
import pyarrow.compute as pc

from dataselect.config import METHODS, Config, SourceConfig, without_secrets
from dataselect.hardware import run_mfu
from dataselect.io.locate import SkippedFile, resolve_locations
from dataselect.io.outputs import package_versions
from dataselect.io.remote import is_url
from dataselect.select.base import RANKINGS, Selection, score_throughput
from dataselect.stats import MAX_REPORTED_BAD, SourceStats

if TYPE_CHECKING:
    from dataselect.context import RunContext
    from dataselect.io.shards import ShardStore
    from dataselect.scoring.loop import ScoredSource

logger = logging.getLogger(__name__)


def check_ids(pool: ScoredSource) -> dict[str, Any]:
    """Duplicate and empty ids among the usable pool samples: counted, and one warning line, since the
    selection's ids would not join back to the input rows one to one."""
    ids = pool.store.column("id")
    empty = int(pc.sum(pc.equal(pc.utf8_trim_whitespace(ids), "")).as_py() or 0) if len(ids) else 0
    duplicates = len(ids) - int(pc.count_distinct(ids).as_py()) if len(ids) else 0
    report: dict[str, Any] = {"duplicate_ids": duplicates, "empty_ids": empty}
    if duplicates:
        counts = pc.value_counts(ids)
        repeated = counts.filter(pc.greater(counts.field("counts"), 1))
        report["duplicate_id_examples"] = [str(v) for v in repeated.field("values")[:5].to_pylist()]
    if duplicates or empty:
        examples = f" (e.g. {', '.join(repr(e) for e in report.get('duplicate_id_examples', [])[:3])})" if duplicates else ""
        logger.warning("input: %d duplicate ids%s and %d empty ids in the pool; selection.parquet's ids will not join back to "
                       "the input one to one (set input.id_field to a unique field, or to one no record has for FILE:LINE ids)",
                       duplicates, examples, empty)
    return report


def budget_report(config: Config, selection: Selection, context: RunContext) -> dict[str, Any]:
    """What the budget asked for, what was selected, and what kept pool samples from being eligible (each
    reason the method gave `context.eligible`). A method that is not `budgeted` (apply) keeps what passes."""
    budget = config.method.budget if getattr(context.method, "budgeted", True) else None
    not_eligible = {reason: count for reason, (count, _) in context.not_eligible.items()}
    reasons = [f"{count:,} {why}" for count, why in context.not_eligible.values()]
    selected = len(selection.ids)
    short_by = max(0, budget - selected) if isinstance(budget, int) else 0
    why = None
    if budget is None:
        why = f"{selected:,} of {selection.scored:,} scored pass" + (f"; {', '.join(reasons)}" if reasons else "")
    elif short_by:
        why = f"budget {budget:,}, but only {selected:,} pool samples could be selected: {selection.scored:,} scored"
        why += f", of which {', '.join(reasons)}" if reasons else " (the budget is above the pool)"
    elif isinstance(budget, float) and reasons:
        why = f"budget {budget} is a fraction of the eligible pool samples: {selection.scored:,} scored, of which {', '.join(reasons)}"
    elif reasons:
        eligible = int(np.equal(context.exclusions, None).sum()) if context.exclusions is not None else None  # [N] object array
        why = (f"{eligible:,} of the {selection.scored:,} scored could be selected" if eligible is not None else f"{selection.scored:,} scored")
        why += f"; not eligible: {', '.join(reasons)}"
    return {"asked": budget, "selected": selected, "short_by": short_by, "scored": selection.scored, "not_eligible": not_eligible, "why": why,
            "ranking": selection.ranking}


def _throughput(scored: dict[str, ScoredSource]) -> dict[str, Any]:
    """Summed over the sources: what this run's score phase processed (0 docs on a cache hit)."""
    total = lambda name: sum(s.counter(name) for s in scored.values())  # noqa: E731
    units = {s.token_unit for s in scored.values()}
    padding = [s for s in scored.values() if s.counter("padded_tokens")]  # the stages that batch with padding
    return score_throughput(
        docs=total("docs"), tokens=total("tokens"), seconds=sum(s.seconds for s in scored.values()),
        padded_tokens=total("padded_tokens") or None, unit=units.pop() if len(units) == 1 else "tokens",
        padded_of=sum(s.counter("tokens") for s in padding),
    )


def active_config(config: Config) -> dict[str, Any]:
    """The resolved config with only the running method's own section under `method` (rds, dsir, ...)."""
    dumped = config.model_dump(mode="json")
    dumped["method"] = {key: value for key, value in dumped["method"].items() if key not in METHODS or key == config.method.name}
    return without_secrets(dumped)


def _locations(source: SourceConfig) -> list[dict[str, str]]:
    """Where a source's records came from: absolute file and folder paths, dataset names as they are."""
    out = []
    for kind, location in resolve_locations(source):
        path = str(location)
        if is_url(path):
            pass  # an object-storage URL names itself
        elif kind in ("jsonl", "json", "parquet") or (kind == "hf" and Path(path.partition(":")[0]).expanduser().is_dir()):
            name, colon, split = path.partition(":") if kind == "hf" else (path, "", "")
            path = str(Path(name).expanduser().resolve()) + colon + split
        out.append({"kind": kind, "path": path})
    return out


def _source_report(stats: SourceStats, source: SourceConfig, skipped: list[SkippedFile]) -> dict[str, Any]:
    report = stats.to_dict()
    report["bad_inputs_listed"] = len(stats.bad)
    report["bad_inputs_cut"] = stats.skipped > len(stats.bad)  # the list stops at MAX_REPORTED_BAD; `skipped` counts all
    report["bad_inputs_list_limit"] = MAX_REPORTED_BAD
    report["locations"] = _locations(source)
    report["skipped_files"] = [{"path": str(Path(s.path).resolve()), "reason": s.reason} for s in skipped[:MAX_REPORTED_BAD]]
    return report


def _where(store: ShardStore) -> str:
    """Where a stage's store is: its folder, resolved, or its URL in object storage."""
    return store.location if is_url(store.location) else str(Path(store.root).resolve())


def _device_and_dtype(config: Config) -> tuple[Any, Any]:
    """The run's torch device and the dtype model.dtype resolves to there (the MFU's peak is that dtype's)."""
    from dataselect.scoring.models import resolve_device, resolve_dtype

    device = resolve_device(config.runtime.device)
    return device, resolve_dtype(config.model.dtype, device)


def build_manifest(config: Config, selection: Selection, context: RunContext, total_seconds: float) -> dict[str, Any]:
    """manifest.json's content: the config, counts, budget, sources, stages, timings, throughput and the method's metrics."""
    scored = context.scored
    pool = scored.get("pool")
    skipped = context.skipped_files
    counts = {
        "read": pool.stats.read if pool else None,
        "skipped": pool.stats.skipped if pool else None,
        "scored": selection.scored,
        "unique": selection.unique,
        "excluded_target_copies": context.excluded_target_copies,
        "selected": len(selection.ids),
        "skipped_files": len(skipped.get("input", [])),
        **{key: value for key, value in context.id_report.items() if key in ("duplicate_ids", "empty_ids")},
    }
    stages = {
        name: {
            "stage": context.stage_kinds[name], "cache": s.cached, "shards": s.store.num_shards, "resumed_shards": s.resumed_shards,
            "docs": int(s.counter("docs")), "tokens": int(s.counter("tokens")), "seconds": round(s.seconds, 3),
            "shard_seconds": round(s.counter("seconds"), 3),
            "store": None if s.store in context.single_use_stores else _where(s.store),
        } | context.stage_dtypes.get(name, {})
        for name, s in scored.items()
    }
    out_dir = Path(context.output_dir).resolve()
    rows = out_dir / f"selected.{config.output.write}" if config.output.write != "none" else None
    return {
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "command": list(sys.argv),
        "cwd": os.getcwd(),
        "config": active_config(config),
        "versions": package_versions(),
        "counts": counts,
        "budget": budget_report(config, selection, context),
        "ids": context.id_report,
        "input": _source_report(pool.stats, config.input, skipped.get("input", [])) if pool else None,
        "target": _source_report(scored["target"].stats, config.target, skipped.get("target", [])) if "target" in scored else None,
        "outputs": {"dir": str(out_dir), "selection": str(out_dir / "selection.parquet"), "manifest": str(out_dir / "manifest.json"),
                    "rows": str(rows) if rows else None},
        "cache_dir": config.runtime.cache_url() or str(Path(context.cache_root).resolve()),  # object storage: where its stores are
        "cache": {name: s.cached for name, s in scored.items()},
        "stages": stages,
        "executor": context.executor.describe(),
        "timings_s": {name: round(seconds, 3) for name, seconds in context.stats.timings.items()} | {"total": round(total_seconds, 3)},
        "throughput": _throughput(scored) | run_mfu(scored.values(), lambda: _device_and_dtype(config), context.executor.describe()),
        "method": selection.metrics,
    }


RUN_LOG = "run.log"


class _Lines(logging.Handler):
    def __init__(self, lines: list[str]) -> None:
        super().__init__()
        self.lines = lines
        self.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))


@contextlib.contextmanager
def captured_log() -> Iterator[list[str]]:
    """The lines the dataselect loggers emit while the block runs, as far as logging lets them through (the
    command shows INFO and up; a library caller's logging decides), for run.log."""
    lines: list[str] = []
    handler = _Lines(lines)
    logger = logging.getLogger("dataselect")
    logger.addHandler(handler)
    try:
        yield lines
    finally:
        logger.removeHandler(handler)


def run_log(manifest: dict[str, Any], lines: list[str], summary: str) -> str:
    """run.log: the command, the run's log lines and its summary."""
    head = [f"dataselect run, {manifest['created']}", f"command: {' '.join(manifest['command'])}", f"cwd: {manifest['cwd']}",
            f"versions: {', '.join(f'{k} {v}' for k, v in (manifest.get('versions') or {}).items())}", ""]
    return "\n".join(head + lines) + "\n" + summary


def printable(text: Any, limit: int) -> str:
    """Text for the terminal: control characters (escape sequences that would retitle or recolour it) shown
    escaped, and at most `limit` characters."""
    shown = "".join(c if c.isprintable() else c.encode("unicode_escape").decode("ascii") for c in str(text))
    return shown if len(shown) <= limit else shown[: limit - 3] + "..."


def print_summary(manifest: dict[str, Any], selection: Selection, show_top: int) -> None:
    """Print the run's summary (summary_text) to standard output."""
    sys.stdout.write(summary_text(manifest, selection, show_top))


def summary_text(manifest: dict[str, Any], selection: Selection, show_top: int) -> str:
    """What the run says when it ends (the command prints it; run.log keeps it)."""
    counts = manifest["counts"]
    throughput = manifest.get("throughput") or {}
    out = io.StringIO()
    print(
        f"\nselected {counts['selected']:,} of {counts['unique']:,} unique samples "
        f"(read {counts['read']:,}, skipped {counts['skipped']:,} bad) in {manifest['timings_s']['total']:.1f}s",
        file=out,
    )
    why = (manifest.get("budget") or {}).get("why")
    if why:
        print(why, file=out)
    if selection.ranking == "sampled":
        print(f"ranks: {RANKINGS['sampled']}", file=out)
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
            preview = printable(" ".join(selection.previews[rank].split()), 110)
            print(f"  {rank:>3}  {selection.scores[rank]:.4f}  {printable(selection.ids[rank], 60)}  {preview}", file=out)
    written = ["selection.parquet", "manifest.json", RUN_LOG] + ([Path(manifest["outputs"]["rows"]).name] if manifest["outputs"]["rows"] else [])
    print(f"wrote {', '.join(written[:-1])} and {written[-1]} to {manifest['config']['output']['dir']}", file=out)
    return out.getvalue()
