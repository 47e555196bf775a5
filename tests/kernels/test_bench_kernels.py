"""bench/kernels_vs_torch.py: its baselines are the references in kernels/, and every run appends JSON rows."""
from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

from dataselect.kernels import el2n, ngram, pooling, reweight

ROOT = Path(__file__).resolve().parents[2]
ROW_KEYS = {
    "kernel", "variant", "shape", "dtype", "device", "ms", "gb_per_s", "peak_mib", "command", "torch", "triton",
    "kernels_backend", "time",
}


@pytest.fixture
def bench(monkeypatch: pytest.MonkeyPatch):
    """The script as a module, measuring in this process (the CPU subprocess per variant only isolates
    peak memory; it costs a torch import each)."""
    spec = importlib.util.spec_from_file_location("bench_kernels_under_test", ROOT / "bench" / "kernels_vs_torch.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    monkeypatch.setattr(module, "measure_fresh", module.measure)
    return module


def test_reference_rows_run_the_kernels_references(bench, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    calls: dict[str, int] = {}
    for module, name in [(pooling, "pool_reference"), (el2n, "token_el2n_and_ce_reference"),
                         (ngram, "hashed_ngram_counts_reference"), (reweight, "reweight_weights_reference")]:
        real = getattr(module, name)

        def counted(*args, _real=real, _name=name, **kwargs):
            calls[_name] = calls.get(_name, 0) + 1
            return _real(*args, **kwargs)

        monkeypatch.setattr(module, name, counted)
    out = tmp_path / "rows.jsonl"
    bench.main(["--quick", "--device", "cpu", "--cpu-budget", "0", "--json", str(out)])
    # each reference variant ran its kernels/ function: a first call for the peak, then >= 2 timed calls
    assert all(calls.get(name, 0) >= 3 for name in
               ["pool_reference", "token_el2n_and_ce_reference", "hashed_ngram_counts_reference", "reweight_weights_reference"]), calls
    assert not hasattr(bench, "naive_el2n")  # no private copy of a reference left in the script


def test_runs_append_machine_readable_rows(bench, tmp_path: Path) -> None:
    out = tmp_path / "results" / "kernels.jsonl"
    argv = ["--quick", "--device", "cpu", "--cpu-budget", "0", "--kernels", "pooling,reweight", "--json", str(out)]
    bench.main(argv)
    bench.main(argv)
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(rows) == 2 * (1 + 2 * 2)  # per run: the copy row, then dispatch + reference per kernel
    for row in rows:
        assert ROW_KEYS <= row.keys(), ROW_KEYS - row.keys()
        assert row["device"].startswith("CPU") and row["ms"] > 0 and row["peak_mib"] >= 0
        assert row["command"] == "python -m bench.kernels_vs_torch " + " ".join(argv)
    pool_rows = [r for r in rows if r["kernel"] == "pooling"]
    assert {r["variant"] for r in pool_rows} == {"dispatch", "reference"}
    assert all(r["dtype"] == "bfloat16" and r["shape"] == {"B": 3, "T": 37, "H": 100} for r in pool_rows)
    assert all(r["params"] == {"mode": "weighted_mean"} for r in pool_rows)
    assert [r["baseline"] for r in pool_rows if r["variant"] == "reference"] == ["pooling.pool_reference"] * 2
