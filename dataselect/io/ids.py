"""`input.ids_from`: the ids a run's pool is restricted to, from an earlier run's folder (its selection:
a dedup run's survivors, a quality run's keepers) or from a file of ids (parquet with an `id` column, or
JSON Lines with an `id` field)."""
from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from dataselect.errors import ConfigError

KEY = "input.ids_from"


def listed_ids(path: str) -> pa.Array:
    """The ids named by `path`, as strings (an earlier run's folder gives its selection.parquet's)."""
    location = Path(path).expanduser()
    file = location / "selection.parquet" if location.is_dir() else location
    if not file.is_file():
        raise ConfigError(f"config error: {KEY}: {file} does not exist (an earlier run's output folder, or a parquet or jsonl file of ids)")
    try:
        if file.suffix == ".parquet":
            return pq.read_table(file, columns=["id"]).column("id").combine_chunks().cast(pa.string())
        with open(file, encoding="utf-8") as handle:
            return pa.array([str(json.loads(line)["id"]) for line in handle if line.strip()], pa.string())
    except (pa.ArrowException, OSError, ValueError, KeyError, TypeError) as error:
        raise ConfigError(f"config error: {KEY}: cannot read ids from {file}: {str(error).splitlines()[0] if str(error) else type(error).__name__}") from None
