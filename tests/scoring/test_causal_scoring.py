"""Loss scores with a Hugging Face causal LM (a tiny random Llama with the bundled tokenizer) and the
loss stage's protocol: picklable before setup, per-sample columns, bad input with a reason."""
from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch
from support import write_jsonl

from dataselect.config import ModelConfig, SourceConfig
from dataselect.errors import ConfigError
from dataselect.io.plan import iter_samples
from dataselect.io.render import TextRenderer
from dataselect.kernels.el2n import token_el2n_and_ce_reference
from dataselect.scoring.causal import IGNORE, LossScorer, SampleEncoder, load_causal_lm
from dataselect.scoring.loss import LossStage
from dataselect.stats import SourceStats

RECORDS = [
    {"id": "a", "prompt": "What is two plus two?", "response": "Four, of course."},
    {"id": "b", "prompt": "Name a colour.", "response": "Blue is a colour, and so is a rather longer answer like green."},
    {"id": "c", "text": "A plain document where every token counts."},
    {"id": "d", "prompt": "A prompt whose response is empty", "response": " "},
]


def samples_of(tmp_path, tokenizer, records=RECORDS):
    path = write_jsonl(tmp_path / "pool.jsonl", records)
    config = SourceConfig(path=str(path))
    return config, list(iter_samples(config, TextRenderer(config, tokenizer, causal_lm=True), SourceStats("pool")))


def test_scores_equal_the_full_logits_reference(tiny_causal_dir, tmp_path):
    loaded = load_causal_lm(ModelConfig(name=str(tiny_causal_dir)), "cpu")
    source, samples = samples_of(tmp_path, loaded.tokenizer)
    prepared = SampleEncoder(loaded.tokenizer, source, loaded.max_length).encode([s.text for s in samples], [s.record for s in samples])
    el2n, loss, n_tokens = LossScorer(loaded.model, loaded.device, loaded.dtype, 0, 4096).score(prepared)
    for i, p in enumerate(prepared[:3]):
        with torch.no_grad():
            logits = loaded.model(input_ids=torch.from_numpy(p.ids)[None]).logits[0]  # [T, V]: the naive way
        token_el2n, token_ce = token_el2n_and_ce_reference(logits, torch.from_numpy(p.labels))
        valid = p.labels != IGNORE
        assert n_tokens[i] == valid.sum() > 0
        assert el2n[i] == pytest.approx(float(token_el2n.sum()) / valid.sum(), rel=1e-5)
        assert loss[i] == pytest.approx(float(token_ce.sum()) / valid.sum(), rel=1e-5)
    assert prepared[3].error.startswith("no response tokens to score") and np.isnan(el2n[3]) and n_tokens[3] == 0


def test_the_stage_scores_after_a_pickle_round_trip(tiny_causal_dir, tmp_path):
    stage = LossStage(ModelConfig(name=str(tiny_causal_dir)), SourceConfig(), device="cpu", batch_tokens=64)
    identity = stage.identity()
    assert identity["scorer"] == "model" and identity["model_type"] == "llama" and stage.kind == "loss"
    stage = pickle.loads(pickle.dumps(stage))  # what an executor does before setup
    stage.setup(None)
    from dataselect.scoring.models import load_tokenizer

    _, samples = samples_of(tmp_path, load_tokenizer(str(tiny_causal_dir)))
    out = stage.score(samples)
    assert set(out.columns) == {"el2n", "loss", "n_tokens", "truncated", "error"}
    columns = {name: values.to_pylist() if hasattr(values, "to_pylist") else list(values) for name, values in out.columns.items()}  # typed arrow
    assert columns["error"][:3] == [None, None, None] and columns["error"][3].startswith("no response tokens")
    assert all(0 < e < 1.5 for e in columns["el2n"][:3]) and np.isnan(columns["el2n"][3])
    assert out.counters["docs"] == 4 and out.counters["bad"] == 1
    assert out.counters["scored_tokens"] == sum(columns["n_tokens"]) > 0
    again = pickle.loads(pickle.dumps(stage))  # a set-up stage pickles without its weights
    assert again._scorers is None
    stage.close()


def test_a_model_that_is_not_a_causal_lm_is_one_config_error(tiny_bert_dir):
    with pytest.raises(ConfigError, match=r"model\.name: .*\(bert\) is not a causal LM"):
        load_causal_lm(ModelConfig(name=str(tiny_bert_dir)), "cpu")
    with pytest.raises(ConfigError, match="is not a causal LM"):
        LossStage(ModelConfig(name=str(tiny_bert_dir)), SourceConfig(), device="cpu").identity()


def test_a_prompt_longer_than_max_length_is_cut_from_the_left(tiny_causal_dir, tmp_path):
    loaded = load_causal_lm(ModelConfig(name=str(tiny_causal_dir), max_length=16), "cpu")
    records = [{"id": "x", "prompt": "word " * 60, "response": "the answer is here"}]
    source, samples = samples_of(tmp_path, loaded.tokenizer, records)
    [p] = SampleEncoder(loaded.tokenizer, source, 16).encode([samples[0].text], [samples[0].record])
    assert p.error is None and p.truncated and len(p.ids) == 16
    assert loaded.tokenizer.decode(p.labels[p.labels != IGNORE]) == "the answer is here"


def test_target_bytes_count_the_text_each_predicted_token_covers_with_the_space_before_it():
    from dataselect.scoring.causal import target_bytes

    text = "ab é cd"  # é is two bytes in UTF-8
    offsets = np.array([[0, 0], [0, 2], [3, 4], [5, 7], [0, 0]])  # [CLS] ab é cd [SEP]
    assert target_bytes(text, offsets, np.array([False, True, True, False, False])) == len(" é cd".encode())  # é and cd predicted
    assert target_bytes(text, offsets, np.array([True, False, False, False, False])) == 2  # ab
    assert target_bytes(text, offsets, np.array([False, False, False, True, False])) == 0  # [SEP] covers no text
