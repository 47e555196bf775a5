"""Saved scorers: a run's `scorer/` folder reloaded with `load_scorer` gives the run's own pool scores
(at other batch sizes too), thresholds that keep the run's top fraction, and a damaged folder is one
ScorerError naming the file, never unpickled."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from support import MATH, OTHER, executor_pool, write_jsonl

import dataselect
from dataselect.errors import ScorerError
from dataselect.scorer.folder import DESCRIPTION

METHODS = {
    "rds": {},
    "rds-tasks": {"target.task_field": "task"},
    "dsir-reference": {"method.name": "dsir", "method.dsir.features": "reference", "method.dsir.min_words": 3},
    "dsir-tokens": {"method.name": "dsir", "method.dsir.features": "tokens", "method.dsir.min_words": 3},
    "el2n-proxy": {"method.name": "el2n", "model.name": "sentence-transformers/all-MiniLM-L6-v2", "method.el2n.proxy.steps": 3,
                   "method.el2n.proxy.seeds": 2, "method.el2n.proxy.hidden": 16, "method.el2n.proxy.heads": 2, "method.el2n.proxy.layers": 1,
                   "method.el2n.proxy.context": 16, "method.el2n.proxy.vocab": 64, "method.el2n.proxy.batch_size": 4},
    "color": {"method.name": "color", "model.name": "sentence-transformers/all-MiniLM-L6-v2", "method.color.proxy.steps": 3,
              "method.color.proxy.hidden": 16, "method.color.proxy.heads": 2, "method.color.proxy.layers": 1, "method.color.proxy.context": 16,
              "method.color.proxy.vocab": 64, "method.color.proxy.batch_size": 4, "method.color.finetune_steps": 3},
    "color-tasks": {"method.name": "color", "target.task_field": "task", "model.name": "sentence-transformers/all-MiniLM-L6-v2",
                    "method.color.proxy.steps": 3, "method.color.proxy.hidden": 16, "method.color.proxy.heads": 2, "method.color.proxy.layers": 1,
                    "method.color.proxy.context": 16, "method.color.proxy.vocab": 64, "method.color.proxy.batch_size": 4, "method.color.finetune_steps": 3},
    "cluster": {"method.name": "cluster", "method.cluster.num_clusters": 3, "method.cluster.pick": "nearest"},
    "betr": {"method.name": "betr", "method.betr.sample": 0.6, "method.betr.positive_fraction": 0.25, "method.betr.num_buckets": 4096},
    "less": {"method.name": "less", "model.name": "sentence-transformers/all-MiniLM-L6-v2", "method.less.proxy.steps": 3,
             "method.less.proxy.sample": 1.0, "method.less.proxy.hidden": 16, "method.less.proxy.heads": 2, "method.less.proxy.layers": 1,
             "method.less.proxy.context": 16, "method.less.proxy.vocab": 64, "method.less.proxy.batch_size": 4, "method.less.dim": 128,
             "method.less.checkpoints": 2},
}


def pool_records(pool: Path) -> list[dict]:
    return [json.loads(line) for line in pool.read_text().splitlines()]


def fitted_run(tmp_path: Path, model: Path, extra: dict, name: str = "run") -> tuple[object, Path]:
    pool, _ = executor_pool(tmp_path)
    tasks = [{"id": "t0", "task": "math", "prompt": MATH[0], "response": "7"}, {"id": "t1", "task": "other", "prompt": OTHER[0], "response": "Knead."},
             {"id": "t2", "task": "math", "prompt": "Lea has 4 pears and buys 5 more. How many pears?", "response": "9"}]
    target = write_jsonl(tmp_path / "target.jsonl", tasks)
    overrides = {"input.path": str(pool), "target.path": str(target), "model.name": str(model), "method.budget": 10,
                 "output.dir": str(tmp_path / name), "runtime.cache_dir": str(tmp_path / "cache"), "runtime.shard_size": 7,
                 "runtime.progress": False, **extra}
    return dataselect.run(dataselect.load_config(None, overrides)), pool


@pytest.mark.parametrize("method", sorted(METHODS))
def test_a_saved_scorer_gives_the_runs_pool_scores(tmp_path: Path, tiny_bert_dir: Path, method: str) -> None:
    result, pool = fitted_run(tmp_path, tiny_bert_dir, METHODS[method])
    expected = np.asarray(result.scores, np.float64)  # [N] or [N, T] in pool order
    options = [{"batch_tokens": 64}, {"batch_tokens": 4096}] if method.startswith(("rds", "el2n", "color", "cluster")) else [{}]
    for option in options:
        with dataselect.load_scorer(result.output_dir / "scorer", **option) as scorer:
            got = scorer.score(pool_records(pool))
            assert got.shape == expected.shape
            np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)
            if method == "rds":  # an embedding does not depend on its batch (scoring/batching.py), nor then its cosine
                assert np.array_equal(got, expected)
            tasks = {"rds-tasks": ["math", "other"], "color-tasks": ["math", "other"], "el2n-proxy": ["el2n"], "cluster": ["cluster"]}
            assert scorer.tasks == tasks.get(method, ["target"])


def test_a_cluster_scorer_assigns_the_runs_clusters_and_semdedup_writes_none(tmp_path: Path, tiny_bert_dir: Path) -> None:
    result, pool = fitted_run(tmp_path, tiny_bert_dir, METHODS["cluster"], name="cluster")
    with dataselect.load_scorer(result.output_dir) as scorer:
        labels, sims = scorer.assign(pool_records(pool))
    by_id = dict(zip([r["id"] for r in pool_records(pool)], labels))
    assert [by_id[i] for i in result.ids] == result.table.column("cluster").to_pylist()
    np.testing.assert_allclose(sims, result.scores, rtol=1e-5, atol=1e-6)
    dedup, _ = fitted_run(tmp_path, tiny_bert_dir, {"method.name": "semdedup", "method.cluster.num_clusters": 3, "method.budget": 1.0}, name="dedup")
    assert not (dedup.output_dir / "scorer").exists()
    assert "method semdedup writes no scorer: SemDeDup is global by nature" in one_line_error(dedup.output_dir)


def test_records_arrive_in_any_batch_shape(tmp_path: Path, tiny_bert_dir: Path) -> None:
    import pyarrow as pa

    result, pool = fitted_run(tmp_path, tiny_bert_dir, METHODS["dsir-reference"])
    records = pool_records(pool)[:5]
    scorer = dataselect.load_scorer(result.output_dir)  # the run folder works as well as its scorer/
    as_list = scorer.score(records)
    columns = {key: [r[key] for r in records] for key in records[0]}  # a `datasets` batch
    np.testing.assert_array_equal(scorer.score(columns), as_list)
    np.testing.assert_array_equal(scorer.score(pa.Table.from_pylist(records)), as_list)
    bad = scorer.score([{"prompt": ""}, records[0]])  # an empty text is the run's bad input: NaN, never kept
    assert np.isnan(bad[0]) and bad[1] == as_list[0]
    assert not scorer.keep([{"prompt": ""}], threshold=-np.inf)[0]


@pytest.mark.parametrize("method", ["rds", "dsir-reference"])
def test_threshold_keeps_the_runs_top_fraction(tmp_path: Path, tiny_bert_dir: Path, method: str) -> None:
    result, pool = fitted_run(tmp_path, tiny_bert_dir, METHODS[method])
    table = pq.read_table(result.output_dir / "scores.parquet").to_pylist()
    selectable = [row for row in table if row["excluded"] is None]
    scorer = dataselect.load_scorer(result.output_dir / "scorer")
    for keep in (0.1, 0.25, 1.0):
        count = int(np.ceil(keep * len(selectable)))
        top = sorted(selectable, key=lambda row: -row["score"])[:count]
        assert scorer.threshold(keep) == top[-1]["score"]
        mask = scorer.keep(pool_records(pool), keep=keep)
        kept = {row["id"] for row, passed in zip(table, mask) if passed and row["excluded"] is None}
        assert kept >= {row["id"] for row in top}
        assert all(row["score"] == top[-1]["score"] for row in table if row["id"] in kept - {r["id"] for r in top})  # ties only


def test_scores_parquet_holds_every_pool_sample_with_its_rank_and_reason(tmp_path: Path, tiny_bert_dir: Path) -> None:
    result, pool = fitted_run(tmp_path, tiny_bert_dir, {"method.name": "dsir", "method.dsir.min_words": 12})
    table = pq.read_table(result.output_dir / "scores.parquet").to_pylist()
    assert [row["id"] for row in table] == [r["id"] for r in pool_records(pool)]
    ranked = sorted((row for row in table if row["rank"] is not None), key=lambda row: row["rank"])
    assert [row["id"] for row in ranked] == result.ids
    assert all(row["excluded"] is None for row in ranked)
    assert {row["excluded"] for row in table} >= {None, "short"}  # min_words 12 leaves the shorter prompts out


def test_a_run_into_the_same_folder_replaces_or_removes_its_scorer(tmp_path: Path, tiny_bert_dir: Path) -> None:
    result, _ = fitted_run(tmp_path, tiny_bert_dir, METHODS["rds"], name="out")
    first = (result.output_dir / "scorer" / DESCRIPTION).read_text()
    fitted_run(tmp_path, tiny_bert_dir, METHODS["dsir-reference"], name="out")
    assert json.loads((result.output_dir / "scorer" / DESCRIPTION).read_text())["method"] == "dsir" != json.loads(first)["method"]
    fitted_run(tmp_path, tiny_bert_dir, {"method.name": "random"}, name="out")  # no scorer: the earlier one must not pass for this run's
    assert not (result.output_dir / "scorer").exists()
    assert not list(result.output_dir.glob(".dataselect-staging-*"))


def test_cluster_picks_by_an_earlier_runs_scores_from_its_folder(tmp_path: Path, tiny_bert_dir: Path) -> None:
    rds, _ = fitted_run(tmp_path, tiny_bert_dir, METHODS["rds"], name="rds")
    cluster, _ = fitted_run(tmp_path, tiny_bert_dir, {"method.name": "cluster", "method.cluster.num_clusters": 2, "method.cluster.pick": "score",
                                                      "method.cluster.score_from": str(rds.output_dir)}, name="cluster")
    assert cluster.manifest["method"]["score_from"] == str(rds.output_dir)
    assert len(cluster.ids) == 10


# ---- a damaged or planted folder ----


@pytest.fixture
def scorer_folder(tmp_path: Path, tiny_bert_dir: Path) -> Path:
    result, _ = fitted_run(tmp_path, tiny_bert_dir, METHODS["dsir-reference"])
    return result.output_dir / "scorer"


def one_line_error(folder: Path) -> str:
    with pytest.raises(ScorerError) as caught:
        dataselect.load_scorer(folder)
    message = str(caught.value)
    assert "\n" not in message and message.startswith("scorer error: ")
    return message


def test_a_truncated_array_names_the_file(scorer_folder: Path) -> None:
    path = scorer_folder / "log_ratio.npy"
    path.write_bytes(path.read_bytes()[:-100])
    assert str(path) in one_line_error(scorer_folder)


def test_a_changed_array_of_the_same_size_names_the_file(scorer_folder: Path) -> None:
    path = scorer_folder / "log_ratio.npy"
    data = bytearray(path.read_bytes())
    data[-8:] = bytes(b ^ 0xFF for b in data[-8:])  # flipped bits: same size, other content
    path.write_bytes(bytes(data))
    assert str(path) in one_line_error(scorer_folder)


def test_a_missing_file_names_it(scorer_folder: Path) -> None:
    (scorer_folder / "fitted_scores.npy").unlink()
    assert str(scorer_folder / "fitted_scores.npy") in one_line_error(scorer_folder)
    shutil.rmtree(scorer_folder)
    assert DESCRIPTION in one_line_error(scorer_folder)


def test_another_format_number_is_refused(scorer_folder: Path) -> None:
    path = scorer_folder / DESCRIPTION
    path.write_text(path.read_text().replace('"format": 1', '"format": 99'))
    assert "format 99" in one_line_error(scorer_folder)


def test_a_pickled_array_is_never_loaded(scorer_folder: Path) -> None:
    """An object array (which np.load can only unpickle) planted with a matching size and digest: refused."""
    from dataselect.scorer.folder import _digest

    path = scorer_folder / "log_ratio.npy"
    with open(path, "wb") as handle:
        np.save(handle, np.array([{"planted": True}], dtype=object), allow_pickle=True)
    description = json.loads((scorer_folder / DESCRIPTION).read_text())
    description["files"]["log_ratio.npy"] = {"bytes": path.stat().st_size, "blake2b": _digest(path)}
    (scorer_folder / DESCRIPTION).write_text(json.dumps(description))
    assert "not a plain numeric array" in one_line_error(scorer_folder)


def test_a_scorer_folder_inside_a_directory_input_is_not_read_back(tmp_path: Path, tiny_bert_dir: Path) -> None:
    data = tmp_path / "data"
    pool, _ = executor_pool(data)
    overrides = {"output.dir": str(data / "out"), "input.path": str(data)}
    reads = [fitted_run(tmp_path, tiny_bert_dir, {**METHODS["dsir-reference"], **overrides})[0].manifest["counts"]["read"] for _ in range(2)]
    assert (data / "out" / "scorer" / DESCRIPTION).exists()
    assert reads[0] == reads[1] == len(pool_records(pool)) + 1  # the pool and the one-record target beside it; never the scorer's files


def test_a_saved_scorer_names_the_dtype_the_run_resolved_not_auto(tiny_bert_dir):
    from dataselect.config import ModelConfig
    from dataselect.scorer.base import portable_model
    from dataselect.scoring.models import resolve_model

    spec = resolve_model(str(tiny_bert_dir), "auto", None, "auto", "cpu")
    assert portable_model(ModelConfig(name=str(tiny_bert_dir)), spec)["dtype"] == str(spec.dtype).removeprefix("torch.") != "auto"
