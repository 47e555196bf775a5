"""Helpers shared by the engine tests (imported as `support`; conftest.py holds the fixtures)."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa

from dataselect.io.shards import ShardStore
from dataselect.stats import SourceStats

MINILM = "sentence-transformers/all-MiniLM-L6-v2"
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "special_tokens_map.json")

MATH = [f"Sam has {a} apples and buys {b} more. How many apples does Sam have?" for a, b in [(3, 4), (7, 2), (5, 9), (12, 6), (8, 8), (21, 3)]]
OTHER = ["How do I bake bread at home?", "Write a poem about the sea.", "What is the capital of Peru?",
         "Explain how vaccines work.", "Suggest a name for a cat.", "How do I change a bike tyre?",
         "Translate 'good morning' into French.", "What causes rain?", "Recommend a science fiction novel.",
         "How can I improve my handwriting?", "Describe a sunset over the mountains.", "What is a prime number?"]


def write_jsonl(path: Path, rows: list) -> Path:
    """Rows may be dicts (written as JSON) or raw strings (written as they are, for malformed lines)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as handle:
        for row in rows:
            handle.write((row if isinstance(row, str) else json.dumps(row)) + "\n")
    return path


def base_overrides(tmp_path: Path, pool: Path, target: Path, **extra) -> dict:
    """An RDS run on small files with MiniLM, no workers or progress bars; `a__b=v` overrides `a.b`."""
    overrides = {
        "input.path": str(pool), "target.path": str(target),
        "model.name": MINILM, "method.name": "rds", "method.budget": 4,
        "output.dir": str(tmp_path / "out"), "runtime.cache_dir": str(tmp_path / "cache"),
        "runtime.num_workers": 0, "runtime.progress": False, "output.show_top": 0,
    }
    overrides.update({k.replace("__", "."): v for k, v in extra.items()})
    return overrides


# ---- vectors for the index and cluster tests ----


def unit(rng, n, d):
    """n random unit vectors. -> [n, d] float32"""
    x = rng.standard_normal((n, d)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def blobs(rng, k, per, d, spread=0.02):
    """k well-separated unit-vector blobs of `per` points each, blob after blob. -> ([k*per, d], [k*per])"""
    centres = np.eye(d, dtype=np.float32)[:k]  # orthogonal directions
    x = np.repeat(centres, per, axis=0) + spread * rng.standard_normal((k * per, d)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True), np.repeat(np.arange(k), per)


def fill_vector_store(root, vectors, shard_size):
    """A ShardStore filled by hand, as the embedding stage would leave it (float16 per shard)."""
    store = ShardStore(root)
    starts = list(range(0, len(vectors), shard_size)) or [0]
    for index, start in enumerate(starts):
        block = vectors[start : start + shard_size]
        rows = range(start, start + len(block))
        meta = pa.table({"id": [f"s{i}" for i in rows], "position": np.array(rows, np.int64), "text_hash": np.array(rows, np.int64),
                         "preview": [f"text {i}" for i in rows]})
        store.write_shard(index, meta, SourceStats("pool"), {"emb": block.astype(np.float16)})
    store.complete(len(starts), {})
    return store
