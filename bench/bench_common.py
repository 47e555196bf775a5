"""What the benchmark scripts share: their data files, found or named in one line, and work folders
that do not outlive the run. The default data sits in ../shared/data beside the repository, which a
clone does not have: every data path is an argument."""
from __future__ import annotations

import contextlib
import gzip
import json
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any, Iterator

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def pool_sources(pool: str | Path) -> dict[str, str]:
    """id -> `source` of every record of a jsonl pool (gzipped or not): what the benches count selections by."""
    opener = gzip.open if str(pool).endswith(".gz") else open
    with opener(pool, "rt", encoding="utf-8") as handle:
        return {str(row["id"]): row.get("source") for row in map(json.loads, handle)}


def pool_sample(pool: str | Path, n: int, rng: Any) -> list[dict]:
    """n records of a jsonl pool (gzipped or not) drawn without replacement by `rng` (a numpy Generator), in pool order."""
    opener = gzip.open if str(pool).endswith(".gz") else open
    with opener(pool, "rt", encoding="utf-8") as handle:
        records = [json.loads(line) for line in handle]
    return [records[i] for i in sorted(rng.choice(len(records), size=min(n, len(records)), replace=False))]


def write_unchanged(path: Path, text: str) -> None:
    """Write `text` unless the file already holds it: a rewrite would change its mtime, and with it the
    cache key of every store scored from it."""
    if not path.exists() or path.read_text(encoding="utf-8") != text:
        path.write_text(text, encoding="utf-8")


def data_file(path: str | Path, flag: str) -> Path:
    """The file, or exit with one line saying which argument names it."""
    path = Path(path).expanduser()
    if not path.is_file():
        sys.exit(f"error: {path} not found; pass {flag} PATH (the default is in ../shared/data beside the repository, "
                 "which a clone does not have)")
    return path


@contextlib.contextmanager
def work_folder(prefix: str, keep: str | None = None) -> Iterator[Path]:
    """A temporary folder, removed at the end whatever happens; or `keep`, created and left in place."""
    if keep:
        folder = Path(keep).expanduser()
        folder.mkdir(parents=True, exist_ok=True)
        yield folder
        return
    folder = Path(tempfile.mkdtemp(prefix=prefix))
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)
