"""Stream records from jsonl(.gz), parquet, directories/globs of them, and Hugging Face datasets.

Records are yielded one at a time with their file and line, so the pool never sits in memory. Bad
records (malformed JSON, not UTF-8, missing/empty/over-long text) are counted and reported with file
and line; under `on_error: fail` the first one stops the run with that message.
"""
from __future__ import annotations

import codecs
import functools
import glob
import gzip
import hashlib
import itertools
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from dataselect.config import SourceConfig
from dataselect.errors import ConfigError, InputError
from dataselect.io.render import BadRecord, TextRenderer
from dataselect.stats import BadInput, SourceStats

JSONL_SUFFIXES = tuple(base + c for base in (".jsonl", ".json", ".ndjson") for c in ("", ".gz", ".bz2", ".xz"))
PARQUET_SUFFIXES = (".parquet",)


@dataclass
class RawRecord:
    """One record as read; `record` is None when it could not be parsed (then `error` says why)."""

    position: int  # 0-based index among all records of the source, bad ones included
    file: str  # the label used in ids and error reports
    line: int  # 1-based line (jsonl) or row (parquet, datasets)
    record: dict[str, Any] | None
    error: str | None = None


@dataclass
class Sample:
    position: int
    id: str
    text: str
    file: str
    line: int
    record: dict[str, Any]


def text_hash(text: str) -> int:
    """64-bit content hash used to collapse exact duplicates (stable across runs and machines)."""
    return int.from_bytes(hashlib.blake2b(text.encode("utf-8"), digest_size=8).digest(), "little", signed=True)


def _is_saved_dataset(path: Path) -> bool:
    return path.is_dir() and ((path / "dataset_info.json").exists() or (path / "dataset_dict.json").exists())


def _expand(path: str, fmt: str) -> list[tuple[str, Path | str]]:
    """One configured path -> [(kind, location)] with kind in jsonl/parquet/hf, in a stable order."""
    if path.startswith("hf:") or fmt == "hf":
        return [("hf", path.removeprefix("hf:"))]
    candidate = Path(path).expanduser()
    if _is_saved_dataset(candidate):
        return [("hf", str(candidate))]
    if candidate.is_dir():
        files = sorted(p for p in candidate.rglob("*") if p.is_file() and p.name.endswith(JSONL_SUFFIXES + PARQUET_SUFFIXES))
    elif candidate.is_file():
        files = [candidate]
    else:
        files = sorted(Path(p) for p in glob.glob(os.path.expanduser(path), recursive=True) if Path(p).is_file())
    if not files:
        raise InputError(f"input error: no input files found at {path!r}")
    out = []
    for file in files:
        kind = fmt if fmt in ("jsonl", "parquet") else ("parquet" if file.name.endswith(PARQUET_SUFFIXES) else "jsonl")
        out.append((kind, file))
    return out


def resolve_locations(config: SourceConfig) -> list[tuple[str, Path | str]]:
    if config.path is None:
        raise ConfigError("config error: input.path is required (a file, glob, directory or hf:NAME[:split])")
    paths = [config.path] if isinstance(config.path, str) else list(config.path)
    return [loc for p in paths for loc in _expand(p, config.format)]


def file_labels(locations: list[tuple[str, Path | str]]) -> list[str]:
    """Short, stable file labels for ids: the path relative to the files' common folder."""
    files = [Path(loc).resolve() for kind, loc in locations if kind != "hf"]
    root = Path(os.path.commonpath([str(f.parent) for f in files])) if files else None
    labels = []
    for kind, loc in locations:
        label = str(loc) if kind == "hf" else str(Path(loc).resolve().relative_to(root))
        # a file name that is not UTF-8 (Python holds its bytes as lone surrogates) is shown as \xNN: the
        # label goes into ids, which Arrow and every later tool need as valid UTF-8
        labels.append(os.fsencode(label).decode("utf-8", "backslashreplace"))
    return labels


def fingerprint(config: SourceConfig) -> list[Any]:
    """What identifies the source's content for caching: paths with size and mtime, or the dataset name."""
    out: list[Any] = []
    for kind, loc in resolve_locations(config):
        if kind == "hf":
            state = Path(loc)
            if state.is_dir():
                files = sorted(p for p in state.rglob("*") if p.is_file())
                out.append(["hf-disk", str(state.resolve()), [[p.name, p.stat().st_size, p.stat().st_mtime_ns] for p in files]])
            else:
                out.append(["hf", loc])
        else:
            stat = Path(loc).stat()
            out.append([kind, str(Path(loc).resolve()), stat.st_size, stat.st_mtime_ns])
    return out


COMPRESSED_SUFFIXES = (".gz", ".bz2", ".xz")


def _open_binary(path: Path) -> Any:
    if path.name.endswith(".gz"):
        return gzip.open(path, "rb")
    if path.name.endswith(".bz2"):
        import bz2

        return bz2.open(path, "rb")
    if path.name.endswith(".xz"):
        import lzma

        return lzma.open(path, "rb")
    return open(path, "rb")


# A JSON escape of a UTF-16 surrogate: \ud800-\udfff. Paired, json.loads makes one character of two;
# alone it decodes to a lone surrogate, which no UTF-8 consumer (tokenizers, Arrow, hashing, the
# selected rows) accepts, so the record is bad input, not the end of the run.
SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")


def _lone_surrogate(record: dict) -> str | None:
    """The first lone surrogate anywhere in the record (keys and nested values too), if any."""
    try:
        json.dumps(record, ensure_ascii=False, default=str).encode("utf-8")
    except UnicodeEncodeError as error:
        return error.object[error.start]
    return None


def _parse_jsonl_line(raw: bytes) -> tuple[dict | None, str | None]:
    """(record, None) or (None, why the line is bad)."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        return None, "not valid UTF-8"
    try:
        record = json.loads(text)
    except json.JSONDecodeError as error:
        return None, f"malformed JSON ({error.msg})"
    if not isinstance(record, dict):
        return None, "not a JSON object"
    if SURROGATE_ESCAPE.search(raw) is not None and (surrogate := _lone_surrogate(record)) is not None:
        return None, f"a lone surrogate ({surrogate!r}) in a string, not valid Unicode"
    return record, None


def _jsonl_records(lines: Iterator[bytes], label: str, first_line: int, first_position: int) -> Iterator[RawRecord]:
    """Records of consecutive lines starting at line `first_line`; blank lines hold no record."""
    position = first_position
    for line_number, raw in enumerate(lines, start=first_line):
        if line_number == 1:
            raw = raw.removeprefix(codecs.BOM_UTF8)  # written by some Windows tools; not part of the JSON
        if not raw.strip():
            continue
        record, error = _parse_jsonl_line(raw)
        yield RawRecord(position, label, line_number, record, error)
        position += 1


def _byte_range_lines(path: Path, start: int, stop: int) -> Iterator[bytes]:
    with open(path, "rb") as handle:
        handle.seek(start)
        offset = start
        while offset < stop:
            raw = handle.readline()
            if not raw:
                return
            offset += len(raw)
            yield raw


def _lines(path: Path) -> Iterator[bytes]:
    with _open_binary(path) as handle:
        yield from handle


def parquet_rows(path: Path) -> int:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        return pq.ParquetFile(path).metadata.num_rows
    except pa.ArrowException as error:  # not parquet, or damaged: the file, not one record, is bad
        raise InputError(f"input error: cannot read {path} as parquet: {str(error).splitlines()[0]}") from None


def _parquet_records(path: Path, label: str, start: int, stop: int, first_position: int) -> Iterator[RawRecord]:
    """Rows [start, stop) of a parquet file, reading only the row groups that hold them."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    row = start
    try:
        handle = pq.ParquetFile(path)
        group_starts = np.cumsum([0] + [handle.metadata.row_group(g).num_rows for g in range(handle.num_row_groups)])
        groups = [g for g in range(handle.num_row_groups) if group_starts[g] < stop and group_starts[g + 1] > start]
        if not groups:
            return
        table = handle.read_row_groups(groups)
        first = int(group_starts[groups[0]])
        for batch in table.slice(start - first, stop - start).to_batches(max_chunksize=1024):
            for record in batch.to_pylist():
                yield RawRecord(first_position + row - start, label, row + 1, record, None)
                row += 1
    except pa.ArrowException as error:
        raise InputError(f"input error: cannot read {path} as parquet (at row {row + 1}): {str(error).splitlines()[0]}") from None


@functools.lru_cache(maxsize=8)
def load_disk_dataset(spec: str) -> Any:
    """A `save_to_disk` dataset (memory-mapped), its split chosen as hf:PATH:SPLIT says."""
    import datasets

    name, _, split = spec.partition(":")
    dataset = datasets.load_from_disk(str(Path(name).expanduser()))
    if isinstance(dataset, datasets.DatasetDict):
        if not split and len(dataset) != 1:
            raise ConfigError(f"config error: input.path: {spec!r} holds splits {list(dataset)}; name one as hf:PATH:SPLIT")
        if split and split not in dataset:
            raise ConfigError(f"config error: input.path: {spec!r} has no split {split!r}; it holds {list(dataset)}")
        dataset = dataset[split or next(iter(dataset))]
    return dataset


def _dataset_records(rows: Iterator[Any], label: str, first_row: int, first_position: int) -> Iterator[RawRecord]:
    for offset, record in enumerate(rows):
        record = dict(record)
        surrogate = _lone_surrogate(record)  # a JSON-backed dataset can carry the same escapes as jsonl
        error = None if surrogate is None else f"a lone surrogate ({surrogate!r}) in a string, not valid Unicode"
        yield RawRecord(first_position + offset, label, first_row + offset, None if error else record, error)


def _stream_hf(spec: str) -> Iterator[Any]:
    import datasets

    name, _, split = spec.partition(":")
    # remote datasets stream: nothing is downloaded up front and memory stays bounded
    return iter(datasets.load_dataset(name, split=split or "train", streaming=True))


def read_location(kind: str, location: Path | str, label: str, first_position: int = 0) -> Iterator[RawRecord]:
    """Every record of one location, in order (what the planner reads for a sequential location)."""
    if kind == "hf":
        return _dataset_records(_stream_hf(str(location)), f"hf:{location}", 1, first_position)
    return _jsonl_records(_lines(Path(location)), label, 1, first_position)


def read_spec(spec: Any) -> Iterator[RawRecord]:
    """The records of one planned shard (dataselect.io.plan.ShardSpec), with their positions and lines."""
    if spec.kind == "records":
        return iter(spec.records)
    if spec.kind == "jsonl":
        records = _jsonl_records(_byte_range_lines(Path(spec.location), spec.start, spec.stop), spec.label, spec.first_line, spec.first_position)
    elif spec.kind == "parquet":
        records = _parquet_records(Path(spec.location), spec.label, spec.start, spec.stop, spec.first_position)
    else:
        dataset = load_disk_dataset(spec.location)
        records = _dataset_records(iter(dataset.select(range(spec.start, spec.stop))), spec.label, spec.start + 1, spec.first_position)
    return guarded(itertools.islice(records, spec.count), spec.location)


def guarded(items: Iterator[Any], location: Any) -> Iterator[Any]:
    """The items, with a read failure of the location (gone, unreadable, damaged) as one input error."""
    try:
        yield from items
    except (OSError, EOFError, gzip.BadGzipFile) as error:
        raise InputError(f"input error: cannot read {location}: {error}") from None
    except Exception as error:  # noqa: BLE001 - lzma/bz2 decompression errors have no common base
        if type(error).__module__ in ("_lzma", "lzma", "_bz2", "bz2") or "compressed" in str(error).lower():
            raise InputError(f"input error: cannot read {location}: {error}") from None
        raise


def iter_raw_records(config: SourceConfig) -> Iterator[RawRecord]:
    """Every record of the source in a stable order, with its position, file label and line: the
    planned shards read one after another, so positions agree with the score phase's."""
    from dataselect.io.plan import plan_shards

    for spec in plan_shards(config, shard_size=1 << 16):
        yield from read_spec(spec)


def sample_id(config: SourceConfig, raw: RawRecord) -> str:
    value = raw.record.get(config.id_field) if raw.record is not None else None
    if value is not None and not isinstance(value, (dict, list)):
        return str(value)
    return f"{raw.file}:{raw.line}"


def to_sample(raw: RawRecord, config: SourceConfig, renderer: TextRenderer, stats: SourceStats) -> Sample | None:
    """A usable sample, or None after counting (skip) or raising (fail) for a bad record."""
    stats.read += 1
    reason = raw.error
    text = ""
    if reason is None:
        try:
            text = renderer.render(raw.record)
        except BadRecord as bad:
            reason = str(bad)
    if reason is not None:
        bad = BadInput(raw.file, raw.line, reason)
        if config.on_error == "fail":
            raise InputError(f"input error: {bad} (set input.on_error: skip to skip bad samples)")
        stats.record_bad(bad)
        return None
    return Sample(raw.position, sample_id(config, raw), text, raw.file, raw.line, raw.record)


def iter_samples(config: SourceConfig, renderer: TextRenderer, stats: SourceStats) -> Iterator[Sample]:
    """Rendered samples of a source; bad records are counted in `stats` and skipped (or raise)."""
    for raw in iter_raw_records(config):
        sample = to_sample(raw, config, renderer, stats)
        if sample is not None:
            yield sample
