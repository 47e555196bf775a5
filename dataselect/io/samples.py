"""A source's records as read (RawRecord: position, file, line) and as samples (Sample: id and rendered
text), with the rule that turns one into the other: a bad record is counted, or stops the run under
`on_error: fail`, with its file and line."""
from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from typing import Any

from dataselect.config import SourceConfig
from dataselect.errors import InputError
from dataselect.io.render import BadRecord, TextRenderer
from dataselect.stats import BadInput, SourceStats


@dataclass
class RawRecord:
    """One record as read; `record` is None when it could not be parsed (then `error` says why)."""

    position: int  # 0-based index among all records of the source, bad ones included
    file: str  # the label used in ids and error reports
    line: int  # 1-based line (jsonl) or row (parquet, datasets)
    record: dict[str, Any] | None
    error: str | None = None
    raw: bytes | None = None  # a JSON line not parsed yet (a one-pass source's line, parsed by the worker that scores it)

    def __reduce__(self) -> tuple:
        return RawRecord, (self.position, self.file, self.line, self.record, self.error, self.raw)  # a tuple pickles 3x faster than the instance dict


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


def usable_id(value: Any) -> bool:
    """A record's id field can serve as its id: a string, or an integer or finite number (not a bool, null,
    NaN, list or object, which would read differently in selection.parquet and the selected rows)."""
    if isinstance(value, str):
        return True
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def sample_id(config: SourceConfig, raw: RawRecord) -> str:
    """The record's id field as text when it is usable, else FILE:LINE (which the selected rows then carry)."""
    value = raw.record.get(config.id_field) if raw.record is not None else None
    return str(value) if usable_id(value) else f"{raw.file}:{raw.line}"


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
