"""Shard plans: a source becomes a list of shard specs that any worker can open on its own.

  jsonl (plain)   one vectorised pass over the bytes finds every record's line; a spec is a byte range
                  with its first line number and position, so opening shard i is a seek
  parquet         row ranges, from the file's metadata alone (no data read)
  save_to_disk    index ranges of the memory-mapped dataset
  sequential      compressed jsonl, JSON arrays, standard input and remote `hf:` datasets cannot be opened
                  in the middle: the planner reads them once, in order, and each spec carries its records inline
                  (a JSON line as its bytes: the worker that scores the shard parses it)

A shard holds `shard_size` records of one file (the last one of a file may hold fewer); boundaries
depend only on the files, the shard size and `input.limit`, never on batch size, workers or executor.
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from dataselect.config import SourceConfig
from dataselect.io import locate, readers
from dataselect.io.locate import COMPRESSED_SUFFIXES, hf_disk_path, resolve_locations
from dataselect.io.readers import local_or_url, read_spec
from dataselect.io.remote import open_raw, size_of
from dataselect.io.render import TextRenderer
from dataselect.io.samples import RawRecord, Sample, to_sample
from dataselect.io.streams import OverLong, disk_offset, read_line
from dataselect.stats import SourceStats

SCAN_BYTES = 1 << 24  # bytes per block of the jsonl line scan
WHITESPACE = np.zeros(256, bool)
WHITESPACE[list(b" \t\n\r\x0b\x0c")] = True  # what bytes.strip() removes: such a line is no record
BOM = b"\xef\xbb\xbf"


@dataclass(frozen=True)
class ShardSpec:
    """One shard of a source, openable without reading the shards before it."""

    index: int  # shard number within the source's plan
    kind: str  # "jsonl" (byte range), "parquet" / "hf-disk" (row range), "records" (inline)
    location: str  # the file or dataset folder
    label: str  # the file label used in ids and error reports
    start: int  # jsonl: first byte; parquet, hf-disk: first row (0-based)
    stop: int  # jsonl: end byte; parquet, hf-disk: end row
    first_line: int  # 1-based line (jsonl) or row of the shard's first record
    first_position: int  # source-wide position of the shard's first record
    count: int  # records in the shard
    records: tuple | None = None  # "records": the RawRecords, read by the planner (JSON lines unparsed: read_spec parses them)
    line_limit: int | None = None  # jsonl: longer lines are one bad record each, never read into memory (readers.line_byte_limit)
    read_bytes: int | None = None  # bytes of the source's files on disk up to this shard's end (a progress bar's estimate)


class ReadMeter:
    """How far the planner is through a source's files on disk: the finished files' bytes, and the open
    sequential file's handle (readers give it theirs) to ask how far into that one it is."""

    def __init__(self) -> None:
        self.before = 0
        self.handle: Any = None

    def at(self, within: int | None) -> int | None:
        return None if within is None else self.before + within

    def in_open_file(self) -> int | None:
        return self.at(disk_offset(self.handle)) if self.handle is not None else None


def source_bytes(config: SourceConfig) -> int | None:
    """The source's files' size on disk, the whole of ReadMeter's figures; None for standard input or a dataset."""
    locations = resolve_locations(config)
    if any(kind not in ("jsonl", "json", "parquet") for kind, _ in locations):
        return None
    return sum(size_of(local_or_url(location)) for _, location in locations)


def is_sequential(kind: str, location: str) -> bool:
    """A location that cannot be opened in the middle: compressed jsonl, a JSON array, standard input,
    a remote dataset."""
    if kind in ("json", "stdin"):
        return True
    return (kind == "jsonl" and str(location).endswith(COMPRESSED_SUFFIXES)) or (kind == "hf" and hf_disk_path(location) is None)


def jsonl_record_lines(path: Path | str, start_line: int = 1) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """(byte offset, 1-based line number) of every line that holds a record (not blank), in blocks.
    Vectorised: about one numpy pass over the bytes, so planning a file costs little next to parsing it.
    Memory is bounded by the block, whatever a line's length: a line that spans blocks is carried as its
    start and whether it has content so far, never as bytes."""
    offset, line = 0, start_line
    open_start, open_content = 0, False  # the line not yet ended: where it starts, and whether it holds a non-space byte
    with open_raw(path) as handle:
        while True:
            block = handle.read(SCAN_BYTES)
            if not block:
                if open_content:  # the file's last line has no newline
                    yield np.array([open_start], np.int64), np.array([line], np.int64)
                return
            piece = np.frombuffer(block, np.uint8)  # [b]
            content = ~WHITESPACE[piece]  # [b]
            if offset == 0 and block.startswith(BOM):
                content[: len(BOM)] = False  # a byte-order mark is not content
            ends = np.flatnonzero(piece == 10)  # [e] newlines in the block
            if len(ends):
                filled = np.concatenate([[0], np.cumsum(content, dtype=np.int32)])  # [b + 1]; a block is < 2**31 bytes
                starts = np.concatenate([[0], ends[:-1] + 1])  # [e] each ending line's first byte in the block
                has_record = filled[ends] > filled[starts]  # [e]
                has_record[0] |= open_content
                line_starts = offset + starts.astype(np.int64)
                line_starts[0] = open_start
                numbers = line + np.arange(len(ends))
                yield line_starts[has_record], numbers[has_record]
                line += len(ends)
                open_start, open_content = offset + int(ends[-1]) + 1, bool(content[ends[-1] + 1 :].any())
            else:
                open_content = open_content or bool(content.any())
            offset += len(block)


def _plan_jsonl(path: Path | str, label: str, shard_size: int, first_index: int, first_position: int, limit: int | None,
                line_limit: int, meter: ReadMeter) -> Iterator[ShardSpec]:
    size = size_of(path)
    pending_offsets: list[np.ndarray] = []
    pending_lines: list[np.ndarray] = []
    index, position = first_index, first_position
    remaining = None if limit is None else limit - first_position

    def emit(offsets: np.ndarray, lines: np.ndarray, stop: int) -> ShardSpec:
        return ShardSpec(index, "jsonl", str(path), label, int(offsets[0]), stop, int(lines[0]), position, len(offsets), line_limit=line_limit,
                         read_bytes=meter.at(stop))

    for offsets, lines in jsonl_record_lines(path):
        pending_offsets.append(offsets)
        pending_lines.append(lines)
        offsets, lines = np.concatenate(pending_offsets), np.concatenate(pending_lines)
        if remaining is not None and len(offsets) >= remaining:
            offsets, lines = offsets[:remaining], lines[:remaining]
        while len(offsets) > shard_size:  # a shard ends where the next one's first record starts
            yield emit(offsets[:shard_size], lines[:shard_size], int(offsets[shard_size]))
            index, position = index + 1, position + shard_size
            if remaining is not None:
                remaining -= shard_size
            offsets, lines = offsets[shard_size:], lines[shard_size:]
        pending_offsets, pending_lines = [offsets], [lines]
        if remaining is not None and len(offsets) >= remaining:
            break
    offsets = np.concatenate(pending_offsets) if pending_offsets else np.zeros(0, np.int64)
    lines = np.concatenate(pending_lines) if pending_lines else np.zeros(0, np.int64)
    if len(offsets):
        # the end of the last record's line: the next record's line start, else the end of the file
        stop = size
        if remaining is not None and len(offsets) == remaining:
            stop = _line_end(path, int(offsets[-1]))
        yield emit(offsets, lines, stop)


def _line_end(path: Path | str, offset: int) -> int:
    with open_raw(path) as handle:
        handle.seek(offset)
        line = read_line(handle, 0)  # skipped in chunks: the line may be longer than memory allows
        return offset + (line.size if isinstance(line, OverLong) else len(line))


def _plan_rows(kind: str, location: str, label: str, rows: int, shard_size: int, first_index: int, first_position: int,
               limit: int | None, meter: ReadMeter, size: int) -> Iterator[ShardSpec]:
    whole = rows
    if limit is not None:
        rows = min(rows, limit - first_position)
    for number, start in enumerate(range(0, rows, shard_size)):
        stop = min(start + shard_size, rows)
        yield ShardSpec(first_index + number, kind, location, label, start, stop, start + 1, first_position + start, stop - start,
                        read_bytes=meter.at(size * stop // max(whole, 1)))


def _plan_sequential(records: Iterator[Any], shard_size: int, first_index: int, first_position: int, limit: int | None,
                     meter: ReadMeter) -> Iterator[ShardSpec]:
    if limit is not None:
        records = itertools.islice(records, max(0, limit - first_position))
    for number in itertools.count():
        chunk = tuple(itertools.islice(records, shard_size))
        if not chunk:
            return
        first = chunk[0]
        yield ShardSpec(first_index + number, "records", "", first.file, 0, 0, first.line, first.position, len(chunk), chunk,
                        read_bytes=meter.in_open_file())


def plan_shards(config: SourceConfig, shard_size: int) -> Iterator[ShardSpec]:
    """The source's shards in order (lazily: a sequential location is read while it is planned)."""
    locations = locate.resolve_locations(config)
    labels = locate.file_labels(locations)
    line_limit = readers.line_byte_limit(config.max_chars)
    index, position = 0, 0
    meter = ReadMeter()
    for (kind, location), label in zip(locations, labels):
        if config.limit is not None and position >= config.limit:
            return
        size = size_of(local_or_url(location)) if kind in ("jsonl", "json", "parquet") else 0
        if is_sequential(kind, str(location)):
            raw = readers.read_location(kind, location, label, first_position=position, line_limit=line_limit, meter=meter)
            specs = _plan_sequential(raw, shard_size, index, position, config.limit, meter)
        elif kind == "jsonl":
            specs = _plan_jsonl(local_or_url(location), label, shard_size, index, position, config.limit, line_limit, meter)
        elif kind == "parquet":
            specs = _plan_rows("parquet", str(location), label, readers.parquet_rows(local_or_url(location)), shard_size, index, position,
                               config.limit, meter, size)
        else:
            rows = len(readers.load_disk_dataset(str(location)))
            specs = _plan_rows("hf-disk", str(location), f"hf:{location}", rows, shard_size, index, position, config.limit, meter, 0)
        for spec in readers.guarded(specs, location):
            yield spec
            index, position = spec.index + 1, spec.first_position + spec.count
        meter.before, meter.handle = meter.before + size, None


def source_is_sequential(config: SourceConfig) -> bool:
    """Whether any of the source's locations can only be read from its start (compressed, a JSON array, stdin, remote)."""
    return any(is_sequential(kind, str(location)) for kind, location in resolve_locations(config))


def iter_raw_records(config: SourceConfig) -> Iterator[RawRecord]:
    """Every record of the source in a stable order, with its position, file label and line: the
    planned shards read one after another, so positions agree with the score phase's."""
    for spec in plan_shards(config, shard_size=1 << 16):
        yield from read_spec(spec)


def iter_samples(config: SourceConfig, renderer: TextRenderer, stats: SourceStats) -> Iterator[Sample]:
    """Rendered samples of a source; bad records are counted in `stats` and skipped (or raise)."""
    for raw in iter_raw_records(config):
        sample = to_sample(raw, config, renderer, stats)
        if sample is not None:
            yield sample
