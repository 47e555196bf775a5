"""Embedding throughput and agreement: this engine vs sentence-transformers' `encode`, same model.

    python -m bench.embed_vs_st [--pool ../shared/data/instruct_pool.jsonl.gz] [--n 5000]

Both embed the same N real samples (prompt + "\\n\\n" + response, the `plain` rendering) with
all-MiniLM-L6-v2 under mean pooling, max length 256 (the model's sentence-transformers setting),
fp32 on this CPU. Runs alternate (engine, peer, engine, peer, ...) in one process, so machine noise
hits both; the ratio uses the median of each side. Prints docs/s for each, the throughput ratio
(engine / sentence-transformers) and the mean and minimum cosine between the two sets of embeddings.
"""
from __future__ import annotations

import argparse
import gzip
import itertools
import json
import os
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import numpy as np
import torch

from bench.common import SHARED_DATA, data_file, record

DEFAULT_POOL = SHARED_DATA / "instruct_pool.jsonl.gz"


def load_texts(path: Path, n: int) -> list[str]:
    with gzip.open(path, "rt", encoding="utf-8") as handle:
        rows = [json.loads(line) for line in itertools.islice(handle, n)]
    return [f"{r['prompt'].strip()}\n\n{r['response'].strip()}" for r in rows]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--pool", type=Path, default=DEFAULT_POOL)
    parser.add_argument("--n", type=int, default=5000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--batch-tokens", type=int, default=16384)
    parser.add_argument("--workers", type=int, default=1, help="engine tokenizer worker processes")
    parser.add_argument("--st-batch-size", type=int, default=32, help="sentence-transformers' default")
    parser.add_argument("--dtype", default="float32", help="engine weights: float32 (as the peer) or bfloat16")
    args = parser.parse_args()
    args.pool = data_file(args.pool, "--pool")

    from sentence_transformers import SentenceTransformer

    from dataselect import EmbeddingScorer
    from dataselect.scoring.models import resolve_model_path

    texts = load_texts(args.pool, args.n)
    model_path = resolve_model_path("sentence-transformers/all-MiniLM-L6-v2")
    peer = SentenceTransformer(model_path, device="cpu")
    engine = EmbeddingScorer(model_path, pooling="mean", max_length=peer.max_seq_length, device="cpu", dtype=args.dtype,
                             batch_tokens=args.batch_tokens, num_workers=args.workers, window=len(texts))
    print(f"{len(texts)} samples from {args.pool.name}; torch threads {torch.get_num_threads()}; "
          f"max length {peer.max_seq_length}; engine pooling {engine.pooling}, dtype {args.dtype} (peer float32)")

    # warm-up on a slice: worker start, allocator, first-call overheads stay out of the timings
    engine.embed(texts[:64])
    peer.encode(texts[:64], batch_size=args.st_batch_size)

    engine_times, peer_times = [], []
    for _ in range(args.repeats):
        start = time.perf_counter()
        mine = engine.embed(texts)
        engine_times.append(time.perf_counter() - start)
        start = time.perf_counter()
        theirs = peer.encode(texts, batch_size=args.st_batch_size, convert_to_numpy=True, normalize_embeddings=True)
        peer_times.append(time.perf_counter() - start)
        print(f"  engine {engine_times[-1]:.2f}s  sentence-transformers {peer_times[-1]:.2f}s")
    engine.close()

    cosine = np.sum(mine * theirs, axis=1) / (np.linalg.norm(mine, axis=1) * np.linalg.norm(theirs, axis=1))
    engine_rate = len(texts) / statistics.median(engine_times)
    peer_rate = len(texts) / statistics.median(peer_times)
    print(f"engine:                {engine_rate:8.1f} docs/s")
    print(f"sentence-transformers: {peer_rate:8.1f} docs/s")
    print(f"throughput ratio (engine / sentence-transformers): {engine_rate / peer_rate:.3f}")
    print(f"cosine between the two embeddings: mean {cosine.mean():.6f}, min {cosine.min():.6f}")


if __name__ == "__main__":
    sys.exit(record("embed_vs_st", main))
