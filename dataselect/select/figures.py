"""The figures a method adds to report.html, as data: a method builds them from its own metrics
(`Declared.figures`), and io/report.py draws them, so the report never reads a method's metric keys."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence, Union


@dataclass
class Table:
    headers: Sequence[str]
    rows: Sequence[Sequence[Any]]


@dataclass
class Bars:
    """One bar per name."""

    names: Sequence[Any]
    values: Sequence[float]
    title: str
    xlabel: str
    ylabel: str
    caption: str = ""


@dataclass
class PairedBars:
    """Two bars per name (e.g. pool and selection), labelled by `labels`."""

    names: Sequence[Any]
    first: Sequence[float]
    second: Sequence[float]
    labels: tuple[str, str]
    title: str
    ylabel: str
    caption: str = ""


@dataclass
class SizedBars:
    """Group sizes, largest first, with overlaid counts per group (e.g. selected, removed)."""

    sizes: Sequence[int]
    overlays: dict[str, Sequence[int]]
    title: str
    caption: str = ""


@dataclass
class Curves:
    """Series over steps (training losses), by name."""

    series: dict[str, Sequence[float]]
    title: str
    xlabel: str
    ylabel: str
    caption: str = ""


@dataclass
class Intervals:
    """A point with its interval per name (a mean and its 95% confidence interval), with an optional reference line."""

    names: Sequence[Any]
    means: Sequence[float]
    lows: Sequence[float]
    highs: Sequence[float]
    title: str
    xlabel: str
    caption: str = ""
    reference: float | None = None  # drawn as a dashed line (0 for a gap)


@dataclass
class Lines:
    """Series of (x, y) points by name, optionally with a log x axis; `dashed` series are drawn dashed (a fit)."""

    series: dict[str, tuple[Sequence[float], Sequence[float]]]
    title: str
    xlabel: str
    ylabel: str
    caption: str = ""
    logx: bool = False
    dashed: Sequence[str] = ()


@dataclass
class Note:
    text: str


Figure = Union[Table, Bars, PairedBars, SizedBars, Curves, Intervals, Lines, Note]


def seed_curves(curves: list[list[float]], name: str) -> dict[str, list[float]]:
    """One training-loss series per seed, by name (empty curves left out)."""
    return {f"{name} (seed {i})": list(curve) for i, curve in enumerate(curves) if curve}
