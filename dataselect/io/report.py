"""report.html: a run's result at a glance, one self-contained file beside selection.parquet.

A run's sections: the pool's score histogram with the selected range marked (one per task for per-task
scores, up to MAX_TASK_PLOTS, else the per-sample max); the selection's composition against the
pool's by each categorical field the pool's store holds (io/categorical.py); the method's own
figures, which each method declares as data (select/figures.py; its `figures`), and every scalar
metric in a table; counts, bad inputs,
timings and throughput. An eval's report (render_eval) holds `dataselect eval`'s comparison and keep
sweeps, declared by dataselect/evaluate/figures.py. Plots are PNGs embedded as base64 (no network, no script); every text is
HTML-escaped. It is written after selection.parquet and manifest.json, and a failure to write it
is one log line, never a lost run.
"""
from __future__ import annotations

import base64
import html
import logging
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np

from dataselect.config import METHODS
from dataselect.errors import ConfigError
from dataselect.io import plots
from dataselect.io.categorical import Composition, composition, store_fields
from dataselect.io.shards import atomic_write_text
from dataselect.methods import method_class
from dataselect.select.base import RANKINGS, Selection
from dataselect.select.figures import Bars, Curves, Figure, Intervals, Lines, Note, PairedBars, SizedBars, Table

logger = logging.getLogger(__name__)

REPORT_NAME = "report.html"
MAX_TASK_PLOTS = 6  # per-task histograms; more tasks: one histogram of each sample's best task score
TOP_VALUES = 15  # categorical values shown one by one; the rest are summed as "other"
MAX_BAD_SHOWN = 20

STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 60em; color: #212529; line-height: 1.4; }
h1 { font-size: 1.5em; } h2 { font-size: 1.2em; border-bottom: 1px solid #dee2e6; padding-bottom: .2em; margin-top: 2em; }
h3 { font-size: 1em; }
table { border-collapse: collapse; margin: .6em 0; font-size: .9em; }
th, td { border: 1px solid #dee2e6; padding: .2em .6em; text-align: left; vertical-align: top; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
figure { margin: .8em 0; } figcaption { font-size: .85em; color: #495057; }
img { max-width: 100%; height: auto; } .note { color: #495057; font-size: .9em; }
"""


def esc(value: Any) -> str:
    """Any value as HTML-escaped text."""
    return html.escape(str(value), quote=True)


def fmt(value: Any) -> str:
    """A cell's text: integers with separators, floats to 4 significant digits."""
    if isinstance(value, (bool, np.bool_)) or value is None:
        return "-" if value is None else str(value)
    if isinstance(value, (int, np.integer)):
        return f"{int(value):,}"
    if isinstance(value, (float, np.floating)):
        return f"{float(value):.4g}"
    return str(value)


def table(headers: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    """An HTML table; numbers right-aligned and formatted by `fmt`, every cell escaped."""
    head = "".join(f"<th>{esc(h)}</th>" for h in headers)
    body = "".join(
        "<tr>" + "".join(f'<td class="num">{esc(fmt(c))}</td>' if isinstance(c, (int, float, np.number)) and not isinstance(c, bool)
                         else f"<td>{esc(fmt(c))}</td>" for c in row) + "</tr>"
        for row in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def image(png: bytes | None, alt: str, caption: str = "") -> str:
    """A PNG as an embedded figure with its caption (nothing for None)."""
    if png is None:
        return ""
    data = base64.b64encode(png).decode("ascii")
    return f'<figure><img src="data:image/png;base64,{data}" alt="{esc(alt)}"><figcaption>{esc(caption)}</figcaption></figure>'


def note(text: str) -> str:
    """A sentence of explanation, escaped."""
    return f'<p class="note">{esc(text)}</p>'


def flatten(data: dict[str, Any], prefix: str = "") -> list[tuple[str, Any]]:
    """Scalar leaves of nested metrics as dotted keys; lists appear as their length."""
    out: list[tuple[str, Any]] = []
    for key, value in data.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.extend(flatten(value, name + "."))
        elif isinstance(value, (list, tuple)):
            out.append((name, f"[{len(value)} values]"))
        else:
            out.append((name, value))
    return out


# ------------------------------------------------------------------------------------------------
# sections
# ------------------------------------------------------------------------------------------------


def task_names(selection: Selection, count: int) -> list[str]:
    """Names of the columns of [N, T] pool scores, as the method gave them."""
    names = selection.tasks or []
    return [str(n) for n in names] if len(names) == count else [f"task {t}" for t in range(count)]


def threshold_text(chosen: np.ndarray) -> str:
    """The selection threshold as the caption states it (the dashed line in the plot)."""
    finite = chosen[np.isfinite(chosen)]
    if not len(finite):
        return ""
    return f"; selection threshold (dashed: the lowest selected score) {finite.min():.6g}, highest selected {finite.max():.6g}"


def eligibility_text(manifest: dict[str, Any]) -> str:
    """What kept pool rows out whatever their score, as the histogram's caption says it."""
    reasons = ((manifest.get("budget") or {}).get("not_eligible")) or {}
    return (" Grey rows include " + ", ".join(f"{count:,} {reason.replace('_', ' ')}" for reason, count in reasons.items())
            + " that could not be selected whatever their score.") if reasons else ""


def scores_section(selection: Selection, method: str, manifest: dict[str, Any] | None = None) -> str:
    """The pool's score histogram(s) with the selected rows, as the method's ranking allows (report section)."""
    pool = selection.pool_scores
    if pool is None:
        return note("This method keeps no per-sample pool scores.")
    if selection.ranking == "random":
        return note(f"The selection is {RANKINGS['random']}, so no score histogram is drawn.")
    chosen = np.asarray(selection.scores, np.float64)
    parts = [] if selection.ranking == "top" else [note(f"How {method} ranks: {RANKINGS[selection.ranking]}.")]
    threshold = threshold_text if selection.ranking == "top" else (lambda _: "")
    ineligible = eligibility_text(manifest or {})
    if pool.ndim == 2 and pool.shape[1] == 1:
        pool = pool[:, 0]
    if pool.ndim == 1:
        parts.append(image(plots.score_histogram(pool, chosen, f"{method}: pool scores", "score", threshold=selection.ranking == "top"),
                           "histogram of pool scores", "Every pool row's score (grey) and the selected rows' (orange)" + threshold(chosen)
                           + "." + ineligible))
        missing = len(pool) - (plots.finite_range(pool) or (0, 0, 0))[2]
        if missing:
            parts.append(note(f"{missing:,} pool rows have no finite score and are not drawn."))
        return "".join(parts)
    names = task_names(selection, pool.shape[1])
    tasks = selection.columns.get("task")
    if pool.shape[1] <= MAX_TASK_PLOTS and tasks is not None:
        task_of = np.asarray(tasks, dtype=object)
        for t, name in enumerate(names):
            parts.append(image(plots.score_histogram(pool[:, t], chosen[task_of == name], f"{method}: scores for task {name}", "score",
                                                     threshold=selection.ranking == "top"),
                               f"histogram of pool scores for task {name}",
                               f"Task {name}: every pool row's score, and the rows this task chose (orange)" + threshold(chosen[task_of == name])
                               + "." + ineligible))
        return "".join(parts)
    best = np.max(np.where(np.isfinite(pool), pool, -np.inf), axis=1)  # [N]
    parts.append(image(plots.score_histogram(best, chosen, f"{method}: each pool row's best task score", "max score over tasks",
                                             threshold=selection.ranking == "top"),
                       "histogram of per-sample max scores",
                       f"{pool.shape[1]} tasks: each row's highest task score; orange: the selected rows' scores" + threshold(chosen) + "." + ineligible))
    return "".join(parts)


def composition_table(found: Composition) -> tuple[str, list[Any], list[float], list[float]]:
    """The table, and the shown values with their pool and selected shares."""
    pool_total, selected_total = max(found.pool_rows, 1), max(found.selected_rows, 1)
    shown = [value for value, _ in found.pool.most_common(TOP_VALUES)]
    shown += [value for value, _ in found.selected.most_common(TOP_VALUES) if value not in shown][: max(0, TOP_VALUES + 5 - len(shown))]
    rows, pool_shares, selected_shares = [], [], []
    for value in shown:
        p, s = found.pool.get(value, 0) / pool_total, found.selected.get(value, 0) / selected_total
        rows.append(["(missing)" if value is None else value, found.pool.get(value, 0), f"{100 * p:.2f}%", found.selected.get(value, 0),
                     f"{100 * s:.2f}%", f"{s / p:.2f}x" if p else "-"])
        pool_shares.append(100 * p)
        selected_shares.append(100 * s)
    rest = [v for v in set(found.pool) | set(found.selected) if v not in shown]
    if rest:
        p = sum(found.pool.get(v, 0) for v in rest)
        s = sum(found.selected.get(v, 0) for v in rest)
        rows.append([f"(other {len(rest)} values)", p, f"{100 * p / pool_total:.2f}%", s, f"{100 * s / selected_total:.2f}%", "-"])
    headers = [found.field, "pool rows", "pool share", "selected rows", "selected share", "selected / pool share"]
    return table(headers, rows), shown, pool_shares, selected_shares


def composition_section(selection: Selection, store: Any | None) -> str:
    """The selection's composition against the pool's by each categorical field (report section)."""
    fields = store_fields(store) if store is not None else []
    if not fields:
        return note("No categorical field to break the selection down by: the input has no short string field with few distinct "
                    "values among its first records. Name one with output.report_field.")
    parts = []
    for field in fields:
        found = composition(store, field, selection.positions)
        if found.pool_rows == found.pool.get(None, 0):
            parts.append(f"<h3>{esc(field)}</h3>" + note(f"No pool row has a field {field!r}."))
            continue
        rows, shown, pool_shares, selected_shares = composition_table(found)
        chart = plots.paired_bars(shown, pool_shares, selected_shares, ("pool", "selection"), f"composition by {field}", "share of rows (%)")
        parts.append(f"<h3>By <code>{esc(field)}</code></h3>" + rows
                     + image(chart, f"composition by {field}", f"Share of pool rows ({found.pool_rows:,}) and of selected rows "
                             f"({found.selected_rows:,}) per value of {field}."))
    return "".join(parts)


def draw(figure: Figure) -> str:
    """One figure a method declared, as HTML."""
    if isinstance(figure, Table):
        return table(figure.headers, figure.rows)
    if isinstance(figure, Note):
        return note(figure.text)
    if isinstance(figure, Bars):
        png = plots.bars(figure.names, figure.values, figure.title, figure.xlabel, figure.ylabel)
    elif isinstance(figure, PairedBars):
        png = plots.paired_bars(figure.names, figure.first, figure.second, figure.labels, figure.title, figure.ylabel)
    elif isinstance(figure, SizedBars):
        png = plots.sized_bars(figure.sizes, figure.overlays, figure.title)
    elif isinstance(figure, Curves):
        png = plots.curves(figure.series, figure.title, figure.xlabel, figure.ylabel)
    elif isinstance(figure, Intervals):
        png = plots.intervals(figure.names, figure.means, figure.lows, figure.highs, figure.title, figure.xlabel, figure.reference)
    elif isinstance(figure, Lines):
        png = plots.lines(figure.series, figure.title, figure.xlabel, figure.ylabel, figure.logx, figure.dashed)
    else:
        raise TypeError(f"not a report figure: {type(figure).__name__}")
    return image(png, figure.title, figure.caption)


def method_figures(selection: Selection, method: str) -> list[Figure]:
    """The figures the method declares (none for a method this build does not know, e.g. an older run's)."""
    try:
        declared = method_class(method)()
    except ConfigError:
        return []
    return declared.figures(selection)


def method_section(selection: Selection, method: str) -> str:
    """The figures the method declares, and every scalar metric it reports (report section)."""
    parts = [draw(figure) for figure in method_figures(selection, method)]
    scalars = flatten(selection.metrics or {})
    if scalars:
        parts.append(f"<h3>Every figure {esc(method)} reports</h3>" + table(["metric", "value"], scalars))
    return "".join(parts) or note("The method reports no figures of its own.")


def counts_section(manifest: dict[str, Any]) -> str:
    """The run's counts, and the bad inputs by reason and the first of them (report section)."""
    counts = manifest.get("counts") or {}
    parts = [table(["count", "value"], [[k.replace("_", " "), v] for k, v in counts.items()])]
    for role in ("input", "target"):
        stats = manifest.get(role)
        if not stats or not stats.get("skipped"):
            continue
        parts.append(f"<h3>Bad {'pool' if role == 'input' else 'target'} inputs: {stats['skipped']:,} skipped</h3>")
        parts.append(table(["reason", "records"], sorted(stats.get("skipped_by_reason", {}).items(), key=lambda kv: -kv[1])))
        bad = stats.get("bad_inputs", [])[:MAX_BAD_SHOWN]
        parts.append(table(["file", "line", "reason"], [[b.get("file"), b.get("line"), b.get("reason")] for b in bad]))
        if stats["skipped"] > len(bad):
            parts.append(note(f"The first {len(bad)} are listed; manifest.json lists up to 1,000."))
    return "".join(parts)


def timings_section(manifest: dict[str, Any]) -> str:
    """Wall time per stage, the stores' cache state and the throughput (report section)."""
    timings = dict(manifest.get("timings_s") or {})
    total = timings.pop("total", None) or sum(timings.values()) or 1.0
    parts = [table(["stage", "seconds", "share of the run"], [[k, v, f"{100 * v / total:.1f}%"] for k, v in timings.items()]
                   + [["total", total, "100%"]])]
    if timings:
        parts.append(image(plots.bars(list(timings), list(timings.values()), "wall time per stage", "stage", "seconds"),
                           "wall time per stage", f"Seconds per stage of the {total:.1f} s run."))
    stages = manifest.get("stages") or {}
    if stages:
        keys = ["stage", "cache", "shards", "resumed_shards", "docs", "tokens", "seconds"]
        parts.append(table(["source", *keys], [[name, *(info.get(k) for k in keys)] for name, info in stages.items()]))
    throughput = manifest.get("throughput") or {}
    if throughput:
        parts.append("<h3>Throughput</h3>" + table(["figure", "value"], list(throughput.items())))
    return "".join(parts)


def budget_text(budget: Any) -> Any:
    """The budget as the inputs table says it: a count, or a fraction of the eligible samples in words."""
    if isinstance(budget, float):
        return "every eligible sample (1.0)" if budget == 1.0 else f"{budget:g} of the eligible samples"
    return budget


def render(selection: Selection, manifest: dict[str, Any], pool_store: Any | None) -> str:
    """The whole page as one string."""
    config = manifest.get("config") or {}
    method = (config.get("method") or {}).get("name", "?")
    counts = manifest.get("counts") or {}
    declared = method_class(method)() if method in METHODS else None
    inputs = [("pool", (config.get("input") or {}).get("path")),
              ("target", (config.get("target") or {}).get("path") if declared is None or declared.needs_target else None),
              ("model", (config.get("model") or {}).get("name")), ("budget", budget_text((config.get("method") or {}).get("budget"))),
              ("output", (config.get("output") or {}).get("dir"))]
    head = (f"<h1>dataselect report: {esc(method)}</h1>"
            f"<p>Selected <b>{esc(fmt(counts.get('selected')))}</b> of {esc(fmt(counts.get('unique')))} unique pool samples "
            f"({esc(fmt(counts.get('read')))} read, {esc(fmt(counts.get('skipped')))} skipped as bad) in "
            f"{esc(fmt((manifest.get('timings_s') or {}).get('total')))} s.</p>"
            + table(["", ""], [[k, v] for k, v in inputs if v is not None]))
    sections = [("Scores", scores_section(selection, method, manifest)), ("Composition", composition_section(selection, pool_store)),
                (f"Method figures ({method})", method_section(selection, method)), ("Counts and bad inputs", counts_section(manifest)),
                ("Timings", timings_section(manifest))]
    return page(f"dataselect report: {method}", head, sections)


def page(title: str, head: str, sections: Sequence[tuple[str, str]]) -> str:
    """A whole self-contained page: the head's HTML, then one <section> per (title, HTML)."""
    body = head + "".join(f"<section><h2>{esc(name)}</h2>{content}</section>" for name, content in sections)
    return (f'<!doctype html>\n<html lang="en"><head><meta charset="utf-8"><title>{esc(title)}</title>'
            f'<link rel="icon" href="data:,"><style>{STYLE}</style></head><body>{body}</body></html>\n')


def render_eval(result: dict[str, Any]) -> str:
    """The report of a `dataselect eval` (its eval.json content): the comparison and each keep sweep."""
    from dataselect.evaluate.figures import eval_sections

    settings = result.get("settings") or {}
    head = ("<h1>dataselect report: eval</h1>"
            + table(["", ""], [["eval target", result["eval_target"]["path"]], ["seeds", settings.get("seeds")],
                               ["steps", ", ".join(map(str, settings.get("steps") or []))], ["base model", settings.get("model") or "pre-trained proxy"]]))
    return page("dataselect report: eval", head, [(title, "".join(draw(f) for f in figures)) for title, figures in eval_sections(result)])


def write_report(output_dir: Path, selection: Selection, manifest: dict[str, Any], pool_store: Any | None) -> Path:
    """Write report.html into `output_dir` (atomically); its path."""
    path = Path(output_dir) / REPORT_NAME
    atomic_write_text(path, render(selection, manifest, pool_store))
    return path


def write_eval_report_safely(output_dir: Path, result: dict[str, Any]) -> Path | None:
    """An eval's report.html beside its eval.json, or one log line: eval.json stays valid either way."""
    path = Path(output_dir) / REPORT_NAME
    try:
        atomic_write_text(path, render_eval(result))
        return path
    except Exception as error:  # noqa: BLE001 - a picture of the eval must never cost its numbers
        logger.warning("report.html not written (%s: %s); eval.json is complete", type(error).__name__, error)
        return None


def write_report_safely(output_dir: Path, selection: Selection, manifest: dict[str, Any], pool_store: Any | None) -> Path | None:
    """write_report, or one log line: the selection and manifest are already written and stay valid."""
    try:
        return write_report(output_dir, selection, manifest, pool_store)
    except Exception as error:  # noqa: BLE001 - a picture of the run must never cost the run
        logger.warning("report.html not written (%s: %s); selection.parquet and manifest.json are complete", type(error).__name__, error)
        return None
