"""Stream records from jsonl(.gz), parquet, directories/globs of them, and Hugging Face datasets.

Records are yielded one at a time with their file and line, so the pool never sits in memory. Bad
records (malformed JSON, not UTF-8, missing/empty/over-long text) are counted and reported with file
and line; under `on_error: fail` the first one stops the run with that message.
"""
from __future__ import annotations

import codecs
import glob
import gzip
import hashlib
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

from dataselect.config import SourceConfig
from dataselect.errors import ConfigError, InputError
from dataselect.io.render import BadRecord, TextRenderer
from dataselect.stats import BadInput, SourceStats

JSONL_SUFFIXES = (".jsonl", ".jsonl.gz", ".json", ".json.gz", ".ndjson")
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


def _labels(locations: list[tuple[str, Path | str]]) -> list[str]:
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


def _open_text_lines(path: Path) -> Iterator[bytes]:
    opener = gzip.open if path.name.endswith(".gz") else open
    with opener(path, "rb") as handle:
        yield from handle


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


def _read_jsonl(path: Path, label: str) -> Iterator[tuple[str, int, dict | None, str | None]]:
    for line_number, raw in enumerate(_open_text_lines(path), start=1):
        if line_number == 1:
            raw = raw.removeprefix(codecs.BOM_UTF8)  # written by some Windows tools; not part of the JSON
        if not raw.strip():
            continue
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            yield label, line_number, None, "not valid UTF-8"
            continue
        try:
            record = json.loads(text)
        except json.JSONDecodeError as error:
            yield label, line_number, None, f"malformed JSON ({error.msg})"
            continue
        if not isinstance(record, dict):
            yield label, line_number, None, "not a JSON object"
            continue
        if SURROGATE_ESCAPE.search(raw) is not None and (surrogate := _lone_surrogate(record)) is not None:
            yield label, line_number, None, f"a lone surrogate ({surrogate!r}) in a string, not valid Unicode"
            continue
        yield label, line_number, record, None


def _read_parquet(path: Path, label: str) -> Iterator[tuple[str, int, dict | None, str | None]]:
    import pyarrow.parquet as pq

    import pyarrow as pa

    row = 0
    try:
        for batch in pq.ParquetFile(path).iter_batches(batch_size=1024):
            for record in batch.to_pylist():
                row += 1
                yield label, row, record, None
    except pa.ArrowException as error:  # not parquet, or damaged: the file, not one record, is bad
        raise InputError(f"input error: cannot read {path} as parquet (after {row} rows): {str(error).splitlines()[0]}") from None


def _read_hf(spec: str) -> Iterator[tuple[str, int, dict | None, str | None]]:
    import datasets

    name, _, split = spec.partition(":")
    if Path(name).expanduser().is_dir():
        dataset = datasets.load_from_disk(str(Path(name).expanduser()))
        if isinstance(dataset, datasets.DatasetDict):
            if not split and len(dataset) != 1:
                raise ConfigError(f"config error: input.path: {spec!r} holds splits {list(dataset)}; name one as hf:PATH:SPLIT")
            dataset = dataset[split or next(iter(dataset))]
    else:
        # remote datasets stream: nothing is downloaded up front and memory stays bounded
        dataset = datasets.load_dataset(name, split=split or "train", streaming=True)
    label = f"hf:{spec}"
    for row, record in enumerate(dataset, start=1):
        record = dict(record)
        surrogate = _lone_surrogate(record)  # a JSON-backed dataset can carry the same escapes as jsonl
        if surrogate is not None:
            yield label, row, None, f"a lone surrogate ({surrogate!r}) in a string, not valid Unicode"
            continue
        yield label, row, record, None


def iter_raw_records(config: SourceConfig) -> Iterator[RawRecord]:
    """Every record of the source in a stable order, with its position, file label and line."""
    locations = resolve_locations(config)
    labels = _labels(locations)
    position = 0
    for (kind, loc), label in zip(locations, labels):
        reader = _read_hf(str(loc)) if kind == "hf" else (_read_parquet if kind == "parquet" else _read_jsonl)(Path(loc), label)
        try:
            for file_label, line, record, error in reader:
                yield RawRecord(position, file_label, line, record, error)
                position += 1
                if config.limit is not None and position >= config.limit:
                    return
        except (OSError, EOFError, gzip.BadGzipFile) as error:
            raise InputError(f"input error: cannot read {loc}: {error}") from None


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
