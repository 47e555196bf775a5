"""Per-shard score files, written atomically, with a record of finished shards.

A store is one folder (under `runtime.cache_dir`, keyed by what determines its content):
    shard-000000.<name>.npy   the arrays a stage returned (emb: float16 [n, d] unit embeddings; ngrams; ...)
    shard-000000.meta.parquet id, position, text_hash, preview (+ the stage's columns)
    shard-000000.done.json    written last: the shard is finished; its rows, input counts, bad inputs, counters
    meta.parquet              when the store is complete: every shard's metadata, a row group per shard
    complete.json             written last of all: shard count, rows per shard, the totals
Each file is written to a temporary name and renamed, so a run killed at any point leaves either a
finished shard or none, and a restart with the same config redoes only unfinished shards. A store in
object storage (io/mirror.py) is this folder as a local mirror, each finished file uploaded after it.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from dataselect.errors import OutputError
from dataselect.stats import SourceStats

if TYPE_CHECKING:
    from dataselect.config import SourceConfig
    from dataselect.io.render import TextRenderer
    from dataselect.io.samples import Sample

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
    except OSError as error:  # a full disk, a quota, a vanished mount: one line that names the file
        Path(temp).unlink(missing_ok=True)
        why = error.strerror or str(error) or type(error).__name__
        raise OutputError(f"output error: cannot write {path}: {why} (free space where it goes, or point runtime.cache_dir "
                          "or output.dir elsewhere)") from None
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise


def atomic_write_text(path: Path, text: str) -> None:
    """Write a text file whole or not at all (a temporary file, then a rename)."""
    atomic_write(path, lambda temp: temp.write_text(text, encoding="utf-8"))


def save_npy(path: Path, array: np.ndarray) -> None:
    """Save an array in .npy format at exactly `path`."""
    with open(path, "wb") as handle:  # a handle, since np.save would append ".npy" to a temp name
        np.save(handle, array)


VERIFY_FULL_BYTES = 1 << 30  # runtime.verify_cache: auto checks checksums of stores up to this size, sizes above
CHECKSUM_BLOCK = 1 << 22


def file_record(path: Path) -> list[Any]:
    """[size, BLAKE2b-128 hex] of a file a store wrote: what a later run checks before trusting it."""
    digest = hashlib.blake2b(digest_size=16)
    with open(path, "rb") as handle:
        while block := handle.read(CHECKSUM_BLOCK):
            digest.update(block)
    return [path.stat().st_size, digest.hexdigest()]


def _intact(path: Path, record: Any, checksums: bool) -> bool:
    try:
        size = path.stat().st_size
    except OSError:
        return False
    if not isinstance(record, list) or len(record) != 2 or size != record[0]:
        return False
    return not checksums or file_record(path)[1] == record[1]


class ShardStore:
    """One source's scored shards. While scoring, each shard is its own files; once every shard is done,
    `complete` adds the row index (rows per shard) and one consolidated metadata file (a row group
    per shard), so the select phase opens one file per column or `take`, however many shards there are."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self._complete: dict[str, Any] | None = None

    def _path(self, index: int, suffix: str) -> Path:
        return self.root / f"shard-{index:06d}.{suffix}"

    def is_done(self, index: int) -> bool:
        return self._path(index, "done.json").exists()

    def is_complete(self) -> bool:
        return (self.root / "complete.json").exists()

    def write_shard(
        self, index: int, meta: pa.Table, stats: SourceStats, arrays: dict[str, np.ndarray] | None = None,
        counters: dict[str, float] | None = None,
    ) -> None:
        """Arrays and metadata first, the done record last: a shard with a done record is whole, and the
        record holds each file's size and checksum (`damaged` checks them)."""
        files = {}
        for name, array in (arrays or {}).items():
            atomic_write(self.array_path(index, name), lambda temp, array=array: save_npy(temp, array))
            files[self.array_path(index, name).name] = file_record(self.array_path(index, name))
        atomic_write(self._path(index, "meta.parquet"), lambda t: pq.write_table(meta, t))
        files[self._path(index, "meta.parquet").name] = file_record(self._path(index, "meta.parquet"))
        done = {"rows": meta.num_rows, "input": stats.to_dict(), "counters": counters or {}, "files": files}
        atomic_write_text(self._path(index, "done.json"), json.dumps(done))
        self._publish([*files, self._path(index, "done.json").name])

    def _publish(self, names: list[str]) -> None:
        """Files just written, in order (a mirrored store uploads them; a local one is done)."""

    def _file_intact(self, name: str, record: Any, checksums: bool) -> bool:
        """The store's file `name` matches its record (a mirrored store fetches a missing or changed copy)."""
        return _intact(self.root / name, record, checksums)

    @property
    def location(self) -> str:
        """Where the store lives, as a worker opens it (open_store) and messages name it."""
        return str(self.root)

    def damaged(self, index: int, checksums: bool) -> str | None:
        """Why a finished shard cannot be trusted (its record unreadable, a file missing, resized or, with
        `checksums`, changed), or None when it is whole."""
        try:
            record = self.shard_record(index)
            files = record["files"]
            int(record["rows"]), SourceStats.from_dict("source", record["input"])
        except (OSError, ValueError, KeyError, TypeError):
            return f"{self._path(index, 'done.json').name} is unreadable"
        for name, expected in files.items():
            if not self._file_intact(name, expected, checksums):
                return f"{name} is missing or changed"
        return None

    def discard(self, index: int) -> None:
        """Forget a shard (its done record first), and the store's index, so that the shard is scored again."""
        self._path(index, "done.json").unlink(missing_ok=True)
        self.discard_index()

    def discard_index(self) -> None:
        """Forget the store's index and consolidated metadata (`complete` writes them again)."""
        for path in [self.root / "complete.json", self.root / "meta.parquet"]:
            path.unlink(missing_ok=True)
        self._complete = None

    def remove(self) -> None:
        """Remove the whole store (a single-use store after its run, a cache entry cleaned)."""
        shutil.rmtree(self.root, ignore_errors=True)

    def remove_leftovers(self) -> int:
        """Remove the temporary files a killed run left half-written (call with the store's lock held, so no
        live writer owns them). -> how many"""
        leftovers = list(self.root.glob(".*.tmp"))
        for path in leftovers:
            with contextlib.suppress(OSError):  # a read-only cache keeps them; nothing will write there either
                path.unlink(missing_ok=True)
        return len(leftovers)

    def size_bytes(self) -> int:
        """The store's files' bytes (0 before the folder exists)."""
        if not self.root.is_dir():
            return 0
        with os.scandir(self.root) as entries:
            return sum(entry.stat().st_size for entry in entries if entry.is_file())

    def damaged_parts(self, checksums: bool) -> dict[int, str]:
        """A complete store's damaged shards by number, with why; its index or consolidated metadata
        damaged counts against every shard's (they are rebuilt from the shards, which are checked)."""
        try:
            info = self.complete_info()
            count = int(info["num_shards"])
            meta_ok = count == 0 or self._file_intact("meta.parquet", info["meta"], checksums)
        except (OSError, ValueError, KeyError, TypeError):
            self._complete = None
            return {-1: "complete.json is unreadable"}
        found = {i: why for i in range(count) if (why := self.damaged(i, checksums)) is not None}
        if not meta_ok and not found:
            found[-1] = "meta.parquet is missing or changed"
        return found

    def array_path(self, index: int, name: str) -> Path:
        return self._path(index, f"{name}.npy")

    def shard_record(self, index: int) -> dict[str, Any]:
        return json.loads(self._path(index, "done.json").read_text())

    def complete(self, num_shards: int, info: dict[str, Any]) -> None:
        """Index the finished store: rows per shard, the totals, and the consolidated metadata."""
        records = [self.shard_record(i) for i in range(num_shards)]
        total = SourceStats("source")
        for record in records:
            total.merge(SourceStats.from_dict("source", record["input"]))
        meta_path = self.root / "meta.parquet"
        if num_shards:
            schema = pq.read_schema(self._path(0, "meta.parquet"))
            tables = (self.read_shard_meta(i) for i in range(num_shards))
            atomic_write(meta_path, lambda temp: _write_row_groups(temp, schema, tables))
        rows = [int(r["rows"]) for r in records]
        complete = {"num_shards": num_shards, "rows": rows, "input": total.to_dict(), **info,
                    "meta": file_record(meta_path) if num_shards else None}
        atomic_write_text(self.root / "complete.json", json.dumps(complete))
        self._publish((["meta.parquet"] if num_shards else []) + ["complete.json"])
        self._complete = complete

    def complete_info(self) -> dict[str, Any]:
        if self._complete is None:
            self._complete = json.loads((self.root / "complete.json").read_text())
        return self._complete

    def write_key(self, key: dict[str, Any]) -> None:
        text = json.dumps(key, indent=1, default=str)
        path = self.root / "key.json"
        if not self.writable():
            return  # nothing written to a read-only cache
        if not (path.exists() and path.read_text(encoding="utf-8") == text):
            atomic_write_text(path, text)
        self._publish(["key.json"])

    def writable(self) -> bool:
        """This run may write the store: its folder (or, before it exists, the nearest existing parent) is writable."""
        folder = self.root
        while not folder.exists() and folder != folder.parent:
            folder = folder.parent
        return os.access(folder, os.W_OK | os.X_OK)

    @property
    def num_shards(self) -> int:
        return int(self.complete_info()["num_shards"])

    def shard_stats(self, index: int, role: str) -> SourceStats:
        return SourceStats.from_dict(role, self.shard_record(index)["input"])

    def total_stats(self, role: str) -> SourceStats:
        return SourceStats.from_dict(role, self.complete_info()["input"])

    def read_shard_meta(self, index: int, columns: list[str] | None = None) -> pa.Table:
        return pq.read_table(self._path(index, "meta.parquet"), columns=columns)

    def read_meta(self, index: int, columns: list[str] | None = None) -> pa.Table:
        """One shard's metadata (from the consolidated file of a complete store)."""
        if self.is_complete() and self.num_shards:
            return self._consolidated().read_row_group(index, columns=columns)
        return self.read_shard_meta(index, columns)

    def _consolidated(self) -> pq.ParquetFile:
        return pq.ParquetFile(self.root / "meta.parquet")

    def read_array(self, index: int, name: str) -> np.ndarray:
        """An array a stage stored for the shard, memory-mapped."""
        return np.load(self.array_path(index, name), mmap_mode="r")

    def read_embeddings(self, index: int) -> np.ndarray:
        """[n, d] float16, memory-mapped."""
        return self.read_array(index, "emb")

    def iter_shards(self, columns: list[str] | None = None, embeddings: bool = True) -> Iterator[tuple[pa.Table, np.ndarray | None]]:
        for index in range(self.num_shards):
            yield self.read_meta(index, columns), (self.read_embeddings(index) if embeddings else None)

    def rows(self) -> np.ndarray:
        """Rows per shard, from the index. [num_shards] int64"""
        return np.asarray(self.complete_info()["rows"], np.int64)

    def take(self, indices: np.ndarray, columns: list[str]) -> dict[str, list[Any]]:
        """Metadata of the given global rows, in the given order, reading only the row groups (shards)
        that hold them and only the named columns. {column: [len(indices)] values}"""
        indices = np.asarray(indices, np.int64)  # [K]
        offsets = np.concatenate([[0], np.cumsum(self.rows())])  # [num_shards + 1]
        shard_of = np.searchsorted(offsets, indices, side="right") - 1  # [K]
        shards = np.unique(shard_of)
        out: dict[str, list[Any]] = {name: [None] * len(indices) for name in columns}
        if len(shards) == 0:
            return out
        table = self._consolidated().read_row_groups([int(s) for s in shards], columns=columns)  # the needed shards, in order
        starts = np.concatenate([[0], np.cumsum(self.rows()[shards])])  # row of each needed shard in `table`
        local = starts[np.searchsorted(shards, shard_of)] + indices - offsets[shard_of]  # [K]
        picked = table.take(pa.array(local))
        for name in columns:
            out[name] = picked.column(name).to_pylist()
        return out

    def column(self, name: str) -> pa.ChunkedArray:
        """One metadata column over all shards (arrow-backed, not Python objects)."""
        if not self.num_shards:
            return pa.chunked_array([], pa.null())
        return self._consolidated().read(columns=[name]).column(name)


def _write_row_groups(path: Path, schema: pa.Schema, tables: Iterator[pa.Table]) -> None:
    """One parquet file, one row group per table (tables whose types differ from the first are cast)."""
    with pq.ParquetWriter(path, schema) as writer:
        for table in tables:
            writer.write_table(table.cast(schema) if table.schema != schema else table, row_group_size=max(1, table.num_rows))


def source_key(source: "SourceConfig", renderer: "TextRenderer", shard_size: int) -> dict[str, Any]:
    """What decides a source's samples: its files (with size and mtime), fields, rendering, sharding."""
    from dataselect.io.locate import fingerprint

    return {
        "source": fingerprint(source),
        "id_field": source.id_field,
        "limit": source.limit,
        "render": renderer.describe(),
        "shard_size": shard_size,
    }


def sample_columns(samples: list["Sample"], fields: dict[str, str] | None = None) -> dict[str, pa.Array]:
    """Metadata columns every store has (id, position, text_hash, norm_hash, preview), plus record fields
    copied as string columns ({column: field})."""
    from dataselect.io.samples import text_hash

    columns = {
        "id": pa.array([s.id for s in samples], pa.string()),
        "position": pa.array([s.position for s in samples], pa.int64()),
        "text_hash": pa.array([text_hash(s.text) for s in samples], pa.int64()),
        # whitespace-normalised: the contamination guard's key (a pool copy of a target sample)
        "norm_hash": pa.array([text_hash(" ".join(s.text.split())) for s in samples], pa.int64()),
        "preview": pa.array([s.text[:PREVIEW_CHARS] for s in samples], pa.string()),
    }
    for column, field in (fields or {}).items():
        columns[column] = pa.array([None if s.record.get(field) is None else str(s.record.get(field)) for s in samples], pa.string())
    return columns
