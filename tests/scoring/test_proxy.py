"""The proxy model: its seeded training sample, reduced vocabulary, packing, seeds and cache identity."""
from __future__ import annotations

import pickle
from dataclasses import dataclass

import numpy as np
import pytest
from support import MATH, MINILM, OTHER, write_jsonl

from dataselect.config import ProxyConfig, SourceConfig, build_config
from dataselect.errors import ConfigError
from dataselect.io.plan import iter_samples
from dataselect.io.render import TextRenderer
from dataselect.scoring.loss import LossStage, loss_stage_for
from dataselect.scoring.models import load_tokenizer, resolve_model_path
from dataselect.scoring.proxy import packed_rows, reduced_vocabulary, train_proxies, training_sample
from dataselect.stats import SourceStats

TINY = ProxyConfig(steps=3, seeds=1, sample=100, batch_size=4, context=16, vocab=64, layers=1, hidden=16, heads=2, lr=1e-2)


@dataclass
class Item:
    id: str


def test_the_training_sample_is_seeded_and_independent_of_read_order():
    items = [Item(f"s{i}") for i in range(500)]
    first = training_sample(items, 50, seed=1)
    assert len(first) == 50 and [x.id for x in first] == [x.id for x in items if x in first]  # stream order
    assert {x.id for x in training_sample(items[::-1], 50, seed=1)} == {x.id for x in first}
    assert {x.id for x in training_sample(items, 50, seed=2)} != {x.id for x in first}
    assert len(training_sample(items, 1000, seed=1)) == 500
    fraction = training_sample(items, 0.2, seed=1)
    assert 60 < len(fraction) < 140 and {x.id for x in training_sample(items[::-1], 0.2, seed=1)} == {x.id for x in fraction}


def test_the_reduced_vocabulary_keeps_the_most_frequent_ids_and_one_other_class():
    ids = np.array([5, 5, 5, 9, 9, 2, 7, 7, 7, 7])
    id_map = reduced_vocabulary(ids, tokenizer_vocab=12, size=3)
    assert id_map[7] == 0 and id_map[5] == 1  # by frequency
    assert id_map[9] == id_map[2] == id_map[0] == 2  # everything else: "other"
    assert reduced_vocabulary(np.array([1, 1]), 5, 10).tolist() == [1, 0, 1, 1, 1]  # fewer distinct ids than size


def test_packed_rows_lay_windows_end_to_end():
    rows = packed_rows([np.arange(5), np.arange(10, 17)], context=4)
    assert rows.tolist() == [[0, 1, 2, 3], [4, 10, 11, 12], [13, 14, 15, 16]]


@pytest.fixture
def pool(tmp_path):
    records = [{"id": f"p{i}", "prompt": t, "response": f"The answer is {i % 7}."} for i, t in enumerate(MATH + OTHER)]
    return write_jsonl(tmp_path / "pool.jsonl", records)


def proxy_stage(pool, cache, seeds, config=TINY):
    tokenizer_path = resolve_model_path(MINILM)
    tokenizer = load_tokenizer(tokenizer_path)
    source = SourceConfig(path=str(pool))
    samples = list(iter_samples(source, TextRenderer(source, tokenizer, causal_lm=True), SourceStats("pool")))
    trained = train_proxies(samples, tokenizer, tokenizer_path, source, config, seeds, cache, progress=False)
    stage = LossStage(build_config({}).model, source, "cpu", 256, proxies=trained, proxy_config=config, tokenizer_name=MINILM)
    return stage, samples


def test_averaging_identical_seeds_equals_one_seed_end_to_end(pool, tmp_path):
    one, samples = proxy_stage(pool, tmp_path / "c1", [7])
    twice, _ = proxy_stage(pool, tmp_path / "c2", [7, 7])
    for stage in (one, twice):
        stage.setup(None)
    a, b = one.score(samples), twice.score(samples)
    np.testing.assert_allclose(a.columns["el2n"], b.columns["el2n"], rtol=1e-6)
    assert b.arrays["el2n_seeds"].shape == (len(samples), 2)
    other, _ = proxy_stage(pool, tmp_path / "c3", [8])
    other.setup(None)
    assert not np.allclose(other.score(samples).columns["el2n"], a.columns["el2n"])  # another seed, another proxy


def test_the_proxy_is_cached_under_its_training_identity(pool, tmp_path):
    stage, _ = proxy_stage(pool, tmp_path, [1])
    files = list((tmp_path / "proxy").glob("*.pt"))
    assert len(files) == 1
    mtime = files[0].stat().st_mtime_ns
    again, _ = proxy_stage(pool, tmp_path, [1])
    assert again.identity() == stage.identity() and files[0].stat().st_mtime_ns == mtime  # not retrained
    longer, _ = proxy_stage(pool, tmp_path, [1], TINY.model_copy(update={"steps": 4}))
    assert longer.identity() != stage.identity() and len(list((tmp_path / "proxy").glob("*.pt"))) == 2
    assert longer.identity()["proxy"]["steps"] == 4 and longer.identity()["seeds"] == [1]
    pickle.loads(pickle.dumps(longer)).setup(None)  # the stage travels to a worker as configuration


def test_loss_stage_for_picks_the_proxy_for_the_default_model_and_rejects_an_encoder(pool, tmp_path, tiny_bert_dir, tiny_causal_dir):
    tree = {"input": {"path": str(pool)}, "method": {"name": "el2n", "el2n": {"proxy": TINY.model_dump()}},
            "runtime": {"device": "cpu", "progress": False}}
    config = build_config(tree)
    tokenizer = load_tokenizer(resolve_model_path(MINILM))
    samples = lambda: iter_samples(config.input, TextRenderer(config.input, tokenizer, causal_lm=True), SourceStats("pool"))  # noqa: E731
    stage = loss_stage_for(config, tmp_path, samples)
    assert stage.identity()["scorer"] == "proxy" and stage.identity()["sample_size"] == len(MATH + OTHER)
    with pytest.raises(ConfigError, match="is not a causal LM"):
        loss_stage_for(build_config(tree, {"model.name": str(tiny_bert_dir)}), tmp_path, samples)
    assert loss_stage_for(build_config(tree, {"model.name": str(tiny_causal_dir)}), tmp_path, samples).proxies is None


def test_training_steps_stop_after_the_epoch_cap():
    from dataselect.scoring.proxy import training_steps

    config = TINY.model_copy(update={"steps": 100, "batch_size": 8, "epochs": 2.0})
    assert training_steps(config, rows=1000) == 100  # the cap does not bind
    assert training_steps(config, rows=20) == 5  # 2 passes over 20 rows, 8 per step
    assert training_steps(config, rows=1) == 1


def test_scored_training_targets_are_the_counted_tokens_in_hf_layout():
    from dataselect.scoring.proxy import _unshifted_targets

    id_map = np.arange(20) + 100
    ids = np.array([10, 11, 12, 13])
    labels = np.array([-100, 12, 13, -100])  # next-token labels: tokens 2 and 3 count
    assert _unshifted_targets(id_map, ids, labels).tolist() == [-100, -100, 112, 113]


def test_a_proxy_trained_on_scored_tokens_only_differs_and_scores(pool, tmp_path):
    plain, samples = proxy_stage(pool, tmp_path / "a", [3])
    scored, _ = proxy_stage(pool, tmp_path / "b", [3], TINY.model_copy(update={"train_tokens": "scored"}))
    assert plain.identity() != scored.identity()
    for stage in (plain, scored):
        stage.setup(None)
    a, b = plain.score(samples).columns["el2n"], scored.score(samples).columns["el2n"]
    assert np.isfinite(np.asarray(b)).all() and not np.allclose(a, b)


def test_the_training_dtype_is_autocast_only_and_part_of_the_cache_identity(monkeypatch):
    import torch

    from dataselect.scoring import proxy

    rows = np.random.default_rng(0).integers(0, 64, (12, 16))  # [R, context]
    trained = {dtype: proxy.train_one(rows, 64, TINY.model_copy(update={"dtype": dtype}), seed=0, progress=False)
               for dtype in ("float32", "bfloat16")}
    assert trained["float32"][1] != trained["bfloat16"][1]  # the steps ran in bf16 ...
    assert all(p.dtype == torch.float32 for p in trained["bfloat16"][0].parameters())  # ... on fp32 weights
    assert proxy.train_one(rows, 64, TINY.model_copy(update={"dtype": "bfloat16"}), seed=0, progress=False)[1] == trained["bfloat16"][1]
    plan = proxy.ProxyPlan(TINY, [0], "tok", "digest", 1)
    monkeypatch.setattr("dataselect.hardware.native_bf16_flag", lambda: None)
    assert proxy.training_dtype(TINY, torch.device("cpu")) == torch.float32 and plan.identity()["train_dtype"] == "torch.float32"
    without = plan.key()
    monkeypatch.setattr("dataselect.hardware.native_bf16_flag", lambda: "avx512_bf16")
    assert proxy.training_dtype(TINY, torch.device("cpu")) == torch.bfloat16 and plan.key() != without  # a proxy trained otherwise is not reused
