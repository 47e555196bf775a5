"""Object storage and other fsspec file systems (`s3://`, `gs://`, `hf://`, `memory://` ...): whether a
path is a URL, and the file system that serves it, with `runtime.storage_options` (credentials, endpoint)
and otherwise the store's own environment variables (AWS_ENDPOINT_URL, AWS_ACCESS_KEY_ID ...)."""
from __future__ import annotations

import re
from typing import Any

from dataselect.errors import ConfigError

URL = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")
STORE_PACKAGES = {"s3": "s3fs", "s3a": "s3fs", "gs": "gcsfs", "gcs": "gcsfs", "az": "adlfs", "abfs": "adlfs"}


def is_url(path: Any) -> bool:
    """`path` names a location in an fsspec file system (scheme://...) rather than a local path."""
    return isinstance(path, str) and bool(URL.match(path)) and not path.startswith("file://")


def filesystem(url: str, storage_options: dict[str, Any] | None = None) -> tuple[Any, str]:
    """(the fsspec file system serving `url`, the path inside it); a store whose package is missing is one
    ConfigError naming the package to install."""
    import fsspec

    try:
        return fsspec.core.url_to_fs(url, **(storage_options or {}))
    except ImportError:
        scheme = url.split("://", 1)[0]
        package = STORE_PACKAGES.get(scheme, f"the fsspec implementation of {scheme}://")
        raise ConfigError(f"config error: {url}: reading {scheme}:// needs {package} (pip install {package})") from None
