"""One run: the method's score stages on the executor -> its select phase -> the output directory
(selection, manifest, rows). The pipeline owns the executor and the bookkeeping every method shares."""
from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import pyarrow as pa

from dataselect import preflight, run_record
from dataselect.config import Config
from dataselect.context import RunContext
from dataselect.errors import ConfigError
from dataselect.executors.base import Executor
from dataselect.io import plots
from dataselect.io.locate import CACHE_TAG, CACHE_TAG_TEXT, ENGINE_OUTPUTS, resolve_locations
from dataselect.io.locks import output_lock
from dataselect.io.outputs import (
    pool_scores_table,
    publish,
    selection_table,
    staged_outputs,
    upload_outputs,
    write_manifest,
    write_pool_scores,
    write_selected_rows,
    write_selection,
)
from dataselect.io.remote import is_url, use_storage_options
from dataselect.io.report import write_report_safely
from dataselect.io.shards import atomic_write_text
from dataselect.io.streams import spool_stdin
from dataselect.methods import get_method
from dataselect.select.base import Selection

logger = logging.getLogger(__name__)
SCORER_FOLDER = "scorer"  # the saved scorer in an output folder


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
    """The executor runtime.executor and runtime.num_workers ask for (local processes or Ray)."""
    runtime = config.runtime
    if runtime.executor == "ray":
        from dataselect.executors.ray import RayExecutor

        return RayExecutor(runtime.ray_address, runtime.num_workers)
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


def _earlier_rows(output_dir: Path, config: Config) -> list[Path]:
    """Selected rows an earlier run wrote here in another format (its manifest says which): they would
    pass for this run's, so they go (this run's own format is replaced anyway). Never a file this run
    reads (pool or target: last round's selection is a natural next target)."""
    try:
        earlier = json.loads((output_dir / "manifest.json").read_text(encoding="utf-8"))["config"]["output"]["write"]
    except (OSError, ValueError, KeyError, TypeError):
        return []
    if earlier not in ("jsonl", "parquet") or earlier == config.output.write:
        return []
    stale = output_dir / f"selected.{earlier}"
    if not stale.exists():
        return []
    sources = [config.input] + ([config.target] if config.target.path is not None else [])
    inputs = {Path(str(loc)).resolve() for source in sources for _, loc in resolve_locations(source)}
    return [] if stale.resolve() in inputs else [stale]


def run(config: Config, quiet: bool = False, executor: Executor | None = None) -> RunResult:
    """Run a validated config end to end and write its output directory. `quiet`: no summary and no progress
    bars. `executor` replaces the one `runtime.executor` / `runtime.num_workers` would choose (it is closed at the end)."""
    if quiet and config.runtime.progress:
        config = config.model_copy(update={"runtime": config.runtime.model_copy(update={"progress": False})})
    preflight.stop_a_spawned_rerun()
    method = get_method(config.method.name)
    use_storage_options(config.runtime.storage_options)  # inputs at object-storage URLs are listed and planned with them
    with run_record.captured_log() as log_lines:
        skipped = preflight.check_sources(config)  # before any folder is created
        cache_root = _cache_root(config)
        output_dir = _local_output_dir(config.output.dir, cache_root)
        with _removed_if_left_empty(output_dir):
            _writable_dir(output_dir, "output.dir")
            manifest, selection, summary = _run_in(config, method, output_dir, cache_root, skipped, executor, log_lines)
    if not quiet:
        sys.stdout.write(summary)
    return RunResult(selection=selection, output_dir=output_dir, manifest=manifest)


def _run_in(config: Config, method: Any, output_dir: Path, cache_root: Path, skipped: dict, executor: Executor | None,
            log_lines: list[str]) -> tuple[dict[str, Any], Selection, str]:
    """The run once its output folder exists: (manifest, selection, the summary it printed into run.log)."""
    remote_output = config.output.dir if is_url(config.output.dir) else None  # written here first, then uploaded
    started = time.perf_counter()
    reads_stdin = any(kind == "stdin" for source in preflight.sources_read(config).values() for kind, _ in resolve_locations(source))
    with output_lock(output_dir, cache_root), spool_stdin(cache_root / "stdin") if reads_stdin else contextlib.nullcontext(), \
            preflight.spawn_marker() as marker:
        executor = executor if executor is not None else make_executor(config)
        if executor.describe().get("workers"):  # this process mostly waits on its workers: the report's imports fit in
            threading.Thread(target=plots.preload, name="dataselect-preload", daemon=True).start()
        context = RunContext(config=config, output_dir=output_dir, cache_root=cache_root, executor=executor, skipped_files=skipped, method=method)
        try:
            try:
                scored = method.score(context)
            except Exception:
                if marker.exists() and marker.stat().st_size:
                    raise ConfigError(preflight.UNGUARDED_SCRIPT) from None  # the workers died re-running the caller's script
                raise
            finally:
                executor.close()
            context.id_report = run_record.check_ids(scored["pool"]) if "pool" in scored else {}
            with context.stats.stage("select"):
                selection = method.select(context, scored)
            with staged_outputs(output_dir) as staging:  # nothing in output_dir changes until every file is written
                with context.stats.stage("write"):
                    write_selection(staging, selection)
                    if "pool" in context.scored:
                        write_pool_scores(staging, pool_scores_table(context.scored["pool"].store.column("id"), selection, context.exclusions))
                    if getattr(method, "saved_scorer", None):  # what the run learned, to score records anywhere (dataselect.load_scorer)
                        method.saved_scorer(context, staging / SCORER_FOLDER, selection)
                    if config.output.write != "none":
                        write_selected_rows(staging, config, selection, progress=config.runtime.progress)
                total = time.perf_counter() - started
                manifest = run_record.build_manifest(config, selection, context, total)
                write_manifest(staging, manifest)
                pool_store = context.scored["pool"].store if "pool" in context.scored else None
                drawn = write_report_safely(staging, selection, manifest, pool_store)  # part of the run: staged with it
                stale = _earlier_rows(output_dir, config) + ([] if drawn else [output_dir / "report.html"])
                stale += [] if (staging / SCORER_FOLDER).exists() else [output_dir / SCORER_FOLDER]
                summary = run_record.summary_text(manifest, selection, config.output.show_top)
                summary += f"report: {output_dir / 'report.html'}\n" if drawn else "report: not written (see the log line above)\n"
                atomic_write_text(staging / run_record.RUN_LOG, run_record.run_log(manifest, log_lines, summary))
                publish(staging, output_dir, stale)
            if remote_output is not None:
                upload_outputs(output_dir, remote_output, (*ENGINE_OUTPUTS, SCORER_FOLDER))
        finally:
            for store in context.single_use_stores:  # standard input's: its cache key is new every run, so no run reuses them
                store.remove()
    return manifest, selection, summary


@contextlib.contextmanager
def _removed_if_left_empty(folder: Path) -> Iterator[None]:
    """A run that fails or is interrupted leaves no empty output folder behind (nor the empty parents it made)."""
    existing = next((p for p in [folder, *folder.parents] if p.exists()), None)
    made = [p for p in [folder, *folder.parents] if existing is None or p not in [existing, *existing.parents]]
    try:
        yield
    except BaseException:
        for path in made:  # innermost first; a folder something was written into stays
            try:
                path.rmdir()
            except OSError:
                break
        raise


def _local_output_dir(output: str, cache_root: Path) -> Path:
    """output.dir, or for an object-storage URL the local folder in the cache that mirrors it (one per URL)."""
    if not is_url(output):
        return Path(output).expanduser()
    return cache_root / "outputs" / hashlib.blake2b(output.encode(), digest_size=16).hexdigest()


def _cache_root(config: Config) -> Path:
    """runtime.cache_dir, created, with the cache directory tag (backup tools and directory inputs skip it)."""
    root = config.runtime.resolved_cache_dir()
    if root.is_dir() and not os.access(root, os.W_OK | os.X_OK):
        logger.warning("runtime.cache_dir: %s is read-only: its complete stores are read; a store it lacks stops the run", root)
        return root
    root = _writable_dir(root, "runtime.cache_dir")
    tag = root / CACHE_TAG
    if not tag.exists():
        atomic_write_text(tag, CACHE_TAG_TEXT)
    return root
