"""`dataselect cache list|clean`: what runtime.cache_dir holds and how to reclaim it.

The cache holds one folder per score store (cache_root/<stage kind>/<key digest>/: shards, the key that
decides them, complete.json once whole), trained proxy models (cache_root/proxy/*.pt), standard input's
spools and the lock files. Every entry can be removed: a later run recomputes it. A store another run
holds (its lock) is never removed.
"""
from __future__ import annotations

import contextlib
import fcntl
import json
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from dataselect.io.locks import LOCKS, STORE_LOCK

DAY = 86400.0


@dataclass
class CacheEntry:
    """One removable thing in the cache: a score store, a proxy model, a spool."""

    path: Path
    kind: str  # the folder it sits in: the stage kind (embed, ngram, loss, ...), proxy, stdin
    state: str  # complete | partial (a store not finished: an interrupted run's) | file
    size: int  # bytes
    used: float  # the newest modification time of its files (a cache hit reads, so a store in use is not old)
    source: str | None = None  # the files a store scored (its key names them)

    def row(self, now: float) -> list[str]:
        age = max(0.0, now - self.used) / DAY
        return [self.kind, self.path.name, self.source or "-", self.state, human_bytes(self.size), f"{age:.1f} days ago"]


def human_bytes(size: float) -> str:
    """A byte count as people read it: 512 B, 3.4 MB."""
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1024 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} TB"


def _files(path: Path) -> Iterator[Path]:
    return (f for f in path.rglob("*") if f.is_file()) if path.is_dir() else iter([path])


def _source(folder: Path) -> str | None:
    """The first file a store's key names, and how many more."""
    with contextlib.suppress(OSError, ValueError, TypeError, IndexError, KeyError):
        locations = json.loads((folder / "key.json").read_text(encoding="utf-8"))["source"]
        return Path(str(locations[0][1])).name + (f" (+{len(locations) - 1} more)" if len(locations) > 1 else "")
    return None


def entries(cache_root: Path) -> list[CacheEntry]:
    """Everything removable in the cache, by kind and name (the lock folder and the cache tag are not)."""
    found = []
    if not cache_root.is_dir():
        return found
    for kind in sorted(p for p in cache_root.iterdir() if p.is_dir() and p.name != LOCKS):
        for path in sorted(kind.iterdir()):
            files = list(_files(path))
            stats = [f.stat() for f in files]
            state = "file" if path.is_file() else ("complete" if (path / "complete.json").exists() else "partial")
            found.append(CacheEntry(path, kind.name, state, sum(s.st_size for s in stats), max((s.st_mtime for s in stats), default=0.0),
                                    _source(path) if path.is_dir() else None))
    return found


def in_use(entry: CacheEntry) -> bool:
    """A store a running run holds: its lock is taken (a lock dies with its process, so a killed run's is free)."""
    lock = entry.path / STORE_LOCK
    if not lock.exists():
        return False
    with open(lock, "a+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            return True
        fcntl.flock(handle, fcntl.LOCK_UN)
    return False


def list_cache(cache_root: Path) -> str:
    """The cache's entries as a table, and their total."""
    found = entries(cache_root)
    if not found:
        return f"{cache_root}: empty (nothing cached)"
    now = time.time()
    rows = [["kind", "name", "source", "state", "size", "last used"]] + [e.row(now) for e in found]
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip() for row in rows]
    total = sum(e.size for e in found)
    return "\n".join([f"{cache_root}:", *lines, f"{len(found)} entries, {human_bytes(total)}"])


def clean_cache(cache_root: Path, older_than_days: float | None = None, partial: bool = False,
                dry_run: bool = False) -> tuple[list[CacheEntry], list[CacheEntry]]:
    """Remove the entries last used more than `older_than_days` ago, or only the partial ones, or (neither
    given) all of them; never a store a running run holds. -> (removed, kept because in use)"""
    now = time.time()
    chosen = [e for e in entries(cache_root)
              if (older_than_days is None or now - e.used > older_than_days * DAY) and (not partial or e.state == "partial")]
    removed, busy = [], []
    for entry in chosen:
        if entry.path.is_dir() and in_use(entry):
            busy.append(entry)
            continue
        if not dry_run:
            if entry.path.is_dir():
                shutil.rmtree(entry.path)
            else:
                entry.path.unlink(missing_ok=True)
        removed.append(entry)
    if not dry_run:
        for kind in cache_root.iterdir() if cache_root.is_dir() else []:
            if kind.is_dir() and kind.name != LOCKS and not any(kind.iterdir()):
                kind.rmdir()
    return removed, busy


def clean_summary(removed: list[CacheEntry], busy: list[CacheEntry], dry_run: bool) -> str:
    """The one line `dataselect cache clean` ends with: what it removed (or would), and what it kept in use."""
    verb = "would remove" if dry_run else "removed"
    text = f"{verb} {len(removed)} entries, {human_bytes(sum(e.size for e in removed))}"
    if busy:
        text += f"; kept {len(busy)} in use by a running run ({', '.join(e.path.name for e in busy[:3])})"
    return text
