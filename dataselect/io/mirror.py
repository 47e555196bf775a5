"""A score store in object storage (runtime.cache_dir: s3://bucket/cache): the local store layout of
io/shards.py in a mirror folder on this machine, each finished file uploaded after it is written.

An object store has no rename, so the order of the uploads is the atomicity: a shard's arrays and
metadata first, its done record last (a shard whose record is in the store is whole); the consolidated
metadata, then complete.json, last of all. Which shards are done and whether the store is complete are
read from the store, never from the mirror: another machine (a Ray worker, a later run elsewhere) may
have written them. A file a record lists that the mirror lacks, or holds changed, is fetched and checked
against the size and checksum the record gives; a mirror whose record differs from the store's (another
machine scored the shard) is checked by checksum before any of its files is trusted.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Callable

from dataselect.config import cache_mirror
from dataselect.errors import OutputError
from dataselect.io.remote import filesystem, is_url
from dataselect.io.shards import ShardStore, atomic_write


class _Absent(Exception):
    """The store holds no object by that name (raised through atomic_write, which would make an OSError an OutputError)."""


def store_mirror(url: str) -> Path:
    """The local mirror of a store at `url` (<cache URL>/<stage kind>/<key digest>): the cache URL's mirror
    folder, then kind/digest, as a local cache lays them out; every process on a machine finds the same one."""
    cache, kind, digest = url.rstrip("/").rsplit("/", 2)
    return cache_mirror(cache) / kind / digest


def open_store(location: str) -> ShardStore:
    """The store at `location`: a local folder, or an object-storage URL served through its local mirror."""
    return MirroredStore(store_mirror(location), location) if is_url(location) else ShardStore(Path(location))


def keyed_store(cache_root: Path, kind: str, key: dict[str, Any], cache_url: str | None = None) -> ShardStore:
    """The store folder for everything that decides its content, under cache_root/kind/ (or, with a
    `cache_url`, under cache_url/kind/ in object storage, mirrored locally)."""
    digest = hashlib.sha256(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()[:20]
    store = open_store(f"{cache_url}/{kind}/{digest}" if cache_url else str(Path(cache_root) / kind / digest))
    store.write_key(key)
    return store


class MirroredStore(ShardStore):
    """A ShardStore whose truth is in object storage at `url`; `root` is this machine's mirror of it,
    where the local store code writes and reads as it does for a local store."""

    def __init__(self, root: Path, url: str) -> None:
        super().__init__(root)
        self.url = url.rstrip("/")
        self._synced: dict[int, bool] = {}  # done records read from the store: True where the mirror already held the same one
        self._index_fresh = True  # the mirror held the store's complete.json already

    @property
    def location(self) -> str:
        return self.url

    def _call(self, action: str, name: str, call: Callable[[Any, str], Any], reading: bool = True) -> Any:
        """call(fs, path of `name` in the store); reading, a missing object is _Absent; any other failure (a
        missing bucket where writing) is one OutputError naming the object."""
        fs, root = filesystem(self.url)
        fs.invalidate_cache(f"{root}/{name}")  # a listing cached in this process may predate what another machine wrote since
        try:
            return call(fs, f"{root}/{name}")
        except FileNotFoundError as error:
            if not reading:
                raise OutputError(f"output error: cannot {action} {self.url}/{name}: {error} (does the bucket exist?)") from None
            raise _Absent(name) from None
        except OSError as error:
            why = error.strerror or str(error) or type(error).__name__
            raise OutputError(f"output error: cannot {action} {self.url}/{name}: {why} (check runtime.storage_options, "
                              "or point runtime.cache_dir elsewhere)") from None

    def _publish(self, names: list[str]) -> None:
        """Upload the files just written, in order: the last one named is the completion marker."""
        for name in names:
            self._call("upload", name, lambda fs, path, name=name: fs.put_file(str(self.root / name), path), reading=False)

    def _fetch_record(self, name: str) -> bool | None:
        """The store's small record `name` copied into the mirror: None when the store has none (the mirror's
        copy goes too), else whether the mirror held the same bytes already."""
        local = self.root / name
        try:
            data = self._call("read", name, lambda fs, path: fs.cat_file(path))
        except _Absent:
            local.unlink(missing_ok=True)
            return None
        if local.is_file() and local.read_bytes() == data:
            return True
        atomic_write(local, lambda temp: temp.write_bytes(data))
        return False

    def _pull(self, name: str) -> bool:
        """Fetch the store's file `name` into the mirror; False when the store has none."""
        try:
            atomic_write(self.root / name, lambda temp: self._call("fetch", name, lambda fs, path: fs.get_file(path, str(temp))))
        except _Absent:
            return False
        return True

    def _remove(self, name: str) -> None:
        try:
            self._call("remove", name, lambda fs, path: fs.rm_file(path))
        except _Absent:
            pass

    def _sync_record(self, index: int) -> bool | None:
        """The shard's done record from the store, into the mirror (once per process while it holds): None when
        the store has none, else whether the mirror held it already."""
        if index not in self._synced:
            fresh = self._fetch_record(self._path(index, "done.json").name)
            if fresh is None:
                return None
            self._synced[index] = fresh
        return self._synced[index]

    def is_done(self, index: int) -> bool:
        """The shard's done record is in the store (the mirror's alone does not count)."""
        return self._sync_record(index) is not None

    def shard_record(self, index: int) -> dict[str, Any]:
        """The store's done record of the shard (read through the mirror)."""
        self._sync_record(index)
        return super().shard_record(index)

    def damaged(self, index: int, checksums: bool) -> str | None:
        """As a local store's, with the shard's files fetched where the mirror lacks them; files the mirror
        holds under another record than the store's are checked by checksum."""
        fresh = self._sync_record(index)
        return super().damaged(index, checksums or fresh is False)

    def _file_intact(self, name: str, record: Any, checksums: bool) -> bool:
        """The mirror's copy matches the record, or a copy fetched now does (checked in full: it came over the network)."""
        return super()._file_intact(name, record, checksums) or (self._pull(name) and super()._file_intact(name, record, True))

    def is_complete(self) -> bool:
        """complete.json is in the store (fetched into the mirror, where complete_info reads it)."""
        if self._complete is not None:
            return True
        fresh = self._fetch_record("complete.json")
        if fresh is not None:
            self._index_fresh = fresh
        return fresh is not None

    def damaged_parts(self, checksums: bool) -> dict[int, str]:
        """As a local store's; by checksum where the mirror held another complete.json than the store's."""
        return super().damaged_parts(checksums or not self._index_fresh)

    def discard(self, index: int) -> None:
        """Forget a shard in the store (its done record first), then in the mirror."""
        self._remove(self._path(index, "done.json").name)
        self._synced.pop(index, None)
        super().discard(index)

    def discard_index(self) -> None:
        """Forget the index in the store, then in the mirror."""
        for name in ("complete.json", "meta.parquet"):
            self._remove(name)
        super().discard_index()

    def complete(self, num_shards: int, info: dict[str, Any]) -> None:
        """Every shard fetched into the mirror (workers elsewhere wrote them), then indexed and uploaded."""
        for index in range(num_shards):
            if (why := self.damaged(index, checksums=False)) is not None:
                raise OutputError(f"output error: {self.url}: shard {index} was scored but {why} in the store (removed by another "
                                  "run?); run again to score it again")
        super().complete(num_shards, info)

    def remove(self) -> None:
        """Remove the store's objects, then this machine's mirror of it."""
        fs, root = filesystem(self.url)
        try:
            fs.rm(root, recursive=True)
        except FileNotFoundError:
            pass
        super().remove()

    def size_bytes(self) -> int:
        """The bytes of the store's objects (0 before it has any)."""
        fs, root = filesystem(self.url)
        fs.invalidate_cache(root)
        try:
            return int(fs.du(root))
        except FileNotFoundError:
            return 0

    def writable(self) -> bool:
        """A store in object storage is written where it can be (a denied upload is one OutputError naming the object)."""
        return True
