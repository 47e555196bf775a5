"""The `tokens` featuriser's tokenising in one process: the exact memo (dataselect/scoring/token_memo.py)
against the tokenizer's own `encode_batch` (Rust) on the same texts, side by side in this process.

It checks that both give the same ids, then times each over the whole pool in batches of
CHUNK_TEXTS texts (what a featuriser worker gets), cold (a fresh memo, as a worker starts) and warm.

    python -m bench.token_memo [--pool PATH] [--limit N] [--repeats 3]
"""
from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np

from bench.common import SHARED_DATA, data_file, record

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")  # one core, like one featuriser worker
os.environ.setdefault("HF_HUB_OFFLINE", "1")

CHUNK_TEXTS = 512  # texts per tokenize call: the size of the featuriser's worker tasks when bench/RESULTS.md was measured



def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pool", default=str(SHARED_DATA / "instruct_pool.jsonl.gz"))
    parser.add_argument("--limit", type=int, default=None)
    parser.add_argument("--repeats", type=int, default=3, help="the fastest run counts")
    args = parser.parse_args()
    args.pool = str(data_file(args.pool, "--pool"))

    from dataselect.config import SourceConfig
    from dataselect.io.plan import iter_samples
    from dataselect.io.render import TextRenderer
    from dataselect.scoring.models import load_tokenizer, resolve_model_path
    from dataselect.scoring.ngram import TokenFeaturizer
    from dataselect.stats import SourceStats

    source = SourceConfig(path=args.pool, render="plain", on_error="skip", limit=args.limit)
    texts = [s.text for s in iter_samples(source, TextRenderer(source), SourceStats("bench"))]
    backend = load_tokenizer(resolve_model_path("sentence-transformers/all-MiniLM-L6-v2"))._tokenizer
    batches = [texts[i : i + CHUNK_TEXTS] for i in range(0, len(texts), CHUNK_TEXTS)]
    print(f"{len(texts):,} texts ({sum(map(len, texts)) / 1e6:.1f} M characters) from {args.pool}; {len(batches)} batches of {CHUNK_TEXTS}; 1 thread")

    exact = TokenFeaturizer(backend, memo=False)
    memo = TokenFeaturizer(backend, memo=True)
    for batch in batches:  # same ids, every batch
        (flat, lengths), (flat_exact, lengths_exact) = memo.tokenize(batch), exact.tokenize(batch)
        if not (np.array_equal(lengths, lengths_exact) and np.array_equal(flat, flat_exact)):
            print("MISMATCH: the memo's ids differ from the tokenizer's")
            return 1
    tokens = 0

    def timed(featurizer_factory) -> list[float]:
        nonlocal tokens
        runs = []
        for _ in range(args.repeats):
            featurizer = featurizer_factory()
            start = time.perf_counter()
            tokens = sum(int(featurizer.tokenize(batch)[1].sum()) for batch in batches)
            runs.append(time.perf_counter() - start)
        return runs

    results = {
        "encode_batch": timed(lambda: exact),
        "memo, cold": timed(lambda: TokenFeaturizer(backend, memo=True)),
        "memo, warm": timed(lambda: memo),
    }
    for name, runs in results.items():
        print(f"{name:13s}: {min(runs):6.2f}s  {tokens / min(runs) / 1e6:5.2f} M tokens/s  runs {[round(r, 2) for r in runs]}")
    base = min(results["encode_batch"])
    print(f"ids identical on all {len(texts):,} texts ({tokens:,} tokens); speed-up over encode_batch: "
          f"cold {base / min(results['memo, cold']):.1f}x, warm {base / min(results['memo, warm']):.1f}x")
    return 0


if __name__ == "__main__":
    sys.exit(record("token_memo", main))
