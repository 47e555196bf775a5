"""Per-shard score files, written atomically, with a record of finished shards.

A store is one folder (under `runtime.cache_dir`, keyed by what determines its content):
    shard-000000.emb.npy      float16 [n, d] L2-normalised embeddings (optional: methods without vectors omit it)
    shard-000000.meta.parquet id, position, text_hash, n_tokens, preview (+ method columns)
    shard-000000.done.json    written last: the shard is finished; holds its input counts and bad inputs
    complete.json             written when the whole source is scored; holds the totals
Each file is written to a temporary name and renamed, so a run killed at any point leaves either a
finished shard or none, and a restart with the same config redoes only unfinished shards.
"""
from __future__ import annotations

import hashlib
import itertools
import json
import os
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from dataselect.stats import SourceStats

if TYPE_CHECKING:
    from dataselect.config import SourceConfig
    from dataselect.io.render import TextRenderer
    from dataselect.io.sources import RawRecord, Sample

PREVIEW_CHARS = 200  # kept per sample so summaries can show selected texts without re-reading the input


def _file_mode() -> int:
    """The mode a plain open() would give a new file: mkstemp makes its files owner-only (0600).
    Read once, at import: os.umask can only be read by setting it, which is not thread-safe."""
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


FILE_MODE = _file_mode()


def atomic_write(path: Path, write: Any) -> None:
    """Call write(temp_path), then rename onto `path` (same folder, so the rename is atomic)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, temp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        write(Path(temp))
        os.chmod(temp, FILE_MODE)
        os.replace(temp, path)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write(path, lambda temp: temp.write_text(text, encoding="utf-8"))


def save_npy(path: Path, array: np.ndarray) -> None:
    with open(path, "wb") as handle:  # a handle, since np.save would append ".npy" to a temp name
        np.save(handle, array)


class ShardStore:
    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def _path(self, index: int, suffix: str) -> Path:
        return self.root / f"shard-{index:06d}.{suffix}"

    def is_done(self, index: int) -> bool:
        return self._path(index, "done.json").exists()

    def is_complete(self) -> bool:
        return (self.root / "complete.json").exists()

    def write_shard(self, index: int, meta: pa.Table, stats: SourceStats, embeddings: np.ndarray | None = None) -> None:
        if embeddings is not None:
            assert len(embeddings) == meta.num_rows
            atomic_write(self._path(index, "emb.npy"), lambda temp: save_npy(temp, embeddings.astype(np.float16)))
        atomic_write(self._path(index, "meta.parquet"), lambda t: pq.write_table(meta, t))
        atomic_write_text(self._path(index, "done.json"), json.dumps({"rows": meta.num_rows, "input": stats.to_dict()}))

    def mark_complete(self, num_shards: int, info: dict[str, Any]) -> None:
        atomic_write_text(self.root / "complete.json", json.dumps({"num_shards": num_shards, **info}, indent=1))

    def complete_info(self) -> dict[str, Any]:
        return json.loads((self.root / "complete.json").read_text())

    def write_key(self, key: dict[str, Any]) -> None:
        atomic_write_text(self.root / "key.json", json.dumps(key, indent=1, default=str))

    @property
    def num_shards(self) -> int:
        return int(self.complete_info()["num_shards"])

    def shard_stats(self, index: int, role: str) -> SourceStats:
        done = json.loads(self._path(index, "done.json").read_text())
        return SourceStats.from_dict(role, done["input"])

    def total_stats(self, role: str) -> SourceStats:
        total = SourceStats(role)
        for index in range(self.num_shards):
            total.merge(self.shard_stats(index, role))
        return total

    def read_meta(self, index: int, columns: list[str] | None = None) -> pa.Table:
        return pq.read_table(self._path(index, "meta.parquet"), columns=columns)

    def read_embeddings(self, index: int) -> np.ndarray:
        """[n, d] float16, memory-mapped."""
        return np.load(self._path(index, "emb.npy"), mmap_mode="r")

    def iter_shards(self, columns: list[str] | None = None, embeddings: bool = True) -> Iterator[tuple[pa.Table, np.ndarray | None]]:
        for index in range(self.num_shards):
            yield self.read_meta(index, columns), (self.read_embeddings(index) if embeddings else None)

    def rows(self) -> np.ndarray:
        """Rows per shard, from the done records (no shard data is read). [num_shards] int64"""
        return np.array([json.loads(self._path(i, "done.json").read_text())["rows"] for i in range(self.num_shards)], np.int64)

    def take(self, indices: np.ndarray, columns: list[str]) -> dict[str, list[Any]]:
        """Metadata of the given global rows, in the given order, reading only the shards that hold
        them and only the named columns. {column: [len(indices)] values}"""
        indices = np.asarray(indices, np.int64)  # [K]
        offsets = np.concatenate([[0], np.cumsum(self.rows())])  # [num_shards + 1]
        shard_of = np.searchsorted(offsets, indices, side="right") - 1  # [K]
        out: dict[str, list[Any]] = {name: [None] * len(indices) for name in columns}
        for shard in np.unique(shard_of):
            where = np.flatnonzero(shard_of == shard)  # positions in the output
            table = self.read_meta(int(shard), columns).take(pa.array(indices[where] - offsets[shard]))
            for name in columns:
                for slot, value in zip(where, table.column(name).to_pylist()):
                    out[name][slot] = value
        return out

    def column(self, name: str) -> pa.ChunkedArray:
        """One metadata column over all shards (arrow-backed, not Python objects)."""
        return pa.chunked_array([self.read_meta(i, [name]).column(name).combine_chunks() for i in range(self.num_shards)])


def record_shards(source: "SourceConfig", shard_size: int) -> Iterator[tuple[int, list["RawRecord"]]]:
    """Fixed runs of `shard_size` input records, so shard boundaries never depend on batching or workers."""
    from dataselect.io.sources import iter_raw_records

    records = iter_raw_records(source)
    for index in itertools.count():
        chunk = list(itertools.islice(records, shard_size))
        if not chunk:
            return
        yield index, chunk


def source_key(source: "SourceConfig", renderer: "TextRenderer", shard_size: int) -> dict[str, Any]:
    """What decides a source's samples: its files (with size and mtime), fields, rendering, sharding."""
    from dataselect.io.sources import fingerprint

    return {
        "source": fingerprint(source),
        "id_field": source.id_field,
        "limit": source.limit,
        "render": renderer.describe(),
        "shard_size": shard_size,
    }


def keyed_store(cache_root: Path, kind: str, key: dict[str, Any]) -> ShardStore:
    """The store folder for everything that decides its content, under cache_root/kind/."""
    digest = hashlib.sha256(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()[:20]
    store = ShardStore(Path(cache_root) / kind / digest)
    store.write_key(key)
    return store


def sample_columns(samples: list["Sample"], fields: dict[str, str] | None = None) -> dict[str, pa.Array]:
    """Metadata columns every store has (id, position, text_hash, preview), plus record fields
    copied as string columns ({column: field})."""
    from dataselect.io.sources import text_hash

    columns = {
        "id": pa.array([s.id for s in samples], pa.string()),
        "position": pa.array([s.position for s in samples], pa.int64()),
        "text_hash": pa.array([text_hash(s.text) for s in samples], pa.int64()),
        "preview": pa.array([s.text[:PREVIEW_CHARS] for s in samples], pa.string()),
    }
    for column, field in (fields or {}).items():
        columns[column] = pa.array([None if s.record.get(field) is None else str(s.record.get(field)) for s in samples], pa.string())
    return columns
