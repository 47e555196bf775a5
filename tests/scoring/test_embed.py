"""Token-budget batching, worker tokenisation and out-of-memory handling."""
import numpy as np
import pytest
from support import MINILM

from dataselect.scoring.batching import padding_waste, token_budget_batches
from dataselect.scoring.models import load_tokenizer, resolve_model_path
from dataselect.scoring.tokenize import TokenizedTexts, TokenizerPool


def test_batches_cover_every_sample_once_within_the_budget():
    rng = np.random.default_rng(0)
    lengths = rng.integers(1, 300, size=257)
    batches = token_budget_batches(lengths, batch_tokens=1000)
    covered = np.concatenate([b.indices for b in batches])
    assert sorted(covered) == list(range(257))
    for batch in batches:
        assert batch.padded_length == lengths[batch.indices].max()
        assert batch.padded_tokens <= 1000 or len(batch.indices) == 1
    real, padded = padding_waste(lengths, batches)
    assert real == lengths.sum() and padded >= real
    assert padded / real < 1.1  # length sorting keeps padding small


def test_a_sample_longer_than_the_budget_gets_its_own_batch():
    batches = token_budget_batches(np.array([5, 50, 5]), batch_tokens=10)
    assert [list(b.indices) for b in batches] == [[1], [0, 2]]


def test_batches_are_deterministic_with_ties():
    lengths = np.array([3, 3, 3, 7, 3])
    first = [list(b.indices) for b in token_budget_batches(lengths, 9)]
    assert first == [list(b.indices) for b in token_budget_batches(lengths, 9)] == [[3], [0, 1, 2], [4]]


def test_with_a_width_step_each_batch_holds_one_width_its_rows_own():
    rng = np.random.default_rng(1)
    lengths = rng.integers(1, 300, size=257)
    batches = token_budget_batches(lengths, batch_tokens=1000, width_step=8)
    assert sorted(np.concatenate([b.indices for b in batches])) == list(range(257))
    for batch in batches:
        assert batch.padded_length % 8 == 0 and (-(-lengths[batch.indices] // 8) * 8 == batch.padded_length).all()
        assert batch.padded_tokens <= 1000 or len(batch.indices) == 1


def test_with_a_width_step_the_batch_shapes_are_bounded_whatever_the_pool():
    """A width's rows that do not fill a batch go in power-of-two row counts (13 rows: 8, 4, 1), so that
    many shards of a pool meet few distinct [rows, width] shapes (the CPU's kernel cache holds one per shape)."""
    rng = np.random.default_rng(2)
    shapes = set()
    for _ in range(40):  # 40 shards of a pool
        lengths = rng.integers(1, 256, size=300)
        batches = token_budget_batches(lengths, batch_tokens=2048, width_step=8)
        assert sorted(np.concatenate([b.indices for b in batches])) == list(range(300))
        for batch in batches:
            full = 2048 // batch.padded_length
            rows = len(batch.indices)
            assert rows == full or rows & (rows - 1) == 0, (rows, full)  # a full batch or a power of two
        by_width = {}
        for batch in batches:
            by_width.setdefault(batch.padded_length, []).append(len(batch.indices))
        for width, counts in by_width.items():  # each width's tail halves: no two batches of one tail size
            tail = [c for c in counts if c != 2048 // width]
            assert len(tail) == len(set(tail)) and tail == sorted(tail, reverse=True)
        shapes |= {(len(b.indices), b.padded_length) for b in batches}
    widths = {w for _, w in shapes}
    assert len(shapes) <= sum(1 + (2048 // w).bit_length() for w in widths)  # not one new shape per shard and width


def test_an_embedding_is_the_same_bit_for_bit_whatever_its_batch(tiny_bert_dir):
    """Rows padded to their own width: the batch size and the batch-mates change no bit of a row (CPU)."""
    from dataselect.scoring.embed import Embedder
    from dataselect.scoring.models import load_model

    embedder = Embedder(load_model(str(tiny_bert_dir), "mean", 64, "float32", "cpu"))
    rng = np.random.default_rng(2)
    rows = [rng.integers(5, 1000, size=n).tolist() for n in rng.integers(3, 60, size=40)]
    def tokenized(lists):
        return TokenizedTexts(np.concatenate([np.asarray(r, np.int32) for r in lists]), np.array([len(r) for r in lists], np.int64))

    tokens = tokenized(rows)
    alone = np.concatenate([embedder.embed_tokens(tokenized([row]), 64) for row in rows])
    for budget in (100, 700, 5000):
        assert np.array_equal(embedder.embed_tokens(tokens, budget), alone)


@pytest.mark.parametrize("workers", [0, 1])
def test_worker_tokenisation_equals_the_hf_tokenizer(workers):
    tokenizer = load_tokenizer(resolve_model_path(MINILM))
    texts = ["Hello world!", "", "a much longer sentence " * 40, "ünïcödé text"] * 150
    with TokenizerPool(tokenizer, max_length=32, num_workers=workers) as pool:
        tokens = pool.tokenize(texts)
    expected = tokenizer(texts, truncation=True, max_length=32)["input_ids"]
    assert len(tokens) == len(texts)
    for i in (0, 1, 2, 3, 599):
        assert tokens.flat[tokens.offsets[i] : tokens.offsets[i + 1]].tolist() == expected[i]
    ids, mask = tokens.padded(np.array([0, 2]), pad_id=0)
    assert ids.shape == (2, 32) and mask[0].sum() == len(expected[0]) and mask[1].sum() == 32
    untruncated = [len(x) for x in tokenizer(texts)["input_ids"]]
    assert tokens.truncated.tolist() == [n > 32 for n in untruncated] and tokens.truncated.sum() == 150


def test_the_slow_tokenizer_path_marks_truncation_too():
    from dataselect.scoring.tokenize import SlowTokenizerEncoder

    tokenizer = load_tokenizer(resolve_model_path(MINILM))
    texts = ["short", "a much longer sentence " * 10, "exactly"]
    tokens = SlowTokenizerEncoder(tokenizer, max_length=8)(texts)
    assert tokens.truncated.tolist() == [False, True, False]
    assert tokens.lengths.tolist() == [len(x) for x in tokenizer(texts, truncation=True, max_length=8)["input_ids"]]


def test_out_of_memory_shrinks_every_later_batch_and_one_sample_too_many_is_one_line(tiny_bert_dir, caplog):
    """CUDA's out-of-memory, simulated on the CPU by a model that fails above 40 padded tokens."""
    import torch

    from dataselect.errors import ConfigError
    from dataselect.scoring.embed import Embedder
    from dataselect.scoring.models import load_model

    embedder = Embedder(load_model(str(tiny_bert_dir), "mean", 64, "float32", "cpu"))
    expected_model = embedder.model
    calls: list[tuple[int, int]] = []

    class FailsAbove:
        config = expected_model.config

        def __init__(self, limit: int) -> None:
            self.limit = limit

        def __call__(self, input_ids, attention_mask):
            calls.append(tuple(input_ids.shape))
            if input_ids.numel() > self.limit:
                raise torch.cuda.OutOfMemoryError("simulated")
            return expected_model(input_ids=input_ids, attention_mask=attention_mask)

    tokenizer = embedder.loaded.tokenizer
    texts = [f"sample number {i} with a few words" for i in range(16)]
    tokens = TokenizedTexts.concat([TokenizedTexts(np.array(ids, np.int32), np.array([len(ids)])) for ids in tokenizer(texts)["input_ids"]])
    reference = embedder.embed_tokens(tokens, batch_tokens=10_000)  # no failure: one batch
    embedder.model = FailsAbove(40)
    got = embedder.embed_tokens(tokens, batch_tokens=10_000)
    np.testing.assert_allclose(got, reference, rtol=1e-5, atol=1e-6)
    assert embedder.max_batch_tokens is not None and embedder.max_batch_tokens <= 40
    assert caplog.text.count("CUDA out of memory") == 1  # said once
    calls.clear()
    embedder.embed_tokens(tokens, batch_tokens=10_000)  # a later call: no failed attempt at all
    assert calls and all(b * t <= 40 for b, t in calls)
    embedder.model = FailsAbove(5)
    with pytest.raises(ConfigError, match="model.max_length: one sample of .* tokens does not fit"):
        embedder.embed_tokens(tokens, batch_tokens=10_000)


def test_a_hub_models_declared_pooling_is_fetched_with_it(tmp_path, monkeypatch):
    import json

    import huggingface_hub

    from dataselect.scoring.models import sentence_transformers_pooling

    declared = tmp_path / "config.json"
    declared.write_text(json.dumps({"pooling_mode_cls_token": True, "pooling_mode_mean_tokens": False}))
    fetched = []
    monkeypatch.setattr(huggingface_hub, "try_to_load_from_cache", lambda repo, name: None)
    monkeypatch.setattr(huggingface_hub, "hf_hub_download", lambda repo, name: fetched.append((repo, name)) or str(declared))
    assert sentence_transformers_pooling("some-org/cls-model") == "cls"
    assert fetched == [("some-org/cls-model", "1_Pooling/config.json")]

    def offline(repo, name):
        raise OSError("offline")

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", offline)
    assert sentence_transformers_pooling("some-org/cls-model") is None  # then pooling auto falls back
    monkeypatch.setattr(huggingface_hub, "hf_hub_download", lambda repo, name: fetched.append((repo, name)) or str(declared))
    fetched.clear()
    (tmp_path / "local-model").mkdir()
    assert sentence_transformers_pooling(str(tmp_path / "local-model")) is None and fetched == []  # a folder: never the Hub


def test_embedding_scorer_renders_a_string_and_a_text_record_alike_and_rejects_non_samples(tiny_bert_dir):
    import dataselect
    from dataselect.config import SourceConfig

    text = "What is two plus two?"
    with dataselect.EmbeddingScorer(str(tiny_bert_dir), device="cpu", source=SourceConfig(render="tulu")) as tulu:
        tagged = tulu.embed([{"prompt": text}])
    with dataselect.EmbeddingScorer(str(tiny_bert_dir), device="cpu") as scorer:
        vectors = scorer.embed([text, {"text": text}, {"prompt": text}])
        assert np.allclose(vectors[0], vectors[1], atol=1e-6)  # {"text": s} is s itself, not a chat turn
        assert np.allclose(vectors[0], vectors[2], atol=1e-6)  # an encoder renders plain: a lone prompt is its text
        assert not np.allclose(tagged[0], vectors[2], atol=1e-3)  # in the Tulu form a prompt is a chat turn
        for bad, shown in [(None, "NoneType None"), (3, "int 3"), (2.5, "float 2.5")]:
            with pytest.raises(ValueError, match=rf"^cannot embed sample 1: {shown}; a sample is a string or a record"):
                scorer.embed(["fine", bad])
