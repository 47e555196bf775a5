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
    quiet: bool = False  # a shard's stats: the run prints its bad inputs (BadInputPrinter), up to the cap for the whole run

    def record_bad(self, bad: BadInput) -> None:
        self.skipped += 1
        self.reasons[reason_kind(bad.reason)] += 1
        if len(self.bad) < MAX_REPORTED_BAD:
            self.bad.append(bad)
        if not self.quiet:
            _print_bad(self.role, bad, self.skipped)

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


def _print_bad(role: str, bad: BadInput, number: int) -> None:
    """The `number`-th bad input of a source, printed while under MAX_PRINTED_BAD; one line says there are more."""
    if number <= MAX_PRINTED_BAD:
        logger.warning("skipped bad %s input: %s", role, bad)
    elif number == MAX_PRINTED_BAD + 1:
        logger.warning("skipped bad %s input: more; see manifest.json", role)


class BadInputPrinter:
    """Prints the bad inputs of a source's shards as their results arrive, MAX_PRINTED_BAD for the whole run."""

    def __init__(self, role: str) -> None:
        self.role = role
        self.seen = 0

    def show(self, shard: SourceStats) -> None:
        for bad in shard.bad:
            if self.seen > MAX_PRINTED_BAD:
                return
            self.seen += 1
            _print_bad(self.role, bad, self.seen)


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
