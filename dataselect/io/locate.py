"""Where a source's records are: `input.path` (a file, a directory, a glob, `-`, `hf:NAME`, a saved
dataset) -> the locations to read in a stable order, the files met and not read (with why), and the
fingerprint a cache key is built from. A run resolves each source once (`pin`, then `located`)."""
from __future__ import annotations

import codecs
import functools
import glob
import hashlib
import itertools
import json
import os
import re
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dataselect.config import SourceConfig
from dataselect.errors import ConfigError, InputError
from dataselect.io.remote import identity, is_url, listing
from dataselect.io.streams import open_binary, stdin_spool

COMPRESSED_SUFFIXES = (".gz", ".bz2", ".xz", ".zst")
JSONL_SUFFIXES = tuple(base + c for base in (".jsonl", ".json", ".ndjson") for c in ("",) + COMPRESSED_SUFFIXES)
JSON_ARRAY_SUFFIXES = tuple(".json" + c for c in ("",) + COMPRESSED_SUFFIXES)  # sniffed: a JSON array, or JSON Lines
PARQUET_SUFFIXES = (".parquet",)
STDIN = "-"  # input.path: - reads standard input
# what this engine writes into output.dir; a directory input skips them where a dataselect manifest says so
ENGINE_OUTPUTS = ("selection.parquet", "scores.parquet", "manifest.json", "selected.jsonl", "selected.parquet", "report.html")
CACHE_TAG = "CACHEDIR.TAG"  # the cache directory tag (bford.info/cachedir) the engine leaves in its cache root
CACHE_TAG_TEXT = "Signature: 8a477f597d28d172789f06886806bc55\n# dataselect's cache (runtime.cache_dir): score stores, not input\n"


@dataclass(frozen=True)
class SkippedFile:
    """A file a directory or glob input met but does not read, and why (reported, never parsed)."""

    path: str
    reason: str


NOT_DATA = "not a data file (.jsonl, .json, .ndjson, their .gz/.bz2/.xz/.zst, or .parquet)"
ENGINE_OUTPUT = "a dataselect output (its folder's manifest.json or scorer.json says so)"
FILE_KINDS = ("jsonl", "json", "parquet")
HASHED_SOURCE_BYTES = 1 << 20  # files up to this size are part of a cache key by their content too


def _is_saved_dataset(path: Path) -> bool:
    """A `save_to_disk` folder: a Dataset (state.json + dataset_info.json) or a DatasetDict."""
    return path.is_dir() and (((path / "state.json").exists() and (path / "dataset_info.json").exists()) or (path / "dataset_dict.json").exists())


def hf_disk_path(spec: str) -> Path | None:
    """The saved dataset folder of an hf location `PATH[:SPLIT]`, or None for a remote dataset name."""
    path = Path(spec.partition(":")[0]).expanduser()
    return path if path.is_dir() else None


def _saved_dataset_locations(folder: Path) -> list[tuple[str, str]]:
    """A saved dataset met inside a directory input: one location, or one per split of a DatasetDict."""
    try:
        splits = json.loads((folder / "dataset_dict.json").read_text(encoding="utf-8"))["splits"]
    except (OSError, ValueError, KeyError, TypeError):
        return [("hf", str(folder))]
    return [("hf", f"{folder}:{split}") for split in splits]


def _is_engine_store(names: set[str]) -> bool:
    """The engine's cache: a tagged cache root, or a score store (key.json and its shard files)."""
    return CACHE_TAG in names or ("key.json" in names and ("complete.json" in names or any(n.startswith("shard-") for n in names)))


@functools.lru_cache(maxsize=512)
def _json_object(path: Path, mtime_ns: int) -> dict[str, Any]:
    """A small JSON file's object (memoised by modification time); {} when it is not one."""
    try:
        found = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return found if isinstance(found, dict) else {}


def _engine_output(path: Path) -> bool:
    """The file is a saved scorer's (its folder's scorer.json names the method and its files: arrays, not data)
    or one of a run's outputs (its folder's manifest.json is a dataselect manifest)."""
    try:
        scorer = path.parent / "scorer.json"
        if scorer.exists():
            description = _json_object(scorer, scorer.stat().st_mtime_ns)
            return "method" in description and "files" in description
        if path.name not in ENGINE_OUTPUTS:
            return False
        manifest_path = path.parent / "manifest.json"
        manifest = _json_object(manifest_path, manifest_path.stat().st_mtime_ns)
        return "config" in manifest and "dataselect" in (manifest.get("versions") or {})
    except OSError:
        return False


def _file_kind(path: Path | str, fmt: str) -> str | None:
    """jsonl, json (an array), parquet, or None for a name of no known data kind (a local path or a URL)."""
    name = str(path).rsplit("/", 1)[-1] if is_url(path) else Path(path).name
    if fmt == "parquet" or (fmt == "auto" and name.endswith(PARQUET_SUFFIXES)):
        return "parquet"
    if fmt == "jsonl" or name.endswith(JSONL_SUFFIXES):
        return "json" if name.endswith(JSON_ARRAY_SUFFIXES) and _starts_a_json_array(path) else "jsonl"
    return None


def _starts_a_json_array(path: Path | str) -> bool:
    """The first byte that is not whitespace (or a byte-order mark) is `[`: an Alpaca-style JSON array."""
    try:
        with open_binary(path) as handle:
            head = handle.read(4096)
    except Exception:  # noqa: BLE001 - unreadable or damaged: read as JSON Lines, whose reader reports it
        return False
    return head.removeprefix(codecs.BOM_UTF8).lstrip()[:1] == b"["


def _classified(path: Path, fmt: str, found: list, skipped: list[SkippedFile]) -> None:
    """One file a directory or glob met: data (into `found`), or skipped with the reason."""
    if _engine_output(path):
        skipped.append(SkippedFile(str(path), ENGINE_OUTPUT))
    elif (kind := _file_kind(path, fmt)) is None:
        skipped.append(SkippedFile(str(path), NOT_DATA))
    else:
        found.append((path, kind, path))


def _walk(folder: Path, fmt: str) -> tuple[list[tuple[Path, str, Path | str]], list[SkippedFile]]:
    """A directory input's data: files of a data kind, and saved datasets read as datasets; never the
    engine's own outputs or cache, nor hidden files and folders; any other file is skipped and reported."""
    found: list[tuple[Path, str, Path | str]] = []
    skipped: list[SkippedFile] = []
    for root, dirs, files in os.walk(folder):
        here = Path(root)
        if _is_engine_store(set(files)):
            dirs[:] = []
            continue
        if here != folder and _is_saved_dataset(here):
            found.extend((here, kind, loc) for kind, loc in _saved_dataset_locations(here))
            dirs[:] = []
            continue
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(files):
            if not name.startswith(".") and (here / name).is_file():
                _classified(here / name, fmt, found, skipped)
    return found, skipped


def _glob(pattern: str, fmt: str) -> tuple[list[tuple[Path, str, Path | str]], list[SkippedFile]]:
    """A glob's data, by the directory rules: a matched saved dataset is read as one, a file inside one
    or inside the engine's cache is not read, anything else is classified."""
    found: list[tuple[Path, str, Path | str]] = []
    skipped: list[SkippedFile] = []
    pattern = os.path.expanduser(pattern)
    matches = sorted(Path(p) for p in glob.glob(pattern, recursive=True))
    datasets = {Path(os.path.abspath(m)) for m in matches if _is_saved_dataset(m)}
    literal = re.split(r"[*?\[]", pattern, maxsplit=1)[0]  # the folder the pattern starts in: folders above it are not looked at
    top = Path(os.path.abspath(literal if literal.endswith(os.sep) or os.path.isdir(literal) else os.path.dirname(literal) or "."))
    marks: dict[Path, str | None] = {}

    def mark(folder: Path) -> str | None:  # "cache", "dataset" or None, for one folder (memoised)
        if folder not in marks:
            names = {p.name for p in folder.iterdir()} if folder.is_dir() else set()
            marks[folder] = "cache" if _is_engine_store(names) else "dataset" if _is_saved_dataset(folder) else None
        return marks[folder]

    for match in matches:
        absolute = Path(os.path.abspath(match))
        folders = list(itertools.takewhile(lambda f: f != top.parent, absolute.parents))  # up to the pattern's own folder
        if absolute in datasets:
            if not any(f in datasets for f in folders):  # not a split folder of a matched DatasetDict
                found.extend((match, kind, loc) for kind, loc in _saved_dataset_locations(match))
            continue
        if not match.is_file():
            continue
        enclosing = next(((f, mark(f)) for f in folders if mark(f) is not None), None)
        if enclosing is None:
            _classified(match, fmt, found, skipped)
        elif enclosing[1] == "dataset" and not any(f in datasets for f in folders):
            skipped.append(SkippedFile(str(match), f"part of the saved dataset {enclosing[0]} (name its folder to read it)"))
    return found, skipped


def _remote(url: str, fmt: str) -> tuple[list[tuple[str, str, str]], list[SkippedFile]]:
    """An object-storage URL's data: one object, or those under a prefix or matching a pattern, each
    classified by name as a directory's files are (saved datasets and the engine's outputs are local only)."""
    shape, urls = listing(url)
    if shape == "file":
        kind = _file_kind(url, fmt)
        if kind is None:
            raise ConfigError(f"config error: input.format: cannot tell the kind of {url} from its name; set input.format: jsonl or parquet")
        return [(url, kind, url)], []
    found: list[tuple[str, str, str]] = []
    skipped: list[SkippedFile] = []
    for each in urls:
        kind = _file_kind(each, fmt)
        if kind is None:
            skipped.append(SkippedFile(each, NOT_DATA))
        else:
            found.append((each, kind, each))
    return found, skipped


def _role(config: SourceConfig) -> str:
    return "target" if type(config).__name__ == "TargetConfig" else "input"


def _expand(path: str, fmt: str, role: str = "input") -> tuple[list[tuple[str, Path | str]], list[SkippedFile]]:
    """One configured path -> ([(kind, location)], skipped files), kind in jsonl/json/parquet/hf/stdin, in a stable order."""
    if path == STDIN:
        return [("stdin", STDIN)], []
    if path.startswith("hf:") or fmt == "hf":
        return [("hf", path.removeprefix("hf:"))], []
    if is_url(path):
        found, skipped = _remote(path, fmt)
        if not found:
            detail = f" (skipped {len(skipped)}; the first: {skipped[0].path}: {skipped[0].reason})" if skipped else ""
            raise InputError(f"input error: no input files found at {path!r}{detail}")
        return [(kind, loc) for _, kind, loc in found], skipped
    candidate = Path(path).expanduser()
    if _is_saved_dataset(candidate):
        return [("hf", str(candidate))], []
    skipped: list[SkippedFile] = []
    if candidate.is_dir():
        found, skipped = _walk(candidate, fmt)
    elif candidate.is_file():
        kind = _file_kind(candidate, fmt)
        if kind is None:
            raise ConfigError(f"config error: {role}.format: cannot tell the kind of {path} from its name; set {role}.format: jsonl "
                              "(JSON Lines, or a JSON array of records) or parquet")
        found = [(candidate, kind, candidate)]
    else:
        found, skipped = _glob(path, fmt)
    if not found:
        detail = f" (skipped {len(skipped)}; the first: {skipped[0].path}: {skipped[0].reason})" if skipped else ""
        raise InputError(f"input error: no input files found at {path!r}{detail}")
    return [(kind, loc) for _, kind, loc in sorted(found, key=lambda item: item[0])], skipped


def _paths(config: SourceConfig) -> list[str]:
    if config.path is None:
        raise ConfigError(f"config error: {_role(config)}.path is required (a file, glob, directory, - for standard input, or hf:NAME[:CONFIG][:SPLIT])")
    return [config.path] if isinstance(config.path, str) else list(config.path)


@dataclass(frozen=True)
class Located:
    """A source resolved: its locations (kind, path or name) in reading order, and the files a directory or
    glob met and does not read."""

    locations: tuple[tuple[str, Path | str], ...]
    skipped: tuple[SkippedFile, ...]


def _resolve(config: SourceConfig) -> Located:
    found = [_expand(p, config.format, _role(config)) for p in _paths(config)]
    return Located(tuple(loc for locations, _ in found for loc in locations), tuple(skip for _, skipped in found for skip in skipped))


def _pin_key(config: SourceConfig) -> tuple[Any, ...]:
    return (config.path if isinstance(config.path, str) or config.path is None else tuple(config.path), config.format)


def pin(config: SourceConfig) -> Located:
    """Resolve the source now and pin the result on `config` for the rest of the run: the plan, the cache
    keys, the selected rows and the manifest then all read the same files, resolved once, even if a
    directory gains or loses files while the run goes on (a copy of the config, e.g. in a worker, keeps it)."""
    found = _resolve(config)
    config._located = (_pin_key(config), found)
    return found


def located(config: SourceConfig) -> Located:
    """The source's files: as pinned for the run, or resolved now outside one (dry run, tools)."""
    pinned = config._located
    if pinned is not None and pinned[0] == _pin_key(config):
        return pinned[1]
    return _resolve(config)


def resolve_locations(config: SourceConfig) -> list[tuple[str, Path | str]]:
    """The source's locations as (kind, path or name), resolved once per run (pinned) and in a stable order."""
    return list(located(config).locations)


def skipped_files(config: SourceConfig) -> list[SkippedFile]:
    """Files a directory or glob of the source met and does not read (not data, or this engine's output)."""
    return list(located(config).skipped)


def file_labels(locations: list[tuple[str, Path | str]]) -> list[str]:
    """Short, stable file labels for ids: the path relative to the files' common folder."""
    files = [_absolute(loc) for kind, loc in locations if kind in FILE_KINDS]
    common: list[str] = []  # the files' common folder, by components (a URL's scheme:// survives, as os.path would not keep it)
    for column in zip(*(f.rsplit("/", 1)[0].split("/") for f in files)):
        if len(set(column)) > 1:
            break
        common.append(column[0])
    root = "/".join(common)
    labels = []
    for kind, loc in locations:
        label = "stdin" if kind == "stdin" else _absolute(loc)[len(root) + 1 :] if kind in FILE_KINDS else str(loc)
        # a file name that is not UTF-8 (Python holds its bytes as lone surrogates) is shown as \xNN: the
        # label goes into ids, which Arrow and every later tool need as valid UTF-8
        labels.append(os.fsencode(label).decode("utf-8", "backslashreplace"))
    return labels


def _absolute(location: Path | str) -> str:
    """A file's absolute path, or its URL as it is (with `/` separators either way)."""
    return str(location) if is_url(location) else Path(location).resolve().as_posix()


def fingerprint(config: SourceConfig) -> list[Any]:
    """What identifies the source's content for caching: paths with size, times, inode (and the content of a
    small file), or the dataset name; standard input is new every run (never a cache hit)."""
    out: list[Any] = []
    for kind, loc in resolve_locations(config):
        if kind == "stdin":
            spool = stdin_spool()
            out.append(["stdin", spool[1] if spool is not None else uuid.uuid4().hex])
        elif kind == "hf":
            folder = hf_disk_path(str(loc))
            if folder is not None:
                files = sorted(p for p in folder.rglob("*") if p.is_file())
                split = str(loc).partition(":")[2]
                out.append(["hf-disk", str(folder.resolve()), split, [[p.name, p.stat().st_size, p.stat().st_mtime_ns] for p in files]])
            else:
                out.append(["hf", loc])
        elif is_url(loc):
            out.append([kind, str(loc), *identity(str(loc))])
        else:
            stat = Path(loc).stat()
            # inode and change time too: restoring a file's modification time after editing it cannot restore
            # those; a small file's content is hashed besides (a cheap read)
            content = hashlib.blake2b(Path(loc).read_bytes(), digest_size=16).hexdigest() if stat.st_size <= HASHED_SOURCE_BYTES else None
            out.append([kind, str(Path(loc).resolve()), stat.st_size, stat.st_mtime_ns, stat.st_ino, stat.st_ctime_ns, content])
    return out
