"""The embedding stage tokenises a shard where the shard is read: in the in-process executor's reader
thread, while the previous shard is in the model (the selection is the same bytes either way: the
executor-equality tests)."""
from __future__ import annotations

import threading

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
        "runtime.num_workers": 0, "runtime.progress": False,
    })
    result = dataselect.run(config)
    assert len(threads) == 6 + 1  # 54 pool samples in shards of 10, and the target's one shard
    assert all(name.startswith("dataselect-read") for name in threads)
    counters = result.manifest["throughput"]
    assert counters["forward_seconds"] > 0 and counters["mfu"] > 0
