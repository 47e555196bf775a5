"""The report's figures: matplotlib drawn headless (the Agg canvas, no pyplot and no global backend
switch, so a caller's own matplotlib set-up is untouched), each returned as PNG bytes."""
from __future__ import annotations

import io
import logging
from typing import Any, Sequence

import numpy as np

POOL_COLOUR = "#9aa9bd"
SELECTED_COLOUR = "#d9480f"
CHUNK = 1 << 22  # scores histogrammed per chunk, so a 100M-sample pool is never copied whole


def _figure(width: float = 7.0, height: float = 3.4, left: float = 0.8, bottom: float = 0.6) -> tuple[Any, Any]:
    """A figure with fixed margins (`left` in inches, room for tick labels): a layout engine would
    draw every figure twice, and drawing is most of a report's cost."""
    logging.getLogger("matplotlib").setLevel(logging.WARNING)  # its font-cache notes are not the run's log
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width, height), dpi=100)
    FigureCanvasAgg(figure)
    figure.subplots_adjust(left=left / width, right=1 - 0.2 / width, bottom=bottom / height, top=1 - 0.35 / height)
    return figure, figure.add_subplot()


def preload() -> None:
    """Import matplotlib and load its fonts (about half a second), by drawing an empty figure: called in a
    thread while worker processes score, so the report does not pay for it after the scoring."""
    figure, axes = _figure()
    axes.set_title("preload")
    _png(figure)


def _png(figure: Any) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return buffer.getvalue()


def label(text: Any, limit: int = 40) -> str:
    """Text as matplotlib draws it literally: `$` would start mathtext, and long names are cut."""
    value = "(missing)" if text is None else str(text)
    value = value if len(value) <= limit else value[: limit - 1] + "…"
    return value.replace("$", r"\$")


def finite_range(values: np.ndarray) -> tuple[float, float, int] | None:
    """(min, max, count) of the finite values, chunk by chunk; None when there is none."""
    low, high, count = np.inf, -np.inf, 0
    for start in range(0, len(values), CHUNK):
        chunk = np.asarray(values[start : start + CHUNK], np.float64)
        chunk = chunk[np.isfinite(chunk)]
        if len(chunk):
            low, high, count = min(low, chunk.min()), max(high, chunk.max()), count + len(chunk)
    return (float(low), float(high), count) if count else None


def histogram(values: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Counts of `values` per bin of `edges`, in chunks (no copy of a large array); non-finite values are left out."""
    counts = np.zeros(len(edges) - 1, np.int64)
    for start in range(0, len(values), CHUNK):
        chunk = np.asarray(values[start : start + CHUNK], np.float64)
        counts += np.histogram(chunk[np.isfinite(chunk)], edges)[0]
    return counts


def score_histogram(pool: np.ndarray, selected: np.ndarray, title: str, xlabel: str, bins: int = 60, threshold: bool = True) -> bytes | None:
    """The pool's scores, the selected rows' scores on the same bins, and (`threshold`: a top-K by score) the selected range's ends."""
    span = finite_range(pool)
    picked = np.asarray(selected, np.float64)
    picked = picked[np.isfinite(picked)]
    if span is None:
        return None
    low, high = min(span[0], picked.min(initial=span[0])), max(span[1], picked.max(initial=span[1]))
    edges = np.linspace(low, high if high > low else low + 1.0, bins + 1)
    figure, axes = _figure()
    # stairs: one artist per histogram (a bar per bin would be 2 x bins artists to lay out and draw)
    axes.stairs(histogram(pool, edges), edges, fill=True, color=POOL_COLOUR, label=f"pool ({span[2]:,})")
    if len(picked):
        axes.stairs(histogram(picked, edges), edges, fill=True, color=SELECTED_COLOUR, alpha=0.85, label=f"selected ({len(picked):,})")
    if len(picked) and threshold:
        axes.axvline(picked.min(), color="black", linestyle="--", linewidth=1.2, label=f"lowest selected {picked.min():.4g}")
        if picked.max() < span[1]:  # a window or a sample: the top of the pool was not all taken
            axes.axvline(picked.max(), color="black", linestyle=":", linewidth=1.2, label=f"highest selected {picked.max():.4g}")
    axes.set_yscale("log")
    axes.set_xlabel(label(xlabel, 60))
    axes.set_ylabel("samples (log scale)")
    axes.set_title(label(title, 80))
    axes.legend(fontsize=8)
    return _png(figure)


def paired_bars(names: Sequence[Any], first: Sequence[float], second: Sequence[float], labels: tuple[str, str], title: str,
                xlabel: str) -> bytes:
    """Horizontal bars, two per name (the pool's share and the selection's, say), first name on top."""
    height = max(2.2, 0.32 * len(names) + 1.2)
    figure, axes = _figure(7.0, height, left=2.6)
    y = np.arange(len(names))
    axes.barh(y - 0.2, first, height=0.4, color=POOL_COLOUR, label=labels[0])
    axes.barh(y + 0.2, second, height=0.4, color=SELECTED_COLOUR, label=labels[1])
    axes.set_yticks(y, [label(n) for n in names], fontsize=8)
    axes.invert_yaxis()
    axes.set_xlabel(label(xlabel, 60))
    axes.set_title(label(title, 80))
    axes.legend(fontsize=8)
    return _png(figure)


def bars(names: Sequence[Any], values: Sequence[float], title: str, xlabel: str, ylabel: str) -> bytes:
    """Vertical bars, one per name (cluster sizes, a stage's seconds); names slanted when there are many."""
    slanted = 6 < len(names) <= 30
    figure, axes = _figure(7.0, 4.0 if slanted else 3.4, bottom=1.3 if slanted else 0.6)
    x = np.arange(len(values))
    axes.bar(x, values, color=POOL_COLOUR)
    if len(names) <= 30:
        axes.set_xticks(x, [label(n, 18) for n in names], rotation=40 if slanted else 0, ha="right" if slanted else "center", fontsize=8)
    axes.set_xlabel(label(xlabel, 60))
    axes.set_ylabel(label(ylabel, 60))
    axes.set_title(label(title, 80))
    return _png(figure)


def sized_bars(sizes: Sequence[int], overlays: dict[str, Sequence[int]], title: str) -> bytes:
    """Clusters by size, largest first, with other per-cluster counts (selected, removed) on top."""
    order = np.argsort(-np.asarray(sizes), kind="stable")
    figure, axes = _figure()
    x = np.arange(len(order))
    axes.bar(x, np.asarray(sizes)[order], width=1.0, color=POOL_COLOUR, label="cluster size")
    colours = [SELECTED_COLOUR, "#2f9e44", "#1971c2"]
    for (name, values), colour in zip(overlays.items(), colours):
        axes.bar(x, np.asarray(values)[order], width=0.6, color=colour, alpha=0.85, label=label(name))
    axes.set_xlabel("clusters, largest first")
    axes.set_ylabel("samples")
    axes.set_title(label(title, 80))
    axes.legend(fontsize=8)
    return _png(figure)


def curves(series: dict[str, Sequence[float]], title: str, xlabel: str, ylabel: str) -> bytes:
    """One line per named series (a proxy's training loss per seed, say)."""
    figure, axes = _figure()
    for name, values in series.items():
        axes.plot(np.arange(1, len(values) + 1), values, linewidth=1.2, label=label(name))
    return _labelled(figure, axes, title, xlabel, ylabel, legend=1 < len(series) <= 10)


def _labelled(figure: Any, axes: Any, title: str, xlabel: str, ylabel: str, legend: bool) -> bytes:
    """The axis labels, title and (when asked) legend of a line plot, then its PNG."""
    axes.set_xlabel(label(xlabel, 60))
    axes.set_ylabel(label(ylabel, 60))
    axes.set_title(label(title, 80))
    if legend:
        axes.legend(fontsize=8)
    return _png(figure)


def intervals(names: Sequence[Any], means: Sequence[float], lows: Sequence[float], highs: Sequence[float], title: str, xlabel: str,
              reference: float | None = None) -> bytes:
    """Horizontal intervals, one per name (first on top): the mean as a dot, the interval as a bar."""
    height = max(2.2, 0.36 * len(names) + 1.2)
    figure, axes = _figure(7.0, height, left=2.6)
    y = np.arange(len(names))
    means, lows, highs = (np.asarray(v, np.float64) for v in (means, lows, highs))
    axes.errorbar(means, y, xerr=[means - lows, highs - means], fmt="o", color=SELECTED_COLOUR, ecolor=POOL_COLOUR, elinewidth=3, capsize=3)
    if reference is not None:
        axes.axvline(reference, color="black", linestyle="--", linewidth=1.0)
    axes.set_yticks(y, [label(n) for n in names], fontsize=8)
    axes.set_ylim(len(names) - 0.5, -0.5)
    axes.set_xlabel(label(xlabel, 60))
    axes.set_title(label(title, 80))
    return _png(figure)


def lines(series: dict[str, tuple[Sequence[float], Sequence[float]]], title: str, xlabel: str, ylabel: str, logx: bool = False,
          dashed: Sequence[str] = ()) -> bytes:
    """One line with markers per named (x, y) series; `dashed` names are drawn dashed without markers, the
    k-th dashed one in the colour of the k-th solid one (a fit beside what it fits)."""
    figure, axes = _figure()
    solid = [name for name in series if name not in dashed]
    for name, (xs, ys) in series.items():
        order = list(dashed).index(name) if name in dashed else solid.index(name)
        style = {"linestyle": "--", "linewidth": 1.0} if name in dashed else {"marker": "o", "linewidth": 1.4}
        axes.plot(xs, ys, label=label(name), color=f"C{order % 10}", **style)
    if logx:
        axes.set_xscale("log")
    return _labelled(figure, axes, title, xlabel, ylabel, legend=1 < len(series) <= 12)
