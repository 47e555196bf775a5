"""The rater stage (scoring/rater.py): a sequence-classification model's logits equal transformers' own forward of
each text alone (fp32, 1e-4) for any token budget and mixed lengths, encoder and decoder; a decoder is
padding-invariant left or right (METHODS.md 9.4.3); permuting the labels permutes only the output columns
(9.4.5); the read-outs and FineWeb-Edu's int_score (9.4.2)."""
from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from support import COMMON, MATH, MINILM, OTHER, TOKENIZER_FILES

from dataselect.config import ModelConfig
from dataselect.errors import ConfigError
from dataselect.scoring.rater import RaterStage, combine, rater_scores, readout_columns
from dataselect.scoring.tokenize import TokenizedTexts
from dataselect.select.quality import int_score

TEXTS = [MATH[0], "Hi.", OTHER[3] + " " + OTHER[4] + " " + MATH[2], OTHER[0], "Short one.", " ".join(MATH) + " " + " ".join(OTHER)]


def save_classifier(out: Path, kind: str = "bert", num_labels: int = 1, labels: list[str] | None = None, seed: int = 0,
                    positions: int = 512) -> Path:
    """A tiny randomly initialised sequence-classification model (seeded) with the bundled MiniLM tokenizer."""
    from transformers import AutoModelForSequenceClassification, BertConfig, LlamaConfig

    from dataselect.scoring.models import resolve_model_path

    names = {"id2label": dict(enumerate(labels)), "label2id": {n: i for i, n in enumerate(labels)}} if labels else {}
    if kind == "bert":
        config = BertConfig(vocab_size=30522, hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
                            max_position_embeddings=positions, num_labels=num_labels, **names)
    else:  # pad id 0 ([PAD] in the MiniLM vocabulary), as QuRater's Llama pads with id 0
        config = LlamaConfig(vocab_size=30522, hidden_size=32, num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=2,
                             intermediate_size=64, max_position_embeddings=positions, num_labels=num_labels, pad_token_id=0,
                             architectures=["LlamaForSequenceClassification"], **names)
    torch.manual_seed(seed)
    AutoModelForSequenceClassification.from_config(config).save_pretrained(out)
    for name in TOKENIZER_FILES:
        shutil.copy(Path(resolve_model_path(MINILM)) / name, out / name)
    return out


def reference_logits(folder: Path, texts: list[str]) -> np.ndarray:
    """transformers' own forward, one text at a time (no padding). -> [n, L]"""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForSequenceClassification.from_pretrained(folder).eval()
    with torch.no_grad():
        return np.concatenate([model(**tokenizer(t, return_tensors="pt", truncation=True, max_length=512)).logits.numpy() for t in texts])


def stage_logits(folder: Path, texts: list[str], batch_tokens: int) -> np.ndarray:
    stage = RaterStage(ModelConfig(name=str(folder), dtype="float32"), "cpu", batch_tokens)  # the fp32 reference's dtype
    stage.setup("cpu")
    tokens = stage.encoder(texts)
    assert len(set(tokens.lengths.tolist())) > 3  # mixed lengths: padding inside every batch of several rows
    return stage.embedder.embed_tokens(tokens, batch_tokens)


@pytest.mark.parametrize("kind,num_labels", [("bert", 1), ("bert", 6), ("llama", 4)])
def test_the_stage_equals_transformers_own_forward_for_any_token_budget(tmp_path, kind, num_labels):
    folder = save_classifier(tmp_path / kind, kind, num_labels)
    expected = reference_logits(folder, TEXTS)  # [n, L]
    for batch_tokens in (16, 200, 100_000):  # one row per batch, a few, all in one
        got = stage_logits(folder, TEXTS, batch_tokens)
        assert got.shape == (len(TEXTS), num_labels)
        np.testing.assert_allclose(got, expected, atol=1e-4, rtol=0)


def test_a_decoder_rater_is_padding_invariant_left_or_right(tmp_path):
    folder = save_classifier(tmp_path / "llama", "llama", 2)
    stage = RaterStage(ModelConfig(name=str(folder), dtype="float32"), "cpu", 10_000)  # 1e-5 is an fp32 budget
    stage.setup("cpu")
    rater = stage.embedder
    tokens = stage.encoder(TEXTS)
    alone = np.concatenate([rater.embed_tokens(TokenizedTexts(tokens.flat[tokens.offsets[i]:tokens.offsets[i + 1]], tokens.lengths[i:i + 1]), 10_000)
                            for i in range(len(TEXTS))])
    ids, mask = tokens.padded(np.arange(len(TEXTS)), 0)  # [n, T] right padded
    left_ids, left_mask = np.zeros_like(ids), np.zeros_like(mask)
    for row, n in enumerate(tokens.lengths):  # the same rows, left padded
        left_ids[row, ids.shape[1] - n:], left_mask[row, ids.shape[1] - n:] = ids[row, :n], 1
    with torch.no_grad():
        for i, m in ((ids, mask), (left_ids, left_mask)):
            batch = rater.read_out(rater.model_outputs(torch.from_numpy(i), torch.from_numpy(m)), torch.from_numpy(m)).numpy()
            np.testing.assert_allclose(batch, alone, atol=1e-5, rtol=0)


def test_permuting_the_labels_permutes_only_the_columns_and_weights_by_name_give_the_same_score(tmp_path):
    names = ["writing_style", "required_expertise", "facts_and_trivia", "educational_value"]
    folder = save_classifier(tmp_path / "a", "bert", 4, names)
    logits = stage_logits(folder, TEXTS, 300)
    from transformers import AutoModelForSequenceClassification

    model = AutoModelForSequenceClassification.from_pretrained(folder)
    permutation = [2, 0, 3, 1]
    with torch.no_grad():
        model.classifier.weight.copy_(model.classifier.weight[permutation])
        model.classifier.bias.copy_(model.classifier.bias[permutation])
    model.config.id2label = {i: names[p] for i, p in enumerate(permutation)}
    model.config.label2id = {names[p]: i for i, p in enumerate(permutation)}
    model.save_pretrained(tmp_path / "b")
    for name in TOKENIZER_FILES:
        shutil.copy(folder / name, tmp_path / "b" / name)
    permuted = stage_logits(tmp_path / "b", TEXTS, 300)
    np.testing.assert_allclose(permuted, logits[:, permutation], atol=1e-5, rtol=0)
    weights = {"educational_value": 1.0, "facts_and_trivia": 0.5}
    score_a = combine(*readout_columns(logits, "value", names), weights)
    score_b = combine(*readout_columns(permuted, "value", [names[p] for p in permutation]), weights)
    np.testing.assert_allclose(score_a, score_b, atol=1e-5)
    np.testing.assert_allclose(score_a, logits[:, 3] + 0.5 * logits[:, 2], atol=1e-9)


def test_the_read_outs_expected_value_and_one_labels_probability():
    logits = np.array([[0.0, 0.0, np.log(2.0)], [0.0, -np.inf, -np.inf]])  # probabilities (1/4, 1/4, 1/2) and (1, 0, 0)
    names = ["low", "mid", "high"]
    expected, _ = readout_columns(logits, "expected", names)
    assert expected[:, 0] == pytest.approx([0 * 0.25 + 1 * 0.25 + 2 * 0.5, 0.0])
    scaled, _ = readout_columns(logits, "expected", names, label_values=[0.0, 2.5, 5.0])
    assert scaled[:, 0] == pytest.approx([2.5 * 0.25 + 5 * 0.5, 0.0])
    assert readout_columns(logits, "probability", names)[0][:, 0] == pytest.approx([0.5, 0.0])  # the last label by default
    assert readout_columns(logits, "probability", names, label="mid")[0][:, 0] == pytest.approx([0.25, 0.0])
    assert readout_columns(logits, "probability", names, label="0")[0][:, 0] == pytest.approx([0.25, 1.0])
    with pytest.raises(ConfigError, match="method.quality.label"):
        readout_columns(logits, "probability", names, label="best")
    with pytest.raises(ConfigError, match="method.quality.weights"):
        combine(logits, names, None)  # three heads and no weights
    with pytest.raises(ConfigError, match=r"\['style'\]"):
        combine(logits, names, {"style": 1.0})


def test_fineweb_edu_int_score_rounds_half_to_even_so_keeping_three_means_above_two_and_a_half():
    scores = [2.5, 2.5000001, 3.5, -0.3, 5.7]
    assert int_score(np.array(scores)).tolist() == [2, 3, 4, 0, 5]
    assert int_score(np.array(scores, np.float32)).tolist() == [round(max(0.0, min(float(np.float32(s)), 5.0))) for s in scores]
    grid = np.linspace(-1, 6, 7001)
    assert np.array_equal(int_score(grid) >= 3, grid > 2.5)


@pytest.mark.parametrize("kind", ["bert", "llama"])
def test_a_long_document_is_rated_in_chunks_averaged_by_their_token_counts(tmp_path, kind):
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    folder = save_classifier(tmp_path / kind, kind, 3, positions=1024)
    long = " ".join(np.random.default_rng(0).choice(COMMON, 1100))  # one token per word
    texts = [long, MATH[0]]
    tokenizer = AutoTokenizer.from_pretrained(folder)
    content = tokenizer(long, add_special_tokens=False)["input_ids"]
    assert len(content) == 1100
    model = AutoModelForSequenceClassification.from_pretrained(folder).eval()
    chunks = [content[:512], content[512:1024], content[1024:]]  # 9.4.4: 512, 512 and 76 tokens
    framed = [tokenizer(tokenizer.decode(c))["input_ids"] for c in chunks]  # each chunk as a lone text: the tokenizer's special tokens around it
    assert [f[1:-1] for f in framed] == chunks  # ([CLS] ... [SEP]; the words round-trip)
    with torch.no_grad():  # transformers' own forward of each chunk
        logits = np.concatenate([model(input_ids=torch.tensor([f])).logits.numpy() for f in framed])
    sizes = np.array([len(c) for c in chunks], np.float64)[:, None]
    assert sizes[:, 0].tolist() == [512, 512, 76]
    probs = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    expected = np.concatenate([(sizes * logits).sum(0) / 1100, (sizes * probs).sum(0) / 1100])  # sum len_i s_i / 1100
    short = reference_logits(folder, [MATH[0]])[0]  # one chunk: the plain forward
    stage = RaterStage(ModelConfig(name=str(folder), dtype="float32", max_length=600), "cpu", 100_000, chunk_tokens=512)
    stage.setup("cpu")
    tokens = stage.encoder(texts)
    assert tokens.chunks.lengths.tolist() == [514, 514, 78, len(tokenizer(MATH[0])["input_ids"])] and tokens.lengths[0] == 1100
    for batch_tokens in (16, 600, 100_000):
        rows = stage.embedder.embed_tokens(tokens, batch_tokens)  # [2, 6]
        np.testing.assert_allclose(rows[0], expected, atol=1e-4, rtol=0)
        np.testing.assert_allclose(rows[1, :3], short, atol=1e-4, rtol=0)
    names = ["a", "b", "c"]
    value = rater_scores(rows, "value", names, None, None, {"b": 1.0})
    assert value[0] == pytest.approx(float((sizes[:, 0] * logits[:, 1]).sum() / 1100), abs=1e-4)
    chunk_expected = probs @ np.arange(3.0)  # each chunk's expected label value, then their token-weighted mean
    assert rater_scores(rows, "expected", names, None, None, None)[0] == pytest.approx(float((sizes[:, 0] * chunk_expected).sum() / 1100), abs=1e-5)
    with pytest.raises(ConfigError, match="chunk_tokens: 599 tokens .* use at most 598"):
        RaterStage(ModelConfig(name=str(folder), max_length=600), "cpu", 1000, chunk_tokens=599)
