"""Categorical record fields (`source`, `dataset`, `language`, ...) that the report breaks the selection
down by. The pool's score phase copies them into its store as string columns (`field:<name>`), so the
pool's composition is a column count over the store, never a second pass over the input.

Found without being named: top-level string fields of the source's first records that repeat
(few distinct values, short) and are not the id or a text field. `output.report_field` names one more.
The choice depends only on the source's first records and the config, so the store's cache key (which
includes the copied fields) is the same run after run.
"""
from __future__ import annotations

import itertools
import logging
from collections import Counter, defaultdict
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from dataselect.config import SourceConfig

logger = logging.getLogger(__name__)

PREFIX = "field:"  # store column of a copied field: field:source
SNIFF_RECORDS = 2000  # records read to find the candidates
MAX_VALUES = 100  # distinct values a categorical field may show among them
MAX_CHARS = 64  # longest value
MAX_FIELDS = 4  # candidates copied at most (besides a named one)
# what the renderer may read as text (render.py's auto choice): never a category
TEXT_FIELDS = ("text", "prompt", "response", "messages", "instruction", "input", "output", "conversations", "content")


def column_of(field: str) -> str:
    """The store column that holds a copy of the input field `field`."""
    return PREFIX + field


def is_categorical(values: list[Any], records: int) -> bool:
    """Values of one field over `records` records: strings, short, repeating, at least two of them."""
    present = [v for v in values if v is not None]
    if len(present) < max(2, records // 2) or not all(isinstance(v, str) for v in present):
        return False
    distinct = set(present)
    return 2 <= len(distinct) <= min(MAX_VALUES, len(present) // 2) and max(map(len, distinct)) <= MAX_CHARS


def sniff_records(source: SourceConfig, count: int = SNIFF_RECORDS) -> list[dict[str, Any]]:
    """The source's first `count` parseable records (reads only those)."""
    from dataselect.io.plan import plan_shards
    from dataselect.io.readers import read_spec

    limit = min(count, source.limit) if source.limit else count
    specs = plan_shards(source.model_copy(update={"limit": limit}), limit)
    raws = itertools.chain.from_iterable(read_spec(spec) for spec in specs)
    return [raw.record for raw in itertools.islice(raws, limit) if raw.record is not None]


def find_categorical(records: list[dict[str, Any]], exclude: set[str]) -> list[str]:
    """Candidate fields in first-seen order, at most MAX_FIELDS."""
    values: dict[str, list[Any]] = defaultdict(list)
    for record in records:
        for key, value in record.items():
            if key not in exclude:
                values[key].append(value)
    return [key for key, seen in values.items() if is_categorical(seen, len(records))][:MAX_FIELDS]


def report_fields(source: SourceConfig, named: str | None = None) -> dict[str, str]:
    """{store column: record field} for the pool's score phase to copy: the found candidates, and
    `named` (output.report_field) whether or not it looks categorical. {} if the source cannot be read
    here (the score phase then reports why)."""
    exclude = {source.id_field, *TEXT_FIELDS, *(f for f in (source.text_field, source.prompt_field, source.response_field,
                                                             source.messages_field) if f)}
    try:
        records = sniff_records(source)
    except Exception as error:  # noqa: BLE001 - a source that fails here fails in the score phase with its own message
        logger.debug("categorical fields not sniffed: %s", error)
        records = []
    fields = find_categorical(records, exclude)
    if named is not None:
        if records and not any(named in r for r in records):
            logger.warning("output.report_field: none of the first %d input records has a field %r", len(records), named)
        fields = [named, *(f for f in fields if f != named)]
    return {column_of(f): f for f in fields}


@dataclass
class Composition:
    """Rows per value of one categorical field: over the pool's store, and over the selection."""

    field: str
    pool: Counter  # value (None: the record has no such field) -> pool rows
    selected: Counter  # value -> selected rows

    @property
    def pool_rows(self) -> int:
        return sum(self.pool.values())

    @property
    def selected_rows(self) -> int:
        return sum(self.selected.values())


def store_fields(store: Any) -> list[str]:
    """The record fields a store holds as copied columns, in column order."""
    if not store.num_shards:
        return []
    names = store.read_meta(0).schema.names
    return [name.removeprefix(PREFIX) for name in names if name.startswith(PREFIX)]


def composition(store: Any, field: str, positions: np.ndarray) -> Composition:
    """Value counts of `field` over every store row, and over the selected rows (`positions`: the
    selection's input positions, repeated when several rows of one record are selected). One shard
    of two columns in memory at a time; the store's rows are in input order within each shard."""
    column = column_of(field)
    wanted, times = np.unique(np.asarray(positions, np.int64), return_counts=True)  # [U] sorted, [U]
    pool: Counter = Counter()
    selected: Counter = Counter()
    for index in range(store.num_shards):
        table = store.read_meta(index, [column, "position"])
        values = table.column(column)
        for item in pc.value_counts(values).to_pylist():
            pool[item["values"]] += item["counts"]
        row_positions = table.column("position").to_numpy()  # [n]
        slot = np.minimum(np.searchsorted(wanted, row_positions), max(len(wanted) - 1, 0))  # [n]
        hit = (wanted[slot] == row_positions) if len(wanted) else np.zeros(len(row_positions), bool)  # [n]
        _, first = np.unique(row_positions[hit], return_index=True)  # one row per selected record
        rows = np.flatnonzero(hit)[first]
        for value, count in zip(values.take(pa.array(rows)).to_pylist(), times[slot[rows]]):
            selected[value] += int(count)
    return Composition(field, pool, selected)
