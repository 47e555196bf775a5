"""`dataselect cache list|clean`: what runtime.cache_dir holds and how to reclaim it.

The cache holds one folder per score store (cache_root/<stage kind>/<key digest>/: shards, the key that
decides them, complete.json once whole), trained proxy models (cache_root/proxy/*.pt), standard input's
spools and the lock files. Every entry can be removed: a later run recomputes it. A store another run
holds (its lock) is never removed. A cache in object storage (s3://bucket/cache) holds the score stores
only; their locks are this machine's (the local mirror's), so a run elsewhere cannot be seen from here.
"""
from __future__ import annotations

import contextlib
import fcntl
import json
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

from dataselect.config import MIRRORS
from dataselect.io.locks import LOCKS, STORE_LOCK
from dataselect.io.mirror import open_store, store_mirror
from dataselect.io.remote import filesystem, is_url

DAY = 86400.0


@dataclass
class CacheEntry:
    """One removable thing in the cache: a score store, a proxy model, a spool."""

    path: Path | str  # a local folder or file, or a store's URL in object storage
    kind: str  # the folder it sits in: the stage kind (embed, ngram, loss, ...), proxy, stdin
    state: str  # complete | partial (a store not finished: an interrupted run's) | file | mirror (of a cache in object storage)
    size: int  # bytes
    used: float  # the newest modification time of its files (a cache hit reads, so a store in use is not old)
    source: str | None = None  # the files a store scored (its key names them)

    @property
    def name(self) -> str:
        """The entry's own name (a store's key digest, a proxy's file name)."""
        return self.path.name if isinstance(self.path, Path) else self.path.rsplit("/", 1)[-1]

    @property
    def local(self) -> Path:
        """Where this machine holds the entry: itself, or a store's local mirror."""
        return self.path if isinstance(self.path, Path) else store_mirror(self.path)

    def row(self, now: float) -> list[str]:
        age = max(0.0, now - self.used) / DAY
        return [self.kind, self.name, self.source or "-", self.state, human_bytes(self.size), f"{age:.1f} days ago"]


def human_bytes(size: float) -> str:
    """A byte count as people read it: 512 B, 3.4 MB."""
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1024 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} TB"


def _files(path: Path) -> Iterator[Path]:
    return (f for f in path.rglob("*") if f.is_file()) if path.is_dir() else iter([path])


def _source(read_key: Callable[[], bytes]) -> str | None:
    """The first file a store's key names, and how many more."""
    with contextlib.suppress(OSError, ValueError, TypeError, IndexError, KeyError):
        locations = json.loads(read_key())["source"]
        return Path(str(locations[0][1])).name + (f" (+{len(locations) - 1} more)" if len(locations) > 1 else "")
    return None


def _modified(info: dict[str, Any]) -> float:
    """An object's modification time (seconds since the epoch) from its listing."""
    stamp = next((info[key] for key in ("LastModified", "mtime", "last_modified", "updated") if info.get(key)), 0.0)
    return stamp.timestamp() if hasattr(stamp, "timestamp") else float(stamp)


def _remote_entries(url: str) -> list[CacheEntry]:
    """The score stores of a cache in object storage (<url>/<kind>/<digest>/...), by kind and name."""
    fs, root = filesystem(url)
    fs.invalidate_cache(root)  # runs elsewhere write the cache
    stores: dict[tuple[str, str], list[tuple[str, dict[str, Any]]]] = {}
    for path, info in fs.find(root, detail=True).items():
        parts = path[len(root.rstrip("/")) + 1 :].split("/")
        if len(parts) >= 3:
            stores.setdefault((parts[0], parts[1]), []).append((parts[-1], info))
    found = []
    for (kind, name), files in sorted(stores.items()):
        store = f"{url.rstrip('/')}/{kind}/{name}"
        state = "complete" if any(file == "complete.json" for file, _ in files) else "partial"
        source = _source(lambda kind=kind, name=name: fs.cat_file(f"{root.rstrip('/')}/{kind}/{name}/key.json"))
        found.append(CacheEntry(store, kind, state, sum(int(info.get("size") or 0) for _, info in files),
                                max(_modified(info) for _, info in files), source))
    return found


def entries(cache_root: Path | str) -> list[CacheEntry]:
    """Everything removable in the cache, by kind and name (the lock folder and the cache tag are not); a
    cache in object storage (a URL) lists its score stores."""
    if is_url(str(cache_root)):
        return _remote_entries(str(cache_root))
    cache_root = Path(cache_root)
    found = []
    if not cache_root.is_dir():
        return found
    for kind in sorted(p for p in cache_root.iterdir() if p.is_dir() and p.name != LOCKS):
        for path in sorted(kind.iterdir()):
            files = list(_files(path))
            stats = [f.stat() for f in files]
            state = "file" if path.is_file() else ("complete" if (path / "complete.json").exists() else "partial")
            state = "mirror" if kind.name == MIRRORS else state  # a cache URL's local folder (config.cache_mirror)
            found.append(CacheEntry(path, kind.name, state, sum(s.st_size for s in stats), max((s.st_mtime for s in stats), default=0.0),
                                    _source((path / "key.json").read_bytes) if path.is_dir() else None))
    return found


def in_use(entry: CacheEntry) -> bool:
    """A store a running run on this machine holds: its lock is taken (a lock dies with its process, so a killed
    run's is free)."""
    lock = entry.local / STORE_LOCK
    if not lock.exists():
        return False
    with open(lock, "a+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            return True
        fcntl.flock(handle, fcntl.LOCK_UN)
    return False


def list_cache(cache_root: Path | str) -> str:
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


def clean_cache(cache_root: Path | str, older_than_days: float | None = None, partial: bool = False,
                dry_run: bool = False) -> tuple[list[CacheEntry], list[CacheEntry]]:
    """Remove the entries last used more than `older_than_days` ago, or only the partial ones, or (neither
    given) all of them; never a store a running run holds (in object storage: a run on this machine; a store's
    local mirror goes with it). -> (removed, kept because in use)"""
    now = time.time()
    chosen = [e for e in entries(cache_root)
              if (older_than_days is None or now - e.used > older_than_days * DAY) and (not partial or e.state == "partial")]
    removed, busy = [], []
    for entry in chosen:
        if entry.local.is_dir() and in_use(entry):
            busy.append(entry)
            continue
        if not dry_run:
            _remove(entry)
        removed.append(entry)
    folder = None if is_url(str(cache_root)) else Path(cache_root)
    if not dry_run and folder is not None and folder.is_dir():
        for kind in folder.iterdir():
            if kind.is_dir() and kind.name != LOCKS and not any(kind.iterdir()):
                kind.rmdir()
    return removed, busy


def _remove(entry: CacheEntry) -> None:
    if isinstance(entry.path, str):  # a store in object storage, then this machine's mirror of it
        open_store(entry.path).remove()
    elif entry.path.is_dir():
        shutil.rmtree(entry.path)
    else:
        entry.path.unlink(missing_ok=True)


def clean_summary(removed: list[CacheEntry], busy: list[CacheEntry], dry_run: bool) -> str:
    """The one line `dataselect cache clean` ends with: what it removed (or would), and what it kept in use."""
    verb = "would remove" if dry_run else "removed"
    text = f"{verb} {len(removed)} entries, {human_bytes(sum(e.size for e in removed))}"
    if busy:
        text += f"; kept {len(busy)} in use by a running run ({', '.join(e.name for e in busy[:3])})"
    return text
