"""`dataselect bench`: every stage's row with its figures, the same figures in --json, the forward's
MFU from exact FLOP counts, and the forward figure checked against a direct timing of the model."""
from __future__ import annotations

import io
import json
import shutil

import numpy as np
import pytest
from support import MINILM, TOKENIZER_FILES

from dataselect import benchmark
from dataselect.hardware import linear_parameters

STAGES = ["read + render", "tokenise", "forward", "pooling", "EL2N (LM head)", "n-gram weights", "projection", "LESS gradients", "k-means (faiss)", "top-K",
          "RDS+ pipeline"]


HIDDEN, LAYERS, INTERMEDIATE = 192, 3, 768


@pytest.fixture(scope="module")
def small_bert_dir(tmp_path_factory):
    """Random BERT big enough that a batch's forward takes tens of milliseconds: the tiny test model's
    take one or two, and on a loaded machine a preemption is then larger than the forward."""
    import torch
    from transformers import BertConfig, BertModel

    from dataselect.scoring.models import resolve_model_path

    out = tmp_path_factory.mktemp("small_bert")
    torch.manual_seed(0)
    BertModel(BertConfig(vocab_size=30522, hidden_size=HIDDEN, num_hidden_layers=LAYERS, num_attention_heads=4,
                         intermediate_size=INTERMEDIATE, max_position_embeddings=128)).save_pretrained(out)
    for name in TOKENIZER_FILES:
        shutil.copy(f"{resolve_model_path(MINILM)}/{name}", out / name)
    return out


@pytest.fixture(scope="module")
def figures(small_bert_dir, tmp_path_factory):
    path = tmp_path_factory.mktemp("bench") / "bench.json"
    # 192 tokens a batch: over 20 batches from 120 generated docs, rendered plain for this encoder (no chat tags)
    args = benchmark._parser().parse_args(["--n", "120", "--model", str(small_bert_dir), "--device", "cpu", "--batch-tokens", "192",
                                           "--json", str(path), "--quick"])
    out = io.StringIO()
    written = benchmark.run_bench(args, out)
    path.write_text(json.dumps(written, default=float))
    return json.loads(path.read_text()), out.getvalue()


def test_every_stage_has_a_row_with_throughput(figures):
    data, printed = figures
    rows = {r["stage"]: r for r in data["rows"]}
    assert list(rows) == STAGES
    for name, row in rows.items():
        assert row["docs_per_s"] > 0, name
        assert f"\n{name:<16} " in printed
    assert rows["read + render"]["docs"] == rows["forward"]["docs"] == 120
    assert rows["RDS+ pipeline"]["docs"] == 120 + 100  # pool and the generated target, embedded
    assert 0 < rows["pooling"]["pct_copy_bandwidth"] and 0 < rows["n-gram weights"]["gb_per_s"]
    assert 0 < rows["projection"]["gb_per_s"] and 0 < rows["projection"]["tflops_per_s"] and 0 < rows["LESS gradients"]["gb_per_s"]
    assert abs(sum(r["share"] for r in data["rows"][:-1]) - 1) < 1e-9
    assert data["peak_source"] == f"measured {data['dtype']} matmul (cpu)" and data["copy_bandwidth"] > 0  # the dtype auto chose here
    assert "RDS+ pipeline wall time: forward" in printed and "forward check:" in printed


def test_the_forward_mfu_counts_two_flops_per_linear_parameter_and_real_token(figures, small_bert_dir):
    from transformers import AutoModel

    data, _ = figures
    forward = next(r for r in data["rows"] if r["stage"] == "forward")
    # BERT, per layer: Q, K, V, O (H x H + H each), intermediate H x I + I, output I x H + H; no pooler, no embeddings
    h, i = HIDDEN, INTERMEDIATE
    params = LAYERS * (4 * (h * h + h) + (h * i + i) + (i * h + h))
    assert linear_parameters(AutoModel.from_pretrained(small_bert_dir)) == params
    flops = 2 * params * forward["tokens"]
    assert forward["tflops_per_s"] * 1e12 == pytest.approx(flops / forward["seconds"], rel=1e-9)
    assert forward["mfu"] == pytest.approx(flops / forward["seconds"] / data["peak_flops"], rel=1e-9)


def test_the_forward_figure_counts_the_model_call_as_a_direct_timing_does(figures, tiny_bert_dir, monkeypatch):
    """On a clock only the model call moves (a fake: no machine timing here), the engine's counted forward
    time equals the direct timing of the same batches, batch by batch; `dataselect bench` prints the
    real-clock ratio (its forward check) on every run."""
    from types import SimpleNamespace

    from dataselect import benchmark
    from dataselect.scoring import embed
    from dataselect.scoring.models import load_model
    from dataselect.scoring.tokenize import TokenizedTexts

    clock = SimpleNamespace(now=0.0)
    fake_time = SimpleNamespace(perf_counter=lambda: clock.now)
    monkeypatch.setattr(embed, "time", fake_time)
    monkeypatch.setattr(benchmark, "time", fake_time)
    embedder = embed.Embedder(load_model(str(tiny_bert_dir), "mean", 64, "float32", "cpu"))
    model = embedder.model

    def timed_model(**inputs):
        clock.now += 0.001 * inputs["input_ids"].numel()  # a forward's "time": its padded tokens
        return model(**inputs)

    embedder.model = timed_model
    real_pool = embed.pool

    def slow_pool(*args, **kwargs):  # after the forward: an engine timer that ran on through pooling would count it
        clock.now += 1.0
        return real_pool(*args, **kwargs)

    monkeypatch.setattr(embed, "pool", slow_pool)
    lengths = np.random.default_rng(0).integers(3, 60, size=50)
    tokens = TokenizedTexts(np.ones(int(lengths.sum()), np.int32), lengths.astype(np.int64))
    pair = benchmark.forward_pair(embedder, tokens, batch_tokens=200)
    assert len(pair["batch_ratios"]) >= 10 and pair["batch_ratios"] == pytest.approx([1.0] * len(pair["batch_ratios"]))
    assert pair["engine_seconds"] == pytest.approx(pair["direct_seconds"]) and pair["engine_seconds"] > 0
    assert figures[0]["forward_check"]["batches"] >= 20
