"""Locks that keep two runs apart (fcntl on local files; the kernel drops a lock when its process dies, so
a killed run never leaves one behind). A store is scored by one run at a time: a second run waits, then
finds it complete (a cache hit). An output folder is written by one run at a time: a second run stops
at once with one line naming the holder. On object storage or NFS without lock support these are
advisory at best (docs/architecture.md)."""
from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
from pathlib import Path
from typing import IO, Iterator

from dataselect.errors import ConfigError

STORE_LOCK = ".lock"
LOCKS = "locks"  # under runtime.cache_dir: one file per output folder


def _lock_file(folder: Path, name: str) -> IO[str] | None:
    """The lock file `folder/name` opened (the folder created), or None where the folder cannot be written
    (a read-only cache: no run can write there, so there is nothing to keep apart)."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        return open(folder / name, "a+")
    except OSError:
        nearest = next(p for p in (folder, *folder.parents) if p.exists())
        if os.access(nearest, os.W_OK):
            raise
        return None


@contextlib.contextmanager
def store_lock(root: Path) -> Iterator[None]:
    """Hold the store's lock for the block, waiting while another run holds it. A store in a read-only cache
    is read without a lock: no run can write it."""
    handle = _lock_file(root, STORE_LOCK)
    if handle is None:
        yield
        return
    with handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


@contextlib.contextmanager
def output_lock(folder: Path, cache_root: Path) -> Iterator[None]:
    """Hold the output folder's lock for the block; another run holding it is a ConfigError naming it. The
    lock file lives in the cache (cache_root/locks/), keyed by the folder's resolved path, so that an output
    folder holds outputs only."""
    name = hashlib.sha256(str(folder.resolve()).encode("utf-8", "surrogateescape")).hexdigest()[:24]
    handle = _lock_file(cache_root / LOCKS, f"output-{name}.lock")
    if handle is None:
        yield  # a read-only cache holds no lock file: runs on one output folder are not kept apart then
        return
    with handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "another process"
            raise ConfigError(f"config error: output.dir: {folder} is in use by another run ({holder}); wait for it to finish "
                              "or choose another output.dir") from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"pid {os.getpid()}")
        handle.flush()
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
