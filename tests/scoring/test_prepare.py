"""The embedding stage tokenises a shard where the shard is read: in the in-process executor's reader
thread, while the previous shard is in the model (the selection is the same bytes either way: the
executor-equality tests)."""
from __future__ import annotations

import threading

import pytest
from support import executor_pool

import dataselect
from dataselect.scoring.embed import EmbedStage


def test_the_in_process_executor_tokenises_in_its_reader_thread(tmp_path, tiny_bert_dir, monkeypatch):
    threads = []
    original = EmbedStage.prepare

    def recording(self, samples):
        threads.append(threading.current_thread().name)
        return original(self, samples)

    monkeypatch.setattr(EmbedStage, "prepare", recording)
    pool, target = executor_pool(tmp_path)
    config = dataselect.load_config(None, {
        "input.path": str(pool), "target.path": str(target), "model.name": str(tiny_bert_dir), "method.budget": 5,
        "output.dir": str(tmp_path / "out"), "runtime.cache_dir": str(tmp_path / "cache"), "runtime.shard_size": 10,
        "runtime.num_workers": 0, "runtime.progress": False, "model.dtype": "float32",  # the peak below is fp32's
    })
    result = dataselect.run(config)
    assert len(threads) == 6 + 1  # 54 pool samples in shards of 10, and the target's one shard
    assert all(name.startswith("dataselect-read") for name in threads)
    throughput = result.manifest["throughput"]
    # the manifest's MFU: 2 x linear parameters x real tokens (tiny BERT: 2 layers of Q, K, V, O 32x32 + 32,
    # intermediate 32x64 + 64, output 64x32 + 32), over the counted forward seconds, against the measured peak
    assert throughput["model_flops"] == 2 * 2 * (4 * (32 * 32 + 32) + (32 * 64 + 64) + (64 * 32 + 32)) * throughput["scored_tokens"]
    achieved = throughput["model_flops"] / throughput["forward_seconds"]
    # the manifest rounds forward_seconds to ms and the peak to GFLOP/s: a few percent on a tiny model's figures
    assert throughput["mfu"] == pytest.approx(achieved / (throughput["peak_tflops_per_s"] * 1e12), rel=0.05)
    assert throughput["peak_source"] == "measured float32 matmul (cpu)"
