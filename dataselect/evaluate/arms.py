"""What `dataselect eval` trains on: the runs it reads, and the arms built from them.

    selection   the run's selected samples (selection.parquet's ids), the same every seed
    random      a seeded uniform subset of the run's pool of the same size, drawn afresh per seed
    pool        the whole pool (optional), at the same steps
    rs2         the pool through RS2: a fresh random subset of the selection's size each round (optional)
    keep        the top fraction of the run's pool scores (scores.parquet), for the keep sweep

A run's target and the eval target must not share a text: `overlap` counts shared text hashes.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pyarrow.parquet as pq

from dataselect.config import Config, SourceConfig, build_config
from dataselect.errors import ConfigError, InputError
from dataselect.io.samples import text_hash
from dataselect.scoring.proxy import training_sample


@dataclass
class RunInfo:
    """A finished `dataselect run` folder: its resolved config, method and selected ids."""

    folder: Path
    config: Config
    method: str
    selected: list[str]

    def pool_scores(self) -> tuple[list[str], np.ndarray]:
        """(ids, scores [N]) of every pool sample from scores.parquet; NaN where a sample could not be selected."""
        path = self.folder / "scores.parquet"
        if not path.exists():
            raise InputError(f"input error: {self.folder}: no scores.parquet, which the keep sweep ranks the pool by")
        table = pq.read_table(path, columns=["id", "score", "excluded"])
        scores = table.column("score").to_numpy(zero_copy_only=False).astype(np.float64)  # [N]
        excluded = np.array([x is not None for x in table.column("excluded").to_pylist()], bool)  # [N]
        return table.column("id").to_pylist(), np.where(excluded, np.nan, scores)


def load_run(folder: str | Path) -> RunInfo:
    """A run folder's manifest.json and selection.parquet, or one line saying what is missing."""
    folder = Path(folder).expanduser()
    manifest_path, selection_path = folder / "manifest.json", folder / "selection.parquet"
    if not manifest_path.exists() or not selection_path.exists():
        raise InputError(f"input error: {folder}: not a finished run folder (needs manifest.json and selection.parquet)")
    manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    try:
        config = build_config(manifest["config"])
    except (KeyError, ConfigError) as error:
        raise InputError(f"input error: {folder}/manifest.json: its config cannot be read by this version ({error})") from None
    selected = [str(i) for i in pq.read_table(selection_path, columns=["id"]).column("id").to_pylist()]
    if not selected:
        raise InputError(f"input error: {folder}: the selection is empty")
    return RunInfo(folder, config, config.method.name, list(dict.fromkeys(selected)))


def eval_source(run: RunInfo, path: str) -> SourceConfig:
    """The eval target read with the fields of the run's target (its prompt/response or text fields)."""
    fields = run.config.target.model_dump(exclude={"path", "task_field", "limit"})
    return SourceConfig(**fields, path=path)


def overlap(eval_texts: Sequence[str], target_texts: Sequence[str]) -> int:
    """How many eval target samples have the text (by hash) of a sample of the run's target."""
    target = {text_hash(t) for t in target_texts}
    return sum(text_hash(t) in target for t in eval_texts)


@dataclass
class Arm:
    """One thing to train on. `ids` is fixed for selection and keep arms; random arms draw per seed; pool and
    rs2 arms train on the whole pool (rs2 rounds of `size`)."""

    name: str
    kind: str  # selection | random | pool | rs2 | keep
    size: int  # samples (a pool arm: the pool's)
    steps: int
    run: str | None = None
    ids: list[str] | None = None
    keep: float | None = None
    random: str | None = None  # the random arm it is paired with

    def samples(self, pool: Sequence[Any], seed: int) -> list[Any]:
        """The pool samples this arm trains on under `seed` (in pool order)."""
        if self.kind == "random":
            return training_sample(pool, self.size, seed)
        if self.ids is None:
            return list(pool)
        wanted = set(self.ids)
        found = [s for s in pool if s.id in wanted]
        missing = len(wanted) - len({s.id for s in found})
        if missing:
            raise InputError(f"input error: {self.run}: {missing} of the {len(wanted)} ids of arm {self.name!r} are not in the run's pool "
                             "(was the pool changed after the run?)")
        return found

    def identity(self, seed: int) -> dict[str, Any]:
        """What decides this arm's training under `seed` (part of a result's identity; a random arm's subset is the seed's)."""
        data = {"ids": ids_digest(self.ids)} if self.ids is not None else {}
        return {"kind": self.kind, "size": self.size, "steps": self.steps, "seed": seed, **data}


def ids_digest(ids: Sequence[str]) -> str:
    """A hash of an id list, in order."""
    digest = hashlib.sha256()
    for i in ids:
        digest.update(i.encode("utf-8", "surrogatepass") + b"\0")
    return digest.hexdigest()[:24]


def top_fraction(ids: Sequence[str], scores: np.ndarray, keep: float) -> list[str]:
    """The ids of the `keep` fraction of the scored samples with the highest scores (ties: the earlier row)."""
    rows = np.flatnonzero(np.isfinite(scores))  # [M]
    if not len(rows):
        raise InputError("input error: the run's scores.parquet has no selectable scored sample to keep")
    order = rows[np.lexsort((rows, -scores[rows]))]  # [M] best first
    return [ids[i] for i in order[: max(1, round(keep * len(rows)))]]
