"""Stream records from jsonl(.gz), parquet, directories/globs of them, and Hugging Face datasets.

Records are yielded one at a time with their file and line, so the pool never sits in memory. Bad
records (malformed JSON, not UTF-8, missing/empty/over-long text) are counted and reported with file
and line; under `on_error: fail` the first one stops the run with that message.
"""
from __future__ import annotations

import codecs
import contextlib
import functools
import glob
import gzip
import hashlib
import io
import itertools
import json
import logging
import os
import re
import shutil
import sys
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from dataselect.config import SourceConfig
from dataselect.errors import ConfigError, InputError
from dataselect.io.render import BadRecord, TextRenderer
from dataselect.stats import BadInput, SourceStats

COMPRESSED_SUFFIXES = (".gz", ".bz2", ".xz", ".zst")
JSONL_SUFFIXES = tuple(base + c for base in (".jsonl", ".json", ".ndjson") for c in ("",) + COMPRESSED_SUFFIXES)
JSON_ARRAY_SUFFIXES = tuple(".json" + c for c in ("",) + COMPRESSED_SUFFIXES)  # sniffed: a JSON array, or JSON Lines
PARQUET_SUFFIXES = (".parquet",)
STDIN = "-"  # input.path: - reads standard input
# what this engine writes into output.dir; a directory input skips them where a dataselect manifest says so
ENGINE_OUTPUTS = ("selection.parquet", "scores.parquet", "manifest.json", "selected.jsonl", "selected.parquet", "report.html")
CACHE_TAG = "CACHEDIR.TAG"  # the cache directory tag (bford.info/cachedir) the engine leaves in its cache root
CACHE_TAG_TEXT = "Signature: 8a477f597d28d172789f06886806bc55\n# dataselect's cache (runtime.cache_dir): score stores, not input\n"

logger = logging.getLogger(__name__)


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


@dataclass(frozen=True)
class SkippedFile:
    """A file a directory or glob input met but does not read, and why (reported, never parsed)."""

    path: str
    reason: str


NOT_DATA = "not a data file (.jsonl, .json, .ndjson, their .gz/.bz2/.xz/.zst, or .parquet)"
ENGINE_OUTPUT = "a dataselect output (its folder's manifest.json or scorer.json says so)"
FILE_KINDS = ("jsonl", "json", "parquet")


def _is_saved_dataset(path: Path) -> bool:
    """A `save_to_disk` folder: a Dataset (state.json + dataset_info.json) or a DatasetDict."""
    return path.is_dir() and (((path / "state.json").exists() and (path / "dataset_info.json").exists()) or (path / "dataset_dict.json").exists())


def hf_disk_path(spec: str) -> Path | None:
    """The saved dataset folder of an hf location `PATH[:SPLIT]`, or None for a remote dataset name."""
    path = Path(spec.partition(":")[0]).expanduser()
    return path if path.is_dir() else None


def _saved_dataset_locations(folder: Path) -> list[tuple[str, str]]:
    """A saved dataset met inside a directory input: one location, or one per split of a DatasetDict."""
    try:
        splits = json.loads((folder / "dataset_dict.json").read_text(encoding="utf-8"))["splits"]
    except (OSError, ValueError, KeyError, TypeError):
        return [("hf", str(folder))]
    return [("hf", f"{folder}:{split}") for split in splits]


def _is_engine_store(names: set[str]) -> bool:
    """The engine's cache: a tagged cache root, or a score store (key.json and its shard files)."""
    return CACHE_TAG in names or ("key.json" in names and ("complete.json" in names or any(n.startswith("shard-") for n in names)))


@functools.lru_cache(maxsize=256)
def _is_engine_output_folder(folder: Path, mtime_ns: int) -> bool:
    """A folder whose manifest.json is a dataselect manifest: its selection and rows are this engine's output."""
    try:
        manifest = json.loads((folder / "manifest.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(manifest, dict) and "config" in manifest and "dataselect" in (manifest.get("versions") or {})


@functools.lru_cache(maxsize=256)
def _is_scorer_folder(folder: Path, mtime_ns: int) -> bool:
    """A saved scorer's folder (its scorer.json names the method and its files): arrays, not data."""
    try:
        description = json.loads((folder / "scorer.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(description, dict) and "method" in description and "files" in description


def _engine_output(path: Path) -> bool:
    try:
        if (path.parent / "scorer.json").exists():
            return _is_scorer_folder(path.parent, (path.parent / "scorer.json").stat().st_mtime_ns)
        if path.name not in ENGINE_OUTPUTS:
            return False
        return _is_engine_output_folder(path.parent, (path.parent / "manifest.json").stat().st_mtime_ns)
    except OSError:
        return False


def _file_kind(path: Path, fmt: str) -> str | None:
    """jsonl, json (an array), parquet, or None for a name of no known data kind."""
    name = path.name
    if fmt == "parquet" or (fmt == "auto" and name.endswith(PARQUET_SUFFIXES)):
        return "parquet"
    if fmt == "jsonl" or name.endswith(JSONL_SUFFIXES):
        return "json" if name.endswith(JSON_ARRAY_SUFFIXES) and _starts_a_json_array(path) else "jsonl"
    return None


def _starts_a_json_array(path: Path) -> bool:
    """The first byte that is not whitespace (or a byte-order mark) is `[`: an Alpaca-style JSON array."""
    try:
        with _open_binary(path) as handle:
            head = handle.read(4096)
    except Exception:  # noqa: BLE001 - unreadable or damaged: read as JSON Lines, whose reader reports it
        return False
    return head.removeprefix(codecs.BOM_UTF8).lstrip()[:1] == b"["


def _classified(path: Path, fmt: str, found: list, skipped: list[SkippedFile]) -> None:
    """One file a directory or glob met: data (into `found`), or skipped with the reason."""
    if _engine_output(path):
        skipped.append(SkippedFile(str(path), ENGINE_OUTPUT))
    elif (kind := _file_kind(path, fmt)) is None:
        skipped.append(SkippedFile(str(path), NOT_DATA))
    else:
        found.append((path, kind, path))


def _walk(folder: Path, fmt: str) -> tuple[list[tuple[Path, str, Path | str]], list[SkippedFile]]:
    """A directory input's data: files of a data kind, and saved datasets read as datasets; never the
    engine's own outputs or cache, nor hidden files and folders; any other file is skipped and reported."""
    found: list[tuple[Path, str, Path | str]] = []
    skipped: list[SkippedFile] = []
    for root, dirs, files in os.walk(folder):
        here = Path(root)
        if _is_engine_store(set(files)):
            dirs[:] = []
            continue
        if here != folder and _is_saved_dataset(here):
            found.extend((here, kind, loc) for kind, loc in _saved_dataset_locations(here))
            dirs[:] = []
            continue
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(files):
            if not name.startswith(".") and (here / name).is_file():
                _classified(here / name, fmt, found, skipped)
    return found, skipped


def _glob(pattern: str, fmt: str) -> tuple[list[tuple[Path, str, Path | str]], list[SkippedFile]]:
    """A glob's data, by the directory rules: a matched saved dataset is read as one, a file inside one
    or inside the engine's cache is not read, anything else is classified."""
    found: list[tuple[Path, str, Path | str]] = []
    skipped: list[SkippedFile] = []
    pattern = os.path.expanduser(pattern)
    matches = sorted(Path(p) for p in glob.glob(pattern, recursive=True))
    datasets = {Path(os.path.abspath(m)) for m in matches if _is_saved_dataset(m)}
    literal = re.split(r"[*?\[]", pattern, maxsplit=1)[0]  # the folder the pattern starts in: folders above it are not looked at
    top = Path(os.path.abspath(literal if literal.endswith(os.sep) or os.path.isdir(literal) else os.path.dirname(literal) or "."))
    marks: dict[Path, str | None] = {}

    def mark(folder: Path) -> str | None:  # "cache", "dataset" or None, for one folder (memoised)
        if folder not in marks:
            names = {p.name for p in folder.iterdir()} if folder.is_dir() else set()
            marks[folder] = "cache" if _is_engine_store(names) else "dataset" if _is_saved_dataset(folder) else None
        return marks[folder]

    for match in matches:
        absolute = Path(os.path.abspath(match))
        folders = list(itertools.takewhile(lambda f: f != top.parent, absolute.parents))  # up to the pattern's own folder
        if absolute in datasets:
            if not any(f in datasets for f in folders):  # not a split folder of a matched DatasetDict
                found.extend((match, kind, loc) for kind, loc in _saved_dataset_locations(match))
            continue
        if not match.is_file():
            continue
        enclosing = next(((f, mark(f)) for f in folders if mark(f) is not None), None)
        if enclosing is None:
            _classified(match, fmt, found, skipped)
        elif enclosing[1] == "dataset" and not any(f in datasets for f in folders):
            skipped.append(SkippedFile(str(match), f"part of the saved dataset {enclosing[0]} (name its folder to read it)"))
    return found, skipped


def _role(config: SourceConfig) -> str:
    return "target" if type(config).__name__ == "TargetConfig" else "input"


def _expand(path: str, fmt: str, role: str = "input") -> tuple[list[tuple[str, Path | str]], list[SkippedFile]]:
    """One configured path -> ([(kind, location)], skipped files), kind in jsonl/json/parquet/hf/stdin, in a stable order."""
    if path == STDIN:
        return [("stdin", STDIN)], []
    if path.startswith("hf:") or fmt == "hf":
        return [("hf", path.removeprefix("hf:"))], []
    candidate = Path(path).expanduser()
    if _is_saved_dataset(candidate):
        return [("hf", str(candidate))], []
    skipped: list[SkippedFile] = []
    if candidate.is_dir():
        found, skipped = _walk(candidate, fmt)
    elif candidate.is_file():
        kind = _file_kind(candidate, fmt)
        if kind is None:
            raise ConfigError(f"config error: {role}.format: cannot tell the kind of {path} from its name; set {role}.format: jsonl "
                              "(JSON Lines, or a JSON array of records) or parquet")
        found = [(candidate, kind, candidate)]
    else:
        found, skipped = _glob(path, fmt)
    if not found:
        detail = f" (skipped {len(skipped)}; the first: {skipped[0].path}: {skipped[0].reason})" if skipped else ""
        raise InputError(f"input error: no input files found at {path!r}{detail}")
    return [(kind, loc) for _, kind, loc in sorted(found, key=lambda item: item[0])], skipped


def _paths(config: SourceConfig) -> list[str]:
    if config.path is None:
        raise ConfigError(f"config error: {_role(config)}.path is required (a file, glob, directory, - for standard input, or hf:NAME[:CONFIG][:SPLIT])")
    return [config.path] if isinstance(config.path, str) else list(config.path)


def resolve_locations(config: SourceConfig) -> list[tuple[str, Path | str]]:
    return [loc for p in _paths(config) for loc in _expand(p, config.format, _role(config))[0]]


def skipped_files(config: SourceConfig) -> list[SkippedFile]:
    """Files a directory or glob of the source met and does not read (not data, or this engine's output)."""
    return [skip for p in _paths(config) for skip in _expand(p, config.format, _role(config))[1]]


def file_labels(locations: list[tuple[str, Path | str]]) -> list[str]:
    """Short, stable file labels for ids: the path relative to the files' common folder."""
    files = [Path(loc).resolve() for kind, loc in locations if kind in FILE_KINDS]
    root = Path(os.path.commonpath([str(f.parent) for f in files])) if files else None
    labels = []
    for kind, loc in locations:
        label = "stdin" if kind == "stdin" else str(Path(loc).resolve().relative_to(root)) if kind in FILE_KINDS else str(loc)
        # a file name that is not UTF-8 (Python holds its bytes as lone surrogates) is shown as \xNN: the
        # label goes into ids, which Arrow and every later tool need as valid UTF-8
        labels.append(os.fsencode(label).decode("utf-8", "backslashreplace"))
    return labels


def fingerprint(config: SourceConfig) -> list[Any]:
    """What identifies the source's content for caching: paths with size and mtime, or the dataset name;
    standard input is new every run (never a cache hit)."""
    out: list[Any] = []
    for kind, loc in resolve_locations(config):
        if kind == "stdin":
            spool = _STDIN_SPOOL[0]
            out.append(["stdin", spool[1] if spool is not None else uuid.uuid4().hex])
        elif kind == "hf":
            folder = hf_disk_path(str(loc))
            if folder is not None:
                files = sorted(p for p in folder.rglob("*") if p.is_file())
                split = str(loc).partition(":")[2]
                out.append(["hf-disk", str(folder.resolve()), split, [[p.name, p.stat().st_size, p.stat().st_mtime_ns] for p in files]])
            else:
                out.append(["hf", loc])
        else:
            stat = Path(loc).stat()
            out.append([kind, str(Path(loc).resolve()), stat.st_size, stat.st_mtime_ns])
    return out


def _open_binary(path: Path) -> Any:
    if path.name.endswith(".gz"):
        return gzip.open(path, "rb")
    if path.name.endswith(".bz2"):
        import bz2

        return bz2.open(path, "rb")
    if path.name.endswith(".xz"):
        import lzma

        return lzma.open(path, "rb")
    if path.name.endswith(".zst"):
        return io.BufferedReader(_ZstdReader(path), 1 << 20)
    return open(path, "rb")


class _ZstdReader(io.RawIOBase):
    """A .zst file's bytes, frame after frame; a file that ends inside a frame raises EOFError, as gzip,
    bz2 and xz do (zstandard's own stream reader ends quietly there, and the rest is lost without a word)."""

    CHUNK = 1 << 20

    def __init__(self, path: Path) -> None:
        import zstandard

        self._zstd = zstandard
        self._file = open(path, "rb")
        self._decoder = zstandard.ZstdDecompressor().decompressobj()
        self._pending = b""
        self._in_frame = False

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        while not self._pending:
            chunk = self._file.read(self.CHUNK)
            if not chunk:
                if self._in_frame:
                    raise EOFError("compressed file ended before the end of a zstd frame")
                return 0
            while chunk:
                self._in_frame = True
                self._pending += self._decoder.decompress(chunk)
                chunk = b""
                if self._decoder.eof:  # a frame ended; the next one (if any) starts in its unused data
                    chunk, self._in_frame = self._decoder.unused_data, False
                    self._decoder = self._zstd.ZstdDecompressor().decompressobj()
        size = min(len(buffer), len(self._pending))
        buffer[:size] = self._pending[:size]
        self._pending = self._pending[size:]
        return size

    def close(self) -> None:
        self._file.close()
        super().close()


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


class _Damaged(Exception):
    """A compressed stream stopped decompressing after `lines` lines."""

    def __init__(self, lines: int, error: BaseException) -> None:
        super().__init__(str(error))
        self.lines = lines
        self.error = error


def _decompression_errors() -> tuple[type[BaseException], ...]:
    """What gzip, bz2, xz and zstd raise for a damaged or cut stream (bz2 and gzip raise OSError kinds)."""
    import lzma
    import zlib

    errors: tuple[type[BaseException], ...] = (EOFError, OSError, zlib.error, lzma.LZMAError)
    try:
        import zstandard

        errors += (zstandard.ZstdError,)
    except ImportError:
        pass
    return errors


def _lines(handle: Any) -> Iterator[bytes]:
    """The stream's lines; a decompression failure becomes _Damaged, carrying how far it got."""
    count = 0
    errors = _decompression_errors()
    iterator = iter(handle)
    while True:
        try:
            raw = next(iterator)
        except StopIteration:
            return
        except errors as error:
            raise _Damaged(count, error) from None
        count += 1
        yield raw


def _stream_records(handle: Any, label: str, first_position: int, compressed: bool, sniff: bool = False) -> Iterator[RawRecord]:
    """JSON Lines of an open stream (a compressed file, standard input), or with `sniff` a JSON array when
    its first byte is `[`. A compressed stream that breaks is one bad input where it broke, and its end."""
    if sniff and handle.peek(4096).removeprefix(codecs.BOM_UTF8).lstrip()[:1] == b"[":
        yield from _json_array_records(handle.read(), label, first_position)
        return
    position = first_position
    try:
        for record in _jsonl_records(_lines(handle), label, 1, first_position):
            position = record.position + 1
            yield record
    except _Damaged as damaged:
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


# Standard input, copied once into a file under the cache folder for the run (see spool_stdin): the score
# phase and the selected rows both read it. (path, token): the token makes every run's cache key new.
_STDIN_SPOOL: list[tuple[Path, str] | None] = [None]


@contextlib.contextmanager
def spool_stdin(folder: Path) -> Iterator[None]:
    """Standard input copied to a file in `folder` for the length of the block (then removed), so a run
    can read `input.path: -` more than once; its cache key is new every time (never a cache hit)."""
    folder.mkdir(parents=True, exist_ok=True)
    token = uuid.uuid4().hex
    path = folder / f"stdin-{token}"
    try:
        with open(path, "wb") as out:
            shutil.copyfileobj(sys.stdin.buffer, out, 1 << 20)
        _STDIN_SPOOL[0] = (path, token)
        yield
    finally:
        _STDIN_SPOOL[0] = None
        path.unlink(missing_ok=True)


def _stdin_records(first_position: int) -> Iterator[RawRecord]:
    spool = _STDIN_SPOOL[0]
    if spool is None:  # not in a run (a dry run's first records): the stream itself
        yield from _stream_records(sys.stdin.buffer, "stdin", first_position, compressed=False, sniff=True)
        return
    with open(spool[0], "rb") as handle:
        yield from _stream_records(handle, "stdin", first_position, compressed=False, sniff=True)


def _file_records(kind: str, path: Path, label: str, first_position: int) -> Iterator[RawRecord]:
    """Every record of a file read in one pass: compressed JSON Lines, or a JSON array."""
    with _open_binary(path) as handle:
        if kind == "json":
            try:
                data = handle.read()
            except _decompression_errors() as error:
                yield RawRecord(first_position, label, 1, None, f"damaged compressed file: cannot read the JSON array ({error})")
                return
            yield from _json_array_records(data, label, first_position)
        else:
            yield from _stream_records(handle, label, first_position, compressed=path.name.endswith(COMPRESSED_SUFFIXES))


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


def read_location(kind: str, location: Path | str, label: str, first_position: int = 0) -> Iterator[RawRecord]:
    """Every record of one location, in order (what the planner reads for a sequential location)."""
    if kind == "hf":
        return _dataset_records(_stream_hf(str(location)), f"hf:{location}", 1, first_position)
    if kind == "stdin":
        return _stdin_records(first_position)
    return _file_records(kind, Path(location), label, first_position)


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
