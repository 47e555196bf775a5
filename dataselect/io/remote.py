"""Object storage and other fsspec file systems (`s3://`, `gs://`, `hf://`, `memory://` ...): whether a
path is a URL, and the file system that serves it, with `runtime.storage_options` (credentials, endpoint)
and otherwise the store's own environment variables (AWS_ENDPOINT_URL, AWS_ACCESS_KEY_ID ...)."""
from __future__ import annotations

import io
import os
import re
from typing import Any

from dataselect.errors import ConfigError

URL = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")
_OPTIONS: dict[str, Any] = {}  # runtime.storage_options of the run this process works for (set by the driver and each shard task)
STORE_PACKAGES = {"s3": "s3fs", "s3a": "s3fs", "gs": "gcsfs", "gcs": "gcsfs", "az": "adlfs", "abfs": "adlfs"}


def is_url(path: Any) -> bool:
    """`path` names a location in an fsspec file system (scheme://...) rather than a local path."""
    return isinstance(path, str) and bool(URL.match(path)) and not path.startswith("file://")


def filesystem(url: str, storage_options: dict[str, Any] | None = None) -> tuple[Any, str]:
    """(the fsspec file system serving `url`, the path inside it), with `storage_options`, else those of the
    run this process works for (`use_storage_options`); a store whose package is missing is one ConfigError
    naming the package to install."""
    import fsspec

    try:
        return fsspec.core.url_to_fs(url, **(_OPTIONS if storage_options is None else storage_options))
    except ImportError:
        scheme = url.split("://", 1)[0]
        package = STORE_PACKAGES.get(scheme, f"the fsspec implementation of {scheme}://")
        raise ConfigError(f"config error: {url}: reading {scheme}:// needs {package} (pip install {package})") from None



def use_storage_options(options: dict[str, Any] | None) -> None:
    """The storage options every later read of a URL in this process uses (the run's runtime.storage_options)."""
    _OPTIONS.clear()
    _OPTIONS.update(options or {})


def open_raw(location: Any) -> Any:
    """A seekable binary file: a URL through its store (byte ranges are ranged reads), else a local file."""
    if is_url(location):
        fs, path = filesystem(location)
        return io.BufferedReader(fs.open(path, "rb"), 1 << 20)  # readline(limit) and peek, as a local file has them
    return open(location, "rb")


def size_of(location: Any) -> int:
    """The size in bytes of a file, local or in a store."""
    if is_url(location):
        fs, path = filesystem(location)
        return int(fs.size(path))
    return os.stat(location).st_size


def listing(url: str) -> tuple[str, list[str]]:
    """("file", [url]) for one object, ("dir", [urls]) for the objects under a prefix (hidden names left out),
    ("glob", [urls]) for a pattern's matches; each sorted, each a full URL."""
    fs, path = filesystem(url)
    if any(char in path for char in "*?["):
        return "glob", sorted(fs.unstrip_protocol(p) for p in fs.glob(path) if fs.isfile(p))
    if fs.isfile(path):
        return "file", [url]
    if fs.isdir(path):
        root = path.rstrip("/")
        found = [p for p in fs.find(root) if not any(part.startswith(".") for part in p[len(root) + 1 :].split("/"))]
        return "dir", sorted(fs.unstrip_protocol(p) for p in found)
    return "glob", []


def identity(url: str) -> list[Any]:
    """What identifies an object's content for a cache key: its size and the store's version tag (ETag,
    generation or modification time), so an overwritten object is scored again."""
    fs, path = filesystem(url)
    info = fs.info(path)
    tag = next((info[key] for key in ("ETag", "etag", "md5Hash", "generation", "LastModified", "mtime", "last_modified") if info.get(key)), None)
    return [int(info.get("size") or 0), str(tag) if tag is not None else None]
