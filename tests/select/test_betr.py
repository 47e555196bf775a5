"""method.name: betr end to end, with the known-answer tests of METHODS.md 8.3: a full sample scored by
RDS+ itself reproduces RDS+; the classifier ranks first the one source holding the target's n-grams;
the same seed gives the same sample, classifier and selection however the run is cut."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from support import MINILM, TOPICS, run_shipped_config, topic_text, write_jsonl

import dataselect
import dataselect.pipeline
from dataselect.errors import ConfigError
from dataselect.scoring.logistic import auroc
from dataselect.select.betr import BETRMethod, top_fraction_labels

PER_SOURCE = 40


def _files(tmp_path: Path) -> tuple[Path, Path]:
    rng = np.random.default_rng(0)
    rows = [{"id": f"{topic}-{i}", "source": topic, "prompt": topic_text(rng, topic, 12), "response": topic_text(rng, topic, 8)}
            for i in range(PER_SOURCE) for topic in TOPICS]
    target = [{"id": f"t{i}", "prompt": topic_text(rng, "math", 12), "response": topic_text(rng, "math", 8)} for i in range(8)]
    return write_jsonl(tmp_path / "pool.jsonl", rows), write_jsonl(tmp_path / "target.jsonl", target)


def _run(tmp_path: Path, pool: Path, target: Path, name: str = "run", **extra):
    # positive_fraction 0.25: one source in four holds the target's n-grams, so the labels can be clean
    overrides = {"input.path": str(pool), "target.path": str(target), "model.name": MINILM, "method.name": "betr",
                 "method.budget": 20, "method.betr.sample": 0.5, "method.betr.positive_fraction": 0.25,
                 "output.dir": str(tmp_path / name / "out"), "runtime.cache_dir": str(tmp_path / "cache"), "runtime.num_workers": 0,
                 "runtime.progress": False, "output.show_top": 0, "runtime.shard_size": 32,
                 **{k.replace("__", "."): v for k, v in extra.items()}}
    return dataselect.pipeline.run(dataselect.load_config(None, overrides), quiet=True)


def _sources(result) -> list[str]:
    return [i.split("-")[0] for i in result.selection.ids]


def test_the_classifier_ranks_first_the_source_with_the_targets_ngrams(tmp_path):
    pool, target = _files(tmp_path)
    result = _run(tmp_path, pool, target)
    assert _sources(result) == ["math"] * 20
    pool_scores = result.selection.pool_scores
    ids = pq.read_table(result.manifest["stages"]["pool"]["store"] + "/meta.parquet", columns=["id"]).column("id").to_pylist()
    assert auroc(pool_scores, np.array([i.startswith("math") for i in ids])) > 0.99  # the whole pool, not only the top
    metrics = result.manifest["method"]
    sample = metrics["sample"]
    assert 0.35 * 4 * PER_SOURCE < sample["sampled"] < 0.65 * 4 * PER_SOURCE and sample["train"] + sample["heldout"] == sample["usable"]
    task = metrics["betr_tasks"]["target"]
    assert task["heldout_auroc"] > 0.9 and task["heldout_spearman"] > 0.3 and task["positives"] == int(np.ceil(0.25 * sample["usable"]))
    assert result.manifest["stages"]["sample"]["docs"] == sample["sampled"] and result.manifest["stages"]["pool"]["docs"] == 4 * PER_SOURCE
    html = (result.output_dir / "report.html").read_text()
    assert "held-out sample, task target: RDS+ score by classifier decile" in html and "heldout_auroc" in html


def test_a_full_sample_scored_by_rds_itself_reproduces_rds(tmp_path, monkeypatch):
    pool, target = _files(tmp_path)
    rds = _run(tmp_path, pool, target, name="rds", method__name="rds")
    monkeypatch.setattr(BETRMethod, "pool_scores", lambda self, store: self.fit.sample_scores)  # the classifier replaced by RDS+
    betr = _run(tmp_path, pool, target, name="betr", method__betr__sample=1.0)
    assert betr.manifest["method"]["sample"]["sampled"] == 4 * PER_SOURCE
    assert betr.selection.ids == rds.selection.ids
    assert np.array_equal(betr.selection.scores, rds.selection.scores)
    assert betr.manifest["cache"]["target"] == "hit"  # the same embedding store as RDS+'s target


def test_the_same_seed_gives_the_same_sample_classifier_and_selection_however_the_run_is_cut(tmp_path):
    pool, target = _files(tmp_path)
    first = _run(tmp_path, pool, target, name="a")
    second = _run(tmp_path, pool, target, name="b", runtime__shard_size=3, runtime__batch_tokens=512, runtime__cache_dir=str(tmp_path / "other"))
    sample_ids = [pq.read_table(r.manifest["stages"]["sample"]["store"] + "/meta.parquet", columns=["id"]).column("id").to_pylist()
                  for r in (first, second)]
    assert sample_ids[0] == sample_ids[1]
    assert first.manifest["method"]["classifier"]["digest"] == second.manifest["method"]["classifier"]["digest"]
    assert (first.output_dir / "selection.parquet").read_bytes() == (second.output_dir / "selection.parquet").read_bytes()
    other = _run(tmp_path, pool, target, name="c", method__seed=7)
    other_ids = pq.read_table(other.manifest["stages"]["sample"]["store"] + "/meta.parquet", columns=["id"]).column("id").to_pylist()
    assert other_ids != sample_ids[0]
    again = _run(tmp_path, pool, target, name="d")  # a rerun: every store is a cache hit
    assert set(again.manifest["cache"].values()) == {"hit"}


def test_a_count_sample_takes_exactly_that_many_and_too_small_a_sample_is_one_config_error(tmp_path):
    pool, target = _files(tmp_path)
    result = _run(tmp_path, pool, target, method__betr__sample=60)
    assert result.manifest["method"]["sample"]["sampled"] == 60 and "census" in result.manifest["stages"]
    with pytest.raises(ConfigError, match="method.betr.sample"):
        _run(tmp_path, pool, target, name="tiny", method__betr__sample=3)


def test_several_tasks_round_robin(tmp_path):
    pool, _ = _files(tmp_path)
    rng = np.random.default_rng(3)
    rows = [{"id": f"{t}{i}", "task": t, "prompt": topic_text(rng, t, 12), "response": topic_text(rng, t, 8)} for t in ("math", "code") for i in range(6)]
    target = write_jsonl(tmp_path / "tasks.jsonl", rows)
    result = _run(tmp_path, pool, target, target__task_field="task")
    table = pq.read_table(result.output_dir / "selection.parquet").to_pydict()
    assert table["task"][:4] == ["code", "math", "code", "math"]
    picked = [(task, i.split("-")[0]) for task, i in zip(table["task"], table["id"])]
    assert sum(src == task for task, src in picked) >= 18
    assert set(result.manifest["method"]["betr_tasks"]) == {"math", "code"}


def test_labels_are_the_top_fraction_of_the_usable_rows():
    scores = np.array([[0.9], [0.1], [0.8], [0.95], [0.2]])
    usable = np.array([True, True, True, False, True])
    assert top_fraction_labels(scores, usable, 0.5)[:, 0].tolist() == [True, False, True, False, False]


def test_a_run_that_dies_in_the_pool_stage_resumes_with_the_same_classifier_and_selection(tmp_path, monkeypatch):
    from dataselect.scoring.classify import ClassifierStage

    pool, target = _files(tmp_path)
    reference = _run(tmp_path, pool, target, name="reference", runtime__cache_dir=str(tmp_path / "reference-cache"), runtime__shard_size=16)
    original, calls = ClassifierStage.score, [0]

    def dies_on_the_fourth_shard(self, samples, prepared=None):
        calls[0] += 1
        if calls[0] == 4:
            raise KeyboardInterrupt("killed")
        return original(self, samples, prepared)

    monkeypatch.setattr(ClassifierStage, "score", dies_on_the_fourth_shard)
    with pytest.raises(KeyboardInterrupt):
        _run(tmp_path, pool, target, name="killed", runtime__shard_size=16)
    monkeypatch.setattr(ClassifierStage, "score", original)
    resumed = _run(tmp_path, pool, target, name="killed", runtime__shard_size=16)
    stage = resumed.manifest["stages"]["pool"]
    assert stage["cache"] == "partial" and stage["resumed_shards"] == 3 and stage["docs"] == 4 * PER_SOURCE - 3 * 16
    assert resumed.manifest["cache"]["sample"] == "hit"
    assert (resumed.output_dir / "selection.parquet").read_bytes() == (reference.output_dir / "selection.parquet").read_bytes()


def test_configs_betr_yaml_runs_on_the_demo_pool(tmp_path):
    result = run_shipped_config(tmp_path, "betr")
    rows = [json.loads(line) for line in (result.output_dir / "selected.jsonl").read_text().splitlines()]
    assert len(rows) == 100 and result.manifest["method"]["betr_tasks"]["target"]["heldout_auroc"] > 0.9
    assert sum(row["source"] == "math" for row in rows) >= 90  # the target is math word problems
    # the n-gram stage reads the whole pool unpadded; padding waste is the embedded sample's alone
    assert 0 <= result.manifest["throughput"]["padding_waste"] < 0.5
