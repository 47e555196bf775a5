"""The output directory contract: selection.parquet, manifest.json, and the selected rows on request."""
from __future__ import annotations

import importlib.metadata
import json
import platform
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
from tqdm import tqdm

from dataselect.config import Config
from dataselect.io.render import TextRenderer
from dataselect.io.shards import atomic_write, atomic_write_text
from dataselect.io.sources import iter_raw_records
from dataselect.select.base import Selection

VERSIONED_PACKAGES = ("dataselect", "torch", "triton", "transformers", "tokenizers", "numpy", "pyarrow", "faiss-cpu", "datasets", "pydantic")


def package_versions() -> dict[str, str | None]:
    versions: dict[str, str | None] = {"python": platform.python_version()}
    for name in VERSIONED_PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def selection_table(selection: Selection) -> pa.Table:
    columns = {
        "id": pa.array(selection.ids, pa.string()),
        "rank": pa.array(range(len(selection.ids)), pa.int64()),
        "score": pa.array(selection.scores, pa.float64()),
    }
    for name, values in selection.columns.items():
        columns[name] = pa.array(values)
    return pa.table(columns)


def write_selection(out_dir: Path, selection: Selection) -> Path:
    path = out_dir / "selection.parquet"
    table = selection_table(selection)
    atomic_write(path, lambda temp: pq.write_table(table, temp))
    return path


def write_manifest(out_dir: Path, manifest: dict[str, Any]) -> Path:
    path = out_dir / "manifest.json"
    atomic_write_text(path, json.dumps(manifest, indent=2, default=str))
    return path


def write_selected_rows(out_dir: Path, config: Config, selection: Selection, progress: bool = True) -> Path:
    """Copy the selected input records (in input order) with `rank` and `score` added. When the
    method selected parts of records (`selection.chunker`), each selected part is a row of its own:
    the record with `chunk` (its number) and `chunk_text` added, so no selected part is lost.

    One streaming pass over the input; only the selected rows' positions are held in memory."""
    ranks_at: dict[int, list[int]] = {}  # input position -> the ranks selected from it, in rank order
    for rank, position in enumerate(selection.positions):
        ranks_at.setdefault(int(position), []).append(rank)
    chunks = selection.columns.get("chunk") if selection.chunker is not None else None
    renderer = TextRenderer(config.input) if chunks is not None else None
    fmt = config.output.write
    path = out_dir / f"selected.{fmt}"
    bar = tqdm(total=len(selection.positions), desc="write selected rows", unit=" rows", disable=not progress)

    def rows():
        remaining = len(ranks_at)
        for raw in iter_raw_records(config.input):
            if remaining == 0:
                return
            ranks = ranks_at.get(raw.position)
            if ranks is None or raw.record is None:
                continue
            remaining -= 1
            bar.update(len(ranks))
            if chunks is None:
                yield {**raw.record, "rank": ranks[0], "score": float(selection.scores[ranks[0]])}
                continue
            parts = selection.chunker(renderer.render(raw.record))
            for rank in sorted(ranks, key=lambda r: chunks[r]):  # a record's parts in text order
                yield {**raw.record, "chunk": chunks[rank], "chunk_text": parts[chunks[rank]], "rank": rank, "score": float(selection.scores[rank])}

    def write_jsonl(temp: Path) -> None:
        with open(temp, "w", encoding="utf-8") as handle:
            for row in rows():
                handle.write(json.dumps(row, ensure_ascii=False) + "\n")

    def write_parquet(temp: Path) -> None:
        writer = None
        batch: list[dict] = []
        try:
            for row in rows():
                batch.append(row)
                if len(batch) == 4096:
                    writer = _flush(writer, temp, batch)
            if batch or writer is None:
                writer = _flush(writer, temp, batch)
        finally:
            if writer is not None:
                writer.close()

    try:
        atomic_write(path, write_jsonl if fmt == "jsonl" else write_parquet)
    finally:
        bar.close()
    return path


def _flush(writer, temp: Path, batch: list[dict]):
    table = pa.Table.from_pylist(batch)
    if writer is None:
        writer = pq.ParquetWriter(temp, table.schema)
    writer.write_table(table.cast(writer.schema) if table.schema != writer.schema else table)
    batch.clear()
    return writer
