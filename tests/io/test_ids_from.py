"""`input.ids_from`: a run's pool restricted to an earlier run's selection (or a file of ids) selects as a
run over a file holding only those samples would, and reuses the earlier run's cached pool store."""
from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from support import MATH, OTHER, write_jsonl

import dataselect
from dataselect.errors import ConfigError


def config(tmp_path: Path, model: Path, pool: Path, target: Path, name: str, **extra) -> dataselect.Config:
    overrides = {"input.path": str(pool), "target.path": str(target), "model.name": str(model), "method.budget": 8,
                 "output.dir": str(tmp_path / name), "runtime.cache_dir": str(tmp_path / "cache"), "runtime.progress": False,
                 "runtime.shard_size": 9, **{k.replace("__", "."): v for k, v in extra.items()}}
    return dataselect.load_config(None, overrides)


@pytest.fixture
def files(tmp_path: Path) -> tuple[Path, Path]:
    rows = [{"id": f"p{c}-{i}", "prompt": f"{t} (take {c})", "response": f"Answer {i}."} for c in range(3) for i, t in enumerate(MATH + OTHER)]
    rows += [{**rows[0], "id": "copy-of-p0-0"}, {**rows[5], "id": "copy-of-p0-5"}]  # exact duplicates, listed or not
    target = [{"id": "t0", "prompt": "Lea has 4 pears and buys 5 more. How many pears?", "response": "9"}]
    return write_jsonl(tmp_path / "pool.jsonl", rows), write_jsonl(tmp_path / "target.jsonl", target)


def test_rds_on_semdedup_survivors_embeds_nothing_again_and_equals_a_run_on_them(tmp_path: Path, tiny_bert_dir: Path, files) -> None:
    pool, target = files
    dedup = dataselect.run(config(tmp_path, tiny_bert_dir, pool, target, "dedup", method__name="semdedup", method__budget=1.0,
                                  method__cluster__num_clusters=3, method__semdedup__eps=0.05))
    survivors = set(dedup.ids)
    chained = dataselect.run(config(tmp_path, tiny_bert_dir, pool, target, "chained", input__ids_from=str(dedup.output_dir)))
    assert chained.manifest["stages"]["pool"]["docs"] == 0 and chained.manifest["stages"]["pool"]["cache"] == "hit"
    rows = [json.loads(line) for line in pool.read_text().splitlines()]
    only = write_jsonl(tmp_path / "survivors.jsonl", [row for row in rows if row["id"] in survivors])
    alone = dataselect.run(config(tmp_path, tiny_bert_dir, only, target, "alone"))
    assert chained.ids == alone.ids and list(chained.table.column("score")) == list(alone.table.column("score"))
    scores = pq.read_table(tmp_path / "chained" / "scores.parquet").to_pylist()
    assert {row["id"] for row in scores if row["excluded"] == "not_listed"} == {row["id"] for row in rows} - survivors


def test_a_file_of_ids_and_the_duplicate_rule_among_them(tmp_path: Path, tiny_bert_dir: Path, files) -> None:
    pool, target = files
    listed = ["copy-of-p0-0", "p1-3", "p2-4", "p0-7", "p1-8", "p2-9", "p0-10", "p1-11", "p2-12"]  # the copy, not its first occurrence
    ids = tmp_path / "ids.parquet"
    pq.write_table(pa.table({"id": listed}), ids)
    result = dataselect.run(config(tmp_path, tiny_bert_dir, pool, target, "listed", input__ids_from=str(ids), method__budget=1.0))
    assert sorted(result.ids) == sorted(listed)  # the listed copy stands in for the unlisted first occurrence
    jsonl = write_jsonl(tmp_path / "ids.jsonl", [{"id": i} for i in listed])
    again = dataselect.run(config(tmp_path, tiny_bert_dir, pool, target, "listed-jsonl", input__ids_from=str(jsonl), method__budget=1.0))
    assert again.ids == result.ids


def test_ids_from_errors_are_one_line(tmp_path: Path, tiny_bert_dir: Path, files) -> None:
    pool, target = files
    with pytest.raises(ConfigError, match="input.ids_from: .* does not exist"):
        dataselect.run(config(tmp_path, tiny_bert_dir, pool, target, "x", input__ids_from=str(tmp_path / "nowhere")))
    other = write_jsonl(tmp_path / "other.jsonl", [{"id": "not-in-the-pool"}])
    with pytest.raises(ConfigError, match="none of its 1 ids is a pool sample's id"):
        dataselect.run(config(tmp_path, tiny_bert_dir, pool, target, "y", input__ids_from=str(other)))
