"""Format readers: the records of one location or one planned shard, yielded one at a time with their
file and line, so the pool never sits in memory. JSON Lines (byte ranges, or a compressed stream),
JSON arrays, parquet row groups, saved and streamed Hugging Face datasets; a malformed or non-UTF-8
record is a RawRecord with its error, never the end of the run."""
from __future__ import annotations

import codecs
import functools
import gzip
import itertools
import json
import re
import sys
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from dataselect.errors import ConfigError, InputError
from dataselect.io.locate import COMPRESSED_SUFFIXES
from dataselect.io.remote import is_url, open_raw
from dataselect.io.samples import RawRecord
from dataselect.io.streams import Damaged, OverLong, decompression_errors, open_binary, read_line, stdin_spool, stream_lines

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
    except (RecursionError, ValueError) as error:  # nested too deep; an integer of more digits than Python converts
        return None, f"malformed JSON ({unparsable(error)})"
    if not isinstance(record, dict):
        return None, "not a JSON object"
    if SURROGATE_ESCAPE.search(raw) is not None and (surrogate := _lone_surrogate(record)) is not None:
        return None, f"a lone surrogate ({surrogate!r}) in a string, not valid Unicode"
    return record, None


def unparsable(error: BaseException) -> str:
    """Why a JSON parser gave up on a record that is not a syntax error, in a few words."""
    if isinstance(error, RecursionError):
        return "nested too deeply to parse"
    return str(error).split(";")[0][:120]


def line_byte_limit(max_chars: int) -> int:
    """The longest line read for a record: room for `max_chars` characters escaped at 16 bytes each (a
    surrogate pair as two \\uXXXX), plus a MiB of other fields. A longer record would fail input.max_chars
    anyway; its line is skipped unread, so memory stays bounded whatever a line's length."""
    return 16 * max_chars + (1 << 20)


def _jsonl_records(lines: Iterator[bytes | OverLong], label: str, first_line: int, first_position: int, parse: bool = True) -> Iterator[RawRecord]:
    """Records of consecutive lines starting at line `first_line`; blank lines hold no record. Without
    `parse`, each record keeps its line's bytes for `parsed` to read later (in the worker that scores it)."""
    position = first_position
    for line_number, raw in enumerate(lines, start=first_line):
        if isinstance(raw, OverLong):
            yield RawRecord(position, label, line_number, None, f"over-long line ({raw.size:,} bytes, more than the {raw.limit:,} "
                            "input.max_chars allows); not parsed")
            position += 1
            continue
        if line_number == 1:
            raw = raw.removeprefix(codecs.BOM_UTF8)  # written by some Windows tools; not part of the JSON
        if not raw.strip():
            continue
        yield RawRecord(position, label, line_number, *_parse_jsonl_line(raw)) if parse else RawRecord(position, label, line_number, None, None, raw)
        position += 1


def parsed(record: RawRecord) -> RawRecord:
    """The record with its JSON line parsed (as it is when it was read parsed)."""
    return RawRecord(record.position, record.file, record.line, *_parse_jsonl_line(record.raw)) if record.raw is not None else record


def _byte_range_lines(path: Path | str, start: int, stop: int, limit: int | None) -> Iterator[bytes | OverLong]:
    with open_raw(path) as handle:
        handle.seek(start)
        offset = start
        while offset < stop:
            raw = read_line(handle, limit)
            if not raw:
                return
            offset += raw.size if isinstance(raw, OverLong) else len(raw)
            yield raw


def _stream_records(handle: Any, label: str, first_position: int, compressed: bool, limit: int | None, sniff: bool = False) -> Iterator[RawRecord]:
    """JSON Lines of an open stream (a compressed file, standard input), each line left unparsed for `parsed`,
    or with `sniff` a JSON array when its first byte is `[`. A compressed stream that breaks is one bad input
    where it broke, and its end."""
    if sniff and handle.peek(4096).removeprefix(codecs.BOM_UTF8).lstrip()[:1] == b"[":
        yield from _json_array_records(handle.read(), label, first_position)
        return
    position = first_position
    try:
        for record in _jsonl_records(stream_lines(handle, limit), label, 1, first_position, parse=False):
            position = record.position + 1
            yield record
    except Damaged as damaged:
        if not compressed:
            raise InputError(f"input error: cannot read {label} after line {damaged.lines}: {damaged.error}") from None
        why = str(damaged.error).splitlines()[0] if str(damaged.error) else type(damaged.error).__name__
        yield RawRecord(position, label, damaged.lines + 1, None, f"damaged compressed file: unreadable from this line on ({why})")


JSON_SPACE = re.compile(r"[ \t\n\r]*")
SURROGATE_ESCAPE_TEXT = re.compile(r"\\u[dD][89a-fA-F]")


def _json_array_records(data: bytes, label: str, first_position: int) -> Iterator[RawRecord]:
    """The elements of a JSON array (an Alpaca-style .json file), read whole; each element's line is
    where it starts. Malformed JSON is one bad input where it goes wrong (what follows is not read)."""
    try:
        text = data.removeprefix(codecs.BOM_UTF8).decode("utf-8")
    except UnicodeDecodeError as error:
        yield RawRecord(first_position, label, data.count(b"\n", 0, error.start) + 1, None, "not valid UTF-8")
        return
    decoder = json.JSONDecoder()
    index = JSON_SPACE.match(text).end() + 1  # past the opening bracket
    position, line, counted = first_position, 1, 0

    def line_at(offset: int) -> int:
        nonlocal line, counted
        line += text.count("\n", counted, offset)
        counted = offset
        return line

    while True:
        index = JSON_SPACE.match(text, index).end()
        if text.startswith("]", index) and position == first_position:
            break  # an empty array
        try:
            record, end = decoder.raw_decode(text, index)
        except json.JSONDecodeError as error:
            yield RawRecord(position, label, line_at(error.pos), None, f"malformed JSON array ({error.msg}); the rest of the file is not read")
            return
        except (RecursionError, ValueError) as error:  # the element's end is unknown: the rest cannot be read either
            yield RawRecord(position, label, line_at(index), None, f"malformed JSON array ({unparsable(error)}); the rest of the file is not read")
            return
        error = None
        if not isinstance(record, dict):
            record, error = None, "not a JSON object"
        elif SURROGATE_ESCAPE_TEXT.search(text, index, end) and (surrogate := _lone_surrogate(record)) is not None:
            record, error = None, f"a lone surrogate ({surrogate!r}) in a string, not valid Unicode"
        yield RawRecord(position, label, line_at(index), record, error)
        position += 1
        index = JSON_SPACE.match(text, end).end()
        if text.startswith(",", index):
            index += 1
        elif text.startswith("]", index):
            break
        else:
            yield RawRecord(position, label, line_at(index), None, "malformed JSON array (expected ',' or ']'); the rest of the file is not read")
            return
    if text[index + 1 :].strip():
        yield RawRecord(position, label, line_at(index + 1), None, "malformed JSON array (text after the closing ']')")


def _stdin_records(first_position: int, limit: int | None) -> Iterator[RawRecord]:
    spool = stdin_spool()
    if spool is None:  # not in a run (a dry run's first records): the stream itself
        yield from _stream_records(sys.stdin.buffer, "stdin", first_position, compressed=False, limit=limit, sniff=True)
        return
    with open(spool[0], "rb") as handle:
        yield from _stream_records(handle, "stdin", first_position, compressed=False, limit=limit, sniff=True)


def _file_records(kind: str, path: Path | str, label: str, first_position: int, limit: int | None, meter: Any = None) -> Iterator[RawRecord]:
    """Every record of a file read in one pass: compressed JSON Lines (unparsed), or a JSON array (parsed whole).
    `meter` (plan.ReadMeter) is given the open handle, to tell how far into the file the planner is."""
    with open_binary(path) as handle:
        if meter is not None:
            meter.handle = handle
        if kind == "json":
            try:
                data = handle.read()
            except decompression_errors() as error:
                yield RawRecord(first_position, label, 1, None, f"damaged compressed file: cannot read the JSON array ({error})")
                return
            yield from _json_array_records(data, label, first_position)
        else:
            yield from _stream_records(handle, label, first_position, compressed=str(path).endswith(COMPRESSED_SUFFIXES), limit=limit)


def parquet_rows(path: Path | str) -> int:
    """A parquet file's row count from its metadata, or an input error naming the file."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        return pq.ParquetFile(open_raw(path) if is_url(path) else path).metadata.num_rows
    except pa.ArrowException as error:  # not parquet, or damaged: the file, not one record, is bad
        raise InputError(f"input error: cannot read {path} as parquet: {str(error).splitlines()[0]}") from None


def _parquet_records(path: Path | str, label: str, start: int, stop: int, first_position: int) -> Iterator[RawRecord]:
    """Rows [start, stop) of a parquet file, reading only the row groups that hold them."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    row = start
    try:
        handle = pq.ParquetFile(open_raw(path) if is_url(path) else path)  # a local file by name: pyarrow memory-maps it
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


def hf_remote_parts(spec: str) -> tuple[str, str | None, str]:
    """`NAME`, `NAME:SPLIT` or `NAME:CONFIG:SPLIT` -> (name, config or None, split; train by default)."""
    parts = spec.split(":")
    if len(parts) > 3 or not all(parts):
        raise ConfigError(f"config error: input.path: 'hf:{spec}' is not hf:NAME, hf:NAME:SPLIT or hf:NAME:CONFIG:SPLIT")
    if len(parts) == 3:
        return parts[0], parts[1], parts[2]
    return parts[0], None, parts[1] if len(parts) == 2 else "train"


def _stream_hf(spec: str) -> Iterator[Any]:
    import datasets

    name, config_name, split = hf_remote_parts(spec)
    # remote datasets stream: nothing is downloaded up front and memory stays bounded
    return iter(datasets.load_dataset(name, config_name, split=split, streaming=True))


def local_or_url(location: Path | str) -> Path | str:
    """A location as the readers take it: a local Path, or an object-storage URL as it is (a Path would fold its //)."""
    return str(location) if is_url(location) else Path(location)


def read_location(kind: str, location: Path | str, label: str, first_position: int = 0, line_limit: int | None = None,
                  meter: Any = None) -> Iterator[RawRecord]:
    """Every record of one location, in order (what the planner reads for a sequential location). JSON lines
    keep their bytes unparsed: the planner ships them so, and read_spec parses them in the worker (parsing and
    pickling dicts cost the one-pass reader twice what cutting lines does)."""
    if kind == "hf":
        return _dataset_records(_stream_hf(str(location)), f"hf:{location}", 1, first_position)
    if kind == "stdin":
        return _stdin_records(first_position, line_limit)
    return _file_records(kind, local_or_url(location), label, first_position, line_limit, meter)


def read_spec(spec: Any) -> Iterator[RawRecord]:
    """The records of one planned shard (dataselect.io.plan.ShardSpec), with their positions and lines."""
    if spec.kind == "records":
        return map(parsed, spec.records)
    if spec.kind == "jsonl":
        records = _jsonl_records(_byte_range_lines(local_or_url(spec.location), spec.start, spec.stop, spec.line_limit), spec.label, spec.first_line,
                                 spec.first_position)
    elif spec.kind == "parquet":
        records = _parquet_records(local_or_url(spec.location), spec.label, spec.start, spec.stop, spec.first_position)
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
