"""`dataselect bench`: every stage's row with its figures, the same figures in --json, the forward's
MFU from exact FLOP counts, and the forward figure checked against a direct timing of the model."""
from __future__ import annotations

import io
import json

import pytest

from dataselect import benchmark
from dataselect.hardware import linear_parameters

STAGES = ["read + render", "tokenise", "forward", "pooling", "EL2N (LM head)", "n-gram weights", "k-means (faiss)", "top-K", "RDS+ pipeline"]


@pytest.fixture(scope="module")
def figures(tiny_bert_dir, tmp_path_factory):
    path = tmp_path_factory.mktemp("bench") / "bench.json"
    args = benchmark._parser().parse_args(["--n", "80", "--model", str(tiny_bert_dir), "--device", "cpu", "--batch-tokens", "512",
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
    assert rows["read + render"]["docs"] == rows["forward"]["docs"] == 80
    assert rows["RDS+ pipeline"]["docs"] == 80 + 100  # pool and the generated target, embedded
    assert 0 < rows["pooling"]["pct_copy_bandwidth"] and 0 < rows["n-gram weights"]["gb_per_s"]
    assert abs(sum(r["share"] for r in data["rows"][:-1]) - 1) < 1e-9
    assert data["peak_source"] == "measured float32 matmul (cpu)" and data["copy_bandwidth"] > 0
    assert "RDS+ pipeline wall time: forward" in printed and "forward check:" in printed


def test_the_forward_mfu_counts_two_flops_per_linear_parameter_and_real_token(figures, tiny_bert_dir):
    from transformers import AutoModel

    data, _ = figures
    forward = next(r for r in data["rows"] if r["stage"] == "forward")
    # BERT: per layer Q, K, V, O (32x32 + 32 each), intermediate 32x64 + 64, output 64x32 + 32; 2 layers; no pooler
    params = 2 * (4 * (32 * 32 + 32) + (32 * 64 + 64) + (64 * 32 + 32))
    assert linear_parameters(AutoModel.from_pretrained(tiny_bert_dir)) == params
    flops = 2 * params * forward["tokens"]
    assert forward["tflops_per_s"] * 1e12 == pytest.approx(flops / forward["seconds"], rel=1e-9)
    assert forward["mfu"] == pytest.approx(flops / forward["seconds"] / data["peak_flops"], rel=1e-9)


def test_the_forward_figure_agrees_with_a_direct_timing(figures):
    """Both timings cover the same batches, interleaved one by one, so machine load hits both alike."""
    check = figures[0]["forward_check"]
    print(f"engine / direct forward time: {check['ratio']:.3f}")
    assert 0.8 <= check["ratio"] <= 1.2
