"""The scorer folder on disk: `scorer.json` (what the scorer is, the config that shaped its scores, the
versions that wrote it, and each array file with its size and BLAKE2b digest) beside one `.npy` file per
array. Arrays are read with pickling refused, so a folder handed over by someone else can hold data only.

    scorer/
      scorer.json            written last: a folder without it is unfinished
      <name>.npy             numeric arrays (target embeddings, log ratios, the fitting pool's scores)
      <name>.safetensors     a model's weights (the proxy LMs), read as tensors, never as code
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np

from dataselect.errors import ScorerError
from dataselect.io.shards import atomic_write, atomic_write_text, save_npy

FORMAT = 1  # bump when a folder written now would be read wrongly by an older reader
DESCRIPTION = "scorer.json"


def scorer_folder(path: str | Path) -> Path:
    """The scorer folder `path` names: the folder itself, or a run folder's `scorer/`."""
    folder = Path(path).expanduser()
    return folder / "scorer" if not (folder / DESCRIPTION).exists() and (folder / "scorer" / DESCRIPTION).exists() else folder


def fetch_folder(url: str, cache_root: Path, storage_options: dict[str, Any] | None = None) -> Path:
    """A scorer folder in object storage (`s3://...`, or a run folder holding `scorer/`) copied into
    `cache_root/scorers/<digest of its scorer.json>` (scorer.json names every file's digest, so one copy
    serves every later load); scorer.json is written last, so a copy cut short is fetched again."""
    from dataselect.io.remote import filesystem

    fs, root = filesystem(url, storage_options)
    root = root.rstrip("/")
    if not fs.exists(f"{root}/{DESCRIPTION}") and fs.exists(f"{root}/scorer/{DESCRIPTION}"):
        root = f"{root}/scorer"
    try:
        raw = fs.cat_file(f"{root}/{DESCRIPTION}")
        files = json.loads(raw).get("files", {})
    except FileNotFoundError:
        raise ScorerError(f"scorer error: {url}: no {DESCRIPTION} there (is it a scorer folder, a run's output/scorer?)") from None
    except (ValueError, AttributeError) as error:
        raise ScorerError(f"scorer error: {url}/{DESCRIPTION}: unreadable ({error})") from None
    local = cache_root / "scorers" / hashlib.blake2b(raw, digest_size=16).hexdigest()
    if (local / DESCRIPTION).exists():
        return local
    local.mkdir(parents=True, exist_ok=True)
    for name in files:
        if "/" in name or name.startswith("."):
            raise ScorerError(f"scorer error: {url}/{DESCRIPTION}: names a file outside its folder: {name!r}")
        try:
            atomic_write(local / name, lambda temp, n=name: fs.get_file(f"{root}/{n}", str(temp)))
        except FileNotFoundError:
            raise ScorerError(f"scorer error: {url}/{name}: missing") from None
    atomic_write(local / DESCRIPTION, lambda temp: temp.write_bytes(raw))
    return local


def _digest(path: Path) -> str:
    hasher = hashlib.blake2b(digest_size=16)
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            hasher.update(block)
    return hasher.hexdigest()


def write_folder(folder: Path, description: dict[str, Any], arrays: dict[str, np.ndarray],
                 weights: dict[str, dict[str, np.ndarray]] | None = None) -> Path:
    """Write the arrays (and each named set of weights as one safetensors file), then scorer.json naming
    every file with its size and digest (last, atomically)."""
    from safetensors.numpy import save_file

    folder.mkdir(parents=True, exist_ok=True)
    files = {}
    for name, array in arrays.items():
        path = folder / f"{name}.npy"
        contiguous = np.ascontiguousarray(array)
        atomic_write(path, lambda temp, a=contiguous: save_npy(temp, a))
        files[path.name] = {"bytes": path.stat().st_size, "blake2b": _digest(path)}
    for name, tensors in (weights or {}).items():
        path = folder / f"{name}.safetensors"
        atomic_write(path, lambda temp, t=tensors: save_file({k: np.ascontiguousarray(v) for k, v in t.items()}, str(temp)))
        files[path.name] = {"bytes": path.stat().st_size, "blake2b": _digest(path)}
    atomic_write_text(folder / DESCRIPTION, json.dumps({"format": FORMAT, **description, "files": files}, indent=2, default=str))
    return folder


def read_folder(folder: str | Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """(description, arrays by name: a .npy file's array, a .safetensors file's {tensor name: array}),
    every file checked against scorer.json; anything missing, cut short, changed or of another format is
    one ScorerError naming the file."""
    from safetensors import SafetensorError
    from safetensors.numpy import load_file

    folder = Path(folder).expanduser()
    described = folder / DESCRIPTION
    if not described.is_file():
        raise ScorerError(f"scorer error: {described}: missing (is {folder} a scorer folder, a run's output/scorer?)")
    try:
        description = json.loads(described.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as error:
        raise ScorerError(f"scorer error: {described}: unreadable ({error})") from None
    if not isinstance(description, dict) or description.get("format") != FORMAT:
        found = description.get("format") if isinstance(description, dict) else None
        raise ScorerError(f"scorer error: {described}: format {found!r}, this version of dataselect reads format {FORMAT}")
    arrays = {}
    for file_name, expected in description.get("files", {}).items():
        path = folder / file_name
        if not path.is_file():
            raise ScorerError(f"scorer error: {path}: missing")
        if path.stat().st_size != expected["bytes"]:
            raise ScorerError(f"scorer error: {path}: {path.stat().st_size} bytes where {DESCRIPTION} says {expected['bytes']} (cut short or replaced)")
        if _digest(path) != expected["blake2b"]:
            raise ScorerError(f"scorer error: {path}: its content differs from what {DESCRIPTION} recorded (changed after it was written)")
        try:
            arrays[path.stem] = load_file(str(path)) if path.suffix == ".safetensors" else np.load(path, allow_pickle=False)
        except (ValueError, SafetensorError) as error:
            raise ScorerError(f"scorer error: {path}: not a plain numeric array ({error})") from None
    return description, arrays
