"""The output directory contract: selection.parquet, manifest.json, and the selected rows on request."""
from __future__ import annotations

import base64
import contextlib
import datetime
import importlib.metadata
import json
import os
import platform
import shutil
import signal
import tempfile
import threading
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from tqdm import tqdm

from dataselect.config import Config
from dataselect.errors import OutputError
from dataselect.io.plan import iter_raw_records
from dataselect.io.samples import RawRecord, sample_id, usable_id
from dataselect.io.shards import atomic_write, atomic_write_text
from dataselect.select.base import Selection

VERSIONED_PACKAGES = ("dataselect", "torch", "triton", "transformers", "tokenizers", "numpy", "pyarrow", "faiss-cpu", "datasets", "pydantic")


def package_versions() -> dict[str, str | None]:
    """Python's and the engine's main packages' versions, for the manifest."""
    versions: dict[str, str | None] = {"python": platform.python_version()}
    for name in VERSIONED_PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def selection_table(selection: Selection) -> pa.Table:
    """selection.parquet's table: id, rank, score, then the method's own columns."""
    columns = {
        "id": pa.array(selection.ids, pa.string()),
        "rank": pa.array(range(len(selection.ids)), pa.int64()),
        "score": pa.array(selection.scores, pa.float64()),
    }
    for name, values in selection.columns.items():
        columns[name] = pa.array(values)
    return pa.table(columns)


def write_selection(out_dir: Path, selection: Selection) -> Path:
    """Write selection.parquet into `out_dir` (atomically); its path."""
    path = out_dir / "selection.parquet"
    table = selection_table(selection)
    atomic_write(path, lambda temp: pq.write_table(table, temp))
    return path


SCORES_FILE = "scores.parquet"


def pool_scores_table(ids: pa.ChunkedArray, selection: Selection, exclusions: np.ndarray | None) -> pa.Table:
    """scores.parquet: every pool sample once, in pool order: id, score (the best task's for several tasks,
    with every task's in task_scores), rank (null unless selected) and excluded (why it could not be
    selected: duplicate, target_copy, or the method's own reason; null when it could)."""
    n = len(ids)
    scores = selection.pool_scores
    columns: dict[str, Any] = {"id": ids.cast(pa.string())}
    if scores is None:
        columns["score"] = pa.nulls(n, pa.float64())
    elif scores.ndim == 2:
        columns["score"] = pa.array(scores.max(axis=1, initial=-np.inf).astype(np.float64))
        columns["task_scores"] = pa.FixedSizeListArray.from_arrays(pa.array(scores.astype(np.float64).ravel()), scores.shape[1])
    else:
        columns["score"] = pa.array(np.asarray(scores, np.float64))
    rank = np.full(n, -1, np.int64)
    if selection.rows is not None:
        rank[selection.rows] = np.arange(len(selection.rows))
    columns["rank"] = pa.array(rank, mask=rank < 0)
    columns["excluded"] = pa.array(exclusions if exclusions is not None else np.full(n, None, object), pa.string())
    return pa.table(columns | selection.pool_columns)


def write_pool_scores(out_dir: Path, table: pa.Table) -> Path:
    """Write scores.parquet (every pool sample's score) into `out_dir` (atomically); its path."""
    path = out_dir / SCORES_FILE
    atomic_write(path, lambda temp: pq.write_table(table, temp))
    return path


STAGING_PREFIX = ".dataselect-staging-"  # hidden, so a directory input never reads it


@contextlib.contextmanager
def staged_outputs(out_dir: Path) -> Iterator[Path]:
    """A staging folder inside `out_dir` for one run's files; removed on the way out, whatever happens,
    so a failure or an interrupt while writing leaves the folder as the earlier run left it."""
    staging = Path(tempfile.mkdtemp(prefix=STAGING_PREFIX, dir=out_dir))
    try:
        yield staging
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def publish(staging: Path, out_dir: Path, stale: list[Path]) -> None:
    """Move the staged files into `out_dir` together, manifest.json last, and remove `stale` files of an
    earlier run (and staging folders a killed run left). Renames only, with Ctrl-C held until they are done."""
    staged = sorted(staging.iterdir(), key=lambda p: p.name == "manifest.json")
    with _interrupts_held():
        for path in staged:
            if path.name == "manifest.json":
                for old in stale:
                    _remove(old, staging)
            if path.is_dir():
                _remove(out_dir / path.name, staging)  # a folder (the scorer) cannot be renamed onto a full one
            os.replace(path, out_dir / path.name)
    for leftover in out_dir.glob(STAGING_PREFIX + "*"):
        if leftover != staging and leftover.is_dir():
            shutil.rmtree(leftover, ignore_errors=True)


def upload_outputs(folder: Path, url: str, engine_names: tuple[str, ...]) -> None:
    """Mirror a published output folder to object storage, which has no rename: every file but
    manifest.json first, then an earlier run's outputs this run did not write (`engine_names`, and files of
    a folder among them) removed, then manifest.json last, the marker that the folder is complete."""
    from dataselect.io.remote import filesystem

    fs, root = filesystem(url)  # with the run's runtime.storage_options
    root = root.rstrip("/")
    files = sorted((p for p in folder.rglob("*") if p.is_file() and not p.relative_to(folder).as_posix().startswith(".")),
                   key=lambda p: p.name == "manifest.json")
    ours = {p.relative_to(folder).as_posix() for p in files}
    try:
        if fs.exists(f"{root}/manifest.json"):
            fs.rm_file(f"{root}/manifest.json")  # the folder is incomplete from here on
        for path in files[:-1] if files and files[-1].name == "manifest.json" else files:
            fs.put_file(str(path), f"{root}/{path.relative_to(folder).as_posix()}")
        earlier = [p for p in fs.find(root) if p[len(root) + 1 :].split("/")[0] in engine_names and p[len(root) + 1 :] not in ours]
        if earlier:
            fs.rm(earlier)
        if files and files[-1].name == "manifest.json":
            fs.put_file(str(files[-1]), f"{root}/manifest.json")
    except OSError as error:
        raise OutputError(f"output error: cannot write {url}: {error}") from None


def _remove(path: Path, staging: Path) -> None:
    """Remove an earlier run's file or folder; a folder is first renamed into the staging folder (one
    rename, so it is never seen half-deleted) and goes when the staging folder does."""
    if path.is_dir() and not path.is_symlink():
        os.replace(path, staging / f".old-{path.name}")
    else:
        path.unlink(missing_ok=True)


@contextlib.contextmanager
def _interrupts_held() -> Iterator[None]:
    """SIGINT waits until the block is done (then raises), so a Ctrl-C cannot split a few renames."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    caught: list[int] = []
    previous = signal.signal(signal.SIGINT, lambda number, frame: caught.append(number))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous if previous is not None else signal.default_int_handler)
    if caught:
        raise KeyboardInterrupt


def write_manifest(out_dir: Path, manifest: dict[str, Any]) -> Path:
    """Write manifest.json into `out_dir` (atomically); its path."""
    path = out_dir / "manifest.json"
    atomic_write_text(path, json.dumps(manifest, indent=2, default=str))
    return path


def write_selected_rows(out_dir: Path, config: Config, selection: Selection, progress: bool = True) -> Path:
    """Copy the selected input records (in input order) with `rank` and `score` added (an input field
    of the same name is kept as input_<name>), and the generated FILE:LINE id as `input.id_field` where
    the record has none. When the method selected parts of records
    (`selection.chunker`), each selected part is a row of its own: the record with `chunk` (its
    number) and `chunk_text` added, so no selected part is lost.

    One streaming pass over the input; only the selected rows' positions are held in memory."""
    ranks_at: dict[int, list[int]] = {}  # input position -> the ranks selected from it, in rank order
    for rank, position in enumerate(selection.positions):
        ranks_at.setdefault(int(position), []).append(rank)
    chunks = selection.columns.get("chunk") if selection.chunker is not None else None
    fmt = config.output.write
    id_field = config.input.id_field
    path = out_dir / f"selected.{fmt}"
    bar = tqdm(total=len(selection.positions), desc="write selected rows", unit=" rows", disable=not progress)

    def rows() -> Iterator[dict[str, Any]]:
        remaining = len(ranks_at)
        for raw in iter_raw_records(config.input):
            if remaining == 0:
                return
            ranks = ranks_at.get(raw.position)
            if ranks is None or raw.record is None:
                continue
            remaining -= 1
            bar.update(len(ranks))
            _check_id(config, raw, selection.ids[ranks[0]], chunks[ranks[0]] if chunks is not None else None)
            record = _kept_apart(raw.record, chunked=chunks is not None)
            if not usable_id(record.get(id_field)):  # the id was made from file and line: the row carries it, so it joins
                record = {**record, id_field: selection.ids[ranks[0]]} if id_field in record else {id_field: selection.ids[ranks[0]], **record}
            if chunks is None:
                yield {**record, "rank": ranks[0], "score": float(selection.scores[ranks[0]])}
                continue
            parts = selection.chunker(raw.record)
            for rank in sorted(ranks, key=lambda r: chunks[r]):  # a record's parts in text order
                yield {**record, "chunk": chunks[rank], "chunk_text": parts[chunks[rank]], "rank": rank, "score": float(selection.scores[rank])}

    try:
        atomic_write(path, lambda temp: (_write_jsonl_rows if fmt == "jsonl" else _write_parquet_rows)(temp, rows()))
    finally:
        bar.close()
    return path


def _check_id(config: Config, raw: RawRecord, scored_id: str, chunk: int | None) -> None:
    """The record at a selected position is the one that was scored there: a file changed after it was
    scored (or two lines swapped with its size and time kept) would otherwise put rows under other ids."""
    found = sample_id(config.input, raw)
    if scored_id == found or (chunk is not None and scored_id == f"{found}#{chunk}"):
        return
    raise OutputError(f"output error: {raw.file}:{raw.line} holds id {found!r} where the scored pool had {scored_id!r}: the input changed "
                      "after it was scored; nothing was written (remove its store from runtime.cache_dir, or touch the file, and run again)")


ADDED_FIELDS = ("rank", "score")
ADDED_CHUNK_FIELDS = ("chunk", "chunk_text")


def _kept_apart(record: dict[str, Any], chunked: bool) -> dict[str, Any]:
    """The record with any field of its own that a selected row adds (a `score` of the input, say)
    renamed input_<name>, so the row has this run's values and the input's are not lost."""
    added = ADDED_FIELDS + (ADDED_CHUNK_FIELDS if chunked else ())
    if not any(name in record for name in added):
        return record
    out: dict[str, Any] = {}
    for key, value in record.items():
        if key in added:
            key = f"input_{key}"
            while key in record or key in out:  # the input may have an input_score of its own too
                key = f"input_{key}"
        out[key] = value
    return out


def _json_value(value: Any) -> Any:
    """What json.dumps cannot write itself, from parquet or hf inputs: dates and times as ISO 8601,
    bytes as base64, numpy scalars as numbers, anything else (Decimal, timedelta) as its str."""
    if isinstance(value, (datetime.date, datetime.time)):
        return value.isoformat()
    if isinstance(value, (bytes, bytearray)):
        return base64.b64encode(value).decode("ascii")
    if isinstance(value, np.generic):
        return value.item()
    return str(value)


def _write_jsonl_rows(temp: Path, rows: Iterator[dict[str, Any]]) -> None:
    with open(temp, "w", encoding="utf-8") as handle:
        for row in rows:
            handle.write(json.dumps(row, ensure_ascii=False, default=_json_value) + "\n")


PARQUET_PART_ROWS = 4096


def _batches(rows: Iterator[dict[str, Any]], size: int) -> Iterator[list[dict[str, Any]]]:
    batch: list[dict[str, Any]] = []
    for row in rows:
        batch.append(row)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


PARQUET_ERRORS = (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError, OverflowError)


def _rows_table(rows: list[dict[str, Any]]) -> pa.Table:
    """Every key of any row is a column (null where a row lacks it), typed from all its values."""
    keys = list(dict.fromkeys(key for row in rows for key in row))
    columns = {}
    for key in keys:
        values = [row.get(key) for row in rows]
        try:
            columns[key] = pa.array(values)
        except PARQUET_ERRORS as error:
            kinds = sorted({type(v).__name__ for v in values if v is not None})
            raise _unfit(key, f"its values are {' and '.join(kinds)}" if len(kinds) > 1 else _first_line(error)) from None
    return pa.table(columns)


def _unified(schemas: list[pa.Schema]) -> pa.Schema:
    """The parts' schemas as one; a field whose types in two parts cannot be one column is named."""
    try:
        return pa.unify_schemas(schemas, promote_options="permissive") if schemas else pa.schema([])
    except PARQUET_ERRORS as error:
        names = dict.fromkeys(f.name for s in schemas for f in s)
        for name in names:
            fields = [s.field(name) for s in schemas if name in s.names]
            try:
                pa.unify_schemas([pa.schema([f]) for f in fields], promote_options="permissive")
            except PARQUET_ERRORS:
                types = list(dict.fromkeys(str(f.type) for f in fields))
                raise _unfit(name, f"it is {' in some rows and '.join(types[:2])} in others") from None
        raise _unfit(None, _first_line(error)) from None


def _write_parquet_rows(temp: Path, rows: Iterator[dict[str, Any]]) -> None:
    """Parts of PARQUET_PART_ROWS rows first, then one file with the schema of all the parts together,
    so a field that first appears (or first stops being null) in a later part is kept, not lost."""
    parts_dir = Path(tempfile.mkdtemp(prefix=f"{temp.name}.parts.", dir=temp.parent))
    try:
        parts: list[tuple[Path, pa.Schema]] = []
        for number, batch in enumerate(_batches(rows, PARQUET_PART_ROWS)):  # errors reading the input pass as they are
            table = _rows_table(batch)
            parts.append((parts_dir / f"{number:06d}.parquet", table.schema))
            with _fields_that_parquet_cannot_hold():
                pq.write_table(table, parts[-1][0])
        schema = _unified([s for _, s in parts])
        with _fields_that_parquet_cannot_hold():
            with pq.ParquetWriter(temp, schema) as writer:
                for part, _ in parts:
                    writer.write_table(_conform(pq.read_table(part), schema))
    finally:
        shutil.rmtree(parts_dir, ignore_errors=True)


def _first_line(error: BaseException) -> str:
    return str(error).splitlines()[0] if str(error) else type(error).__name__


def _unfit(field: str | None, why: str) -> OutputError:
    where = f"field {field!r} does not fit one parquet column ({why})" if field is not None else f"the input's fields do not fit parquet columns ({why})"
    return OutputError(f"output error: selected.parquet: {where}; use output.write: jsonl")


@contextlib.contextmanager
def _fields_that_parquet_cannot_hold() -> Iterator[None]:
    """A field that is {} in every row, an int above 2^63 (what only writing finds): one line, not a trace."""
    try:
        yield
    except pa.ArrowMemoryError:
        raise
    except PARQUET_ERRORS as error:
        raise _unfit(None, _first_line(error)) from None


def _conform(table: pa.Table, schema: pa.Schema) -> pa.Table:
    """The table in `schema`'s columns and types; a column it lacks is all null."""
    columns = []
    for f in schema:
        if f.name not in table.column_names:
            columns.append(pa.nulls(len(table), f.type))
            continue
        try:
            columns.append(table.column(f.name).cast(f.type))
        except PARQUET_ERRORS as error:
            raise _unfit(f.name, _first_line(error)) from None
    return pa.Table.from_arrays(columns, schema=schema)
