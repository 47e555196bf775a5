"""Counters and timings of one run; they end up in manifest.json."""
from __future__ import annotations

import logging
import re
import time
from collections import Counter
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Iterator

logger = logging.getLogger(__name__)

MAX_REPORTED_BAD = 1000  # bad inputs listed one by one in the manifest; the counts cover all of them
MAX_PRINTED_BAD = 20  # ... and printed to stderr as they are met


@dataclass
class BadInput:
    file: str
    line: int
    reason: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: {self.reason}"


def reason_kind(reason: str) -> str:
    """A bad-input reason without its details, the manifest's key for counting: "no text field (the record
    has: ...)" -> "no text field", "over-long: 120,000 characters > ..." -> "over-long"."""
    return re.split(r" \(|: ", reason, maxsplit=1)[0]


@dataclass
class SourceStats:
    """What happened to the records of one source (pool or target)."""

    role: str
    read: int = 0
    skipped: int = 0
    reasons: Counter = field(default_factory=Counter)
    bad: list[BadInput] = field(default_factory=list)

    def record_bad(self, bad: BadInput) -> None:
        self.skipped += 1
        self.reasons[reason_kind(bad.reason)] += 1
        if len(self.bad) < MAX_REPORTED_BAD:
            self.bad.append(bad)

    def merge(self, other: "SourceStats") -> None:
        self.read += other.read
        self.skipped += other.skipped
        self.reasons.update(other.reasons)
        self.bad.extend(other.bad[: max(0, MAX_REPORTED_BAD - len(self.bad))])

    def to_dict(self) -> dict:
        return {
            "read": self.read,
            "skipped": self.skipped,
            "skipped_by_reason": dict(self.reasons),
            "bad_inputs": [vars(b) for b in self.bad],
        }

    @classmethod
    def from_dict(cls, role: str, data: dict) -> "SourceStats":
        return cls(
            role=role,
            read=data["read"],
            skipped=data["skipped"],
            reasons=Counter(data["skipped_by_reason"]),
            bad=[BadInput(**b) for b in data["bad_inputs"]],
        )


class BadInputPrinter:
    """Prints a source's bad inputs as its shards' results arrive: the first of each (file, reason) in full,
    at most MAX_PRINTED_BAD of them, and at the end (`close`) one line per (file, reason) for the rest, so a
    file with one systematic fault gives two lines, not one per record."""

    def __init__(self, role: str) -> None:
        self.role = role
        self.counts: Counter = Counter()  # (file, reason kind) -> bad records
        self.printed: set[tuple[str, str]] = set()  # ... whose first record was printed

    def show(self, shard: SourceStats) -> None:
        counts = Counter((bad.file, reason_kind(bad.reason)) for bad in shard.bad)
        files = {file for file, _ in counts}
        if len(files) == 1:  # a shard holds one file's records: its reason counts also cover those past the listed ones
            file = files.pop()
            counts = Counter({(file, kind): count for kind, count in shard.reasons.items()})
        for bad in shard.bad:
            key = (bad.file, reason_kind(bad.reason))
            if key in self.counts:  # met before (an earlier shard, or earlier in this one)
                continue
            self.counts[key] += 0
            if len(self.printed) < MAX_PRINTED_BAD:
                logger.warning("skipped bad %s input: %s", self.role, bad)
                self.printed.add(key)
        self.counts.update(counts)

    def close(self) -> None:
        """One line per (file, reason) for its records not printed (at most MAX_PRINTED_BAD lines)."""
        rest = [(key, count - (key in self.printed)) for key, count in self.counts.items() if count > (key in self.printed)]
        for (file, kind), count in rest[:MAX_PRINTED_BAD]:
            more = " more" if (file, kind) in self.printed else ""
            logger.warning("skipped %s%s bad %s input%s in %s: %s", f"{count:,}", more, self.role, "s" if count > 1 else "", file, kind)
        if len(rest) > MAX_PRINTED_BAD:
            logger.warning("skipped bad %s inputs in %d more file/reason pairs; manifest.json lists them", self.role, len(rest) - MAX_PRINTED_BAD)


@dataclass
class RunStats:
    timings: dict[str, float] = field(default_factory=dict)
    counters: Counter = field(default_factory=Counter)

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            self.timings[name] = self.timings.get(name, 0.0) + time.perf_counter() - start
