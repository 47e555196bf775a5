"""What every method returns, and the ranking helpers they share."""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Protocol

import numpy as np

from dataselect.errors import ConfigError, InputError
from dataselect.io.shards import ShardStore
from dataselect.select.figures import Bars, Figure, Table
from dataselect.stats import SourceStats

if TYPE_CHECKING:
    from dataselect.scoring.loop import ScoredSource


@dataclass
class Selection:
    """The chosen samples in rank order (rank 0 = chosen first)."""

    ids: list[str]
    scores: np.ndarray  # [K] float64
    positions: np.ndarray  # [K] int64: positions in the pool stream (to materialise the rows)
    previews: list[str] | None = None
    columns: dict[str, list[Any]] = field(default_factory=dict)  # extra selection.parquet columns
    metrics: dict[str, Any] = field(default_factory=dict)  # method metrics for manifest.json
    scored: int = 0  # pool samples that got a score
    unique: int = 0  # ... after collapsing exact duplicates
    # every pool sample's score in store row order ([N], or [N, T] per task), for the report, scores.parquet and benchmarks
    pool_scores: np.ndarray | None = None
    rows: np.ndarray | None = None  # [K] int64: the chosen samples' rows in the pool store (scores.parquet's rank)
    tasks: list[str] | None = None  # names of pool_scores' columns when it is [N, T]
    # when the method selects parts of samples (DSIR's word chunks): an input record -> its parts, as
    # the method cut them; columns["chunk"] holds each selected row's part number
    chunker: Callable[[dict[str, Any]], list[str]] | None = None
    ranking: str = "top"  # how ranks follow scores: one of RANKINGS, for the summary and the report
    pool_columns: dict[str, Any] = field(default_factory=dict)  # extra scores.parquet columns: arrow arrays, [N] in store row order


RANKINGS = {
    "top": "the highest-scoring eligible samples, best first",
    "sampled": "a seeded draw weighted by the scores (Gumbel top-K): a lower score can rank above a higher one, and "
               "higher-scoring samples can go unselected",
    "per-group": "a quota from each cluster, picked inside it: no single score threshold",
    "random": "a seeded random pick: the pool scores are random keys, not a judgement of the samples",
}


def task_scores(scores: np.ndarray, tasks: list[str]) -> dict[str, Any]:
    """Selection's pool_scores and tasks from per-task scores [N, T]: [N] for one task, [N, T] with the names for several."""
    return {"pool_scores": scores[:, 0], "tasks": list(tasks)} if scores.shape[1] == 1 else {"pool_scores": scores, "tasks": list(tasks)}


def task_counts(selection: Selection) -> list[Figure]:
    """Target samples (the method's `tasks` metric) and selected rows per target task (RDS+, BETR,
    CoLoR-Filter), with a bar chart for several; a selection without a `task` column chose all for its one task."""
    sizes = selection.metrics.get("tasks") or {}
    picked = Counter(selection.columns["task"]) if "task" in selection.columns else {name: len(selection.ids) for name in selection.tasks or []}
    out: list[Figure] = [Table(["task", "target samples", "selected"], [[name, count, picked.get(name, 0)] for name, count in sizes.items()])]
    if len(sizes) > 1:
        out.append(Bars(list(sizes), [picked.get(n, 0) for n in sizes], "selected samples per task", "task", "selected",
                        "Rows each task chose in the round-robin."))
    return out


class Declared:
    """What a method declares about itself, for the run around it: preflight and `--dry-run` (what it
    reads and loads), `dataselect methods` (its description), the manifest and summary (whether a budget
    applies). A method class inherits these defaults and overrides what differs."""

    name: str = ""
    description: str = ""  # one line: `dataselect methods`, `--dry-run`
    needs_target: bool = False  # reads target.path
    budgeted: bool = True  # selects method.budget samples (apply keeps whatever passes a threshold)

    def loads(self, config: Any) -> str | None:
        """What the method loads of model.name: "model", "tokenizer", or None."""
        return "model"

    def figures(self, selection: Selection) -> list[Figure]:
        """The method's own figures for report.html, built from `selection.metrics` (which the manifest holds)."""
        return []


class Method(Protocol):
    """A selection method: a streaming score phase, then a global select phase (DESIGN.md).

    `score` declares the method's stages by running each through `context.score_source(name, source,
    stage, renderer)`, which the pipeline runs on its executor with the shared bookkeeping, and returns
    what it scored by name ("pool", "target", ...); `select` reads those stores and chooses."""

    name: str
    description: str
    needs_target: bool
    budgeted: bool

    def loads(self, config: Any) -> str | None: ...

    def figures(self, selection: Selection) -> list[Figure]: ...

    def score(self, context: Any) -> dict[str, ScoredSource]: ...

    def select(self, context: Any, scored: dict[str, ScoredSource]) -> Selection: ...


def first_occurrences(hashes: np.ndarray, among: np.ndarray | None = None) -> np.ndarray:
    """Boolean mask keeping the first sample of each distinct text hash (of the rows `among` allows, when
    given: [N] bool; the others are never kept). [N] -> [N] bool"""
    keep = np.zeros(len(hashes), dtype=bool)
    rows = np.arange(len(hashes)) if among is None else np.flatnonzero(among)
    _, first = np.unique(hashes[rows], return_index=True)
    keep[rows[first]] = True
    return keep


def top_k(scores: np.ndarray, k: int, eligible: np.ndarray | None = None) -> np.ndarray:
    """Indices of the k highest scores, best first; ties go to the earlier index, so the order is
    fully determined by the scores; a NaN score counts as -inf. [N] -> [k] int64"""
    candidates = np.arange(len(scores)) if eligible is None else np.flatnonzero(eligible)
    values = scores[candidates]
    values = np.where(np.isnan(values), -np.inf, values)  # NaN would fail every comparison below
    if k < len(candidates):
        # partial selection first (O(N)), then an exact sort of the survivors with index tie-breaks
        threshold = np.partition(-values, k - 1)[k - 1]
        keep = -values <= threshold
        candidates, values = candidates[keep], values[keep]
    order = np.lexsort((candidates, -values))
    return candidates[order[:k]].astype(np.int64)


def score_throughput(docs: int, tokens: int, seconds: float, padded_tokens: int | None = None, unit: str = "tokens",
                     padded_of: int | None = None) -> dict[str, Any]:
    """The manifest's `throughput`: what this run's score phase processed (0 docs on a cache hit). Padding
    waste compares `padded_tokens` with the real tokens of the same batches: `padded_of`, when only some of
    the stages pad (BETR: n-grams of the whole pool, embeddings of a sample), else `tokens`."""
    docs, tokens = int(docs), int(tokens)
    real = tokens if padded_of is None else int(padded_of)
    return {
        "scored_docs": docs,
        "scored_tokens": tokens,
        "token_unit": unit,
        "score_seconds": round(seconds, 3),
        "docs_per_s": round(docs / seconds, 2) if seconds > 0 else None,
        "tokens_per_s": round(tokens / seconds, 1) if seconds > 0 else None,
        "padding_waste": round(1 - real / padded_tokens, 4) if padded_tokens else None,
    }


def selected_rows(store: ShardStore, chosen: np.ndarray) -> dict[str, Any]:
    """The Selection fields that come from the pool's metadata: ids, positions, previews (one pass)."""
    rows = store.take(chosen, ["id", "position", "preview"])
    return {"ids": rows["id"], "positions": np.asarray(rows["position"], np.int64), "previews": rows["preview"],
            "rows": np.asarray(chosen, np.int64)}


@dataclass(frozen=True)
class Excluded:
    """A method's own reason to keep pool rows out of the selection (context.eligible takes them by name)."""

    mask: np.ndarray  # [N] bool: True where the reason keeps the row out
    why: str  # how the summary says it, after the count: "shorter than method.dsir.min_words (15 words)"


GENERIC_EXCLUSIONS = {"not_listed": "not among input.ids_from's ids", "duplicate": "exact duplicates collapsed",
                      "target_copy": "copies of target samples kept out (method.exclude_target_copies)"}


def exclusion_reasons(excluded: dict[str, np.ndarray], rows: int) -> np.ndarray:
    """[N] object: for each row the first reason (in `excluded`'s order) that keeps it out, None where none does.
    excluded: reason -> [N] bool, True where that reason excludes the row."""
    reasons = np.full(rows, None, object)
    for reason, mask in reversed(list(excluded.items())):
        reasons[np.asarray(mask, bool)] = reason
    return reasons


def require_usable_pool(stats: SourceStats) -> None:
    """Right after a pool's score phase: a pool with no usable sample (every record bad, or none at
    all) is an input error, not an empty selection that exits 0."""
    if stats.read > stats.skipped:
        return
    first = f"; the first: {stats.bad[0]}" if stats.bad else ""
    raise InputError(f"input error: input.path: no usable samples (read {stats.read}, skipped {stats.skipped} as bad{first})")


def target_tasks(store: ShardStore, column: str | None, task_field: str | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(sorted task names [T], task index of every target sample [Nt]); no column: one task, "target".
    `task_field` (the config's target.task_field, copied into `column`): a field no sample has is a
    misspelt key, and an error, not one unnamed task."""
    if column is None:
        return np.array(["target"]), np.zeros(int(store.rows().sum()), np.int64)
    labels = store.column(column).to_numpy(zero_copy_only=False)
    if task_field is not None and len(labels) and all(label is None for label in labels):
        raise ConfigError(f"config error: target.task_field: no target sample has a field {task_field!r}")
    labels = np.where(labels == None, "", labels).astype(str)  # noqa: E711 - elementwise on an object array
    return np.unique(labels, return_inverse=True)
