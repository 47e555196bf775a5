"""RDS+ quality and throughput on the real instruction pool with GSM8K test as the target.

    python -m bench.rds_gsm8k [--pool ...instruct_pool.jsonl.gz] [--target ...gsm8k_test.jsonl.gz]
                              [--budget 2000] [--set model.dtype=bfloat16 ...]

Runs the engine end to end (the same pipeline as `dataselect run`) and prints the share of the
selection whose `source` is "gsm8k", the wall time and the embedding throughput (docs/s, tokens/s).
The cache is disabled by default (a fresh cache folder per run) so the figures include embedding;
`--cache DIR` keeps and reuses one (e.g. bench/rds_quality.py's WORK/cache with its reduced pool as
--pool: a cache hit, so only the target is embedded and the times are not embedding figures).
"""
from __future__ import annotations

import argparse
import sys
import time
from collections import Counter
from pathlib import Path

from bench.common import SHARED_DATA, data_file, pool_sources, record, work_folder


def main() -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--pool", type=Path, default=SHARED_DATA / "instruct_pool.jsonl.gz")
    parser.add_argument("--target", type=Path, default=SHARED_DATA / "targets" / "gsm8k_test.jsonl.gz")
    parser.add_argument("--budget", type=int, default=2000)
    parser.add_argument("--out", default="runs/bench_rds_gsm8k")
    parser.add_argument("--cache", default=None, help="a cache folder to keep and reuse (default: a fresh one)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], help="extra config overrides")
    args = parser.parse_args()
    pool, target = data_file(args.pool, "--pool"), data_file(args.target, "--target")

    import dataselect

    with work_folder("dataselect-bench-cache-", keep=args.cache) as cache:  # fresh unless --cache: the figures include embedding
        overrides = [
            f"input.path={pool}", "input.prompt_field=prompt", "input.response_field=response",
            f"target.path={target}", "target.prompt_field=prompt", "target.response_field=response",
            "method.name=rds", f"method.budget={args.budget}", f"output.dir={args.out}", f"runtime.cache_dir={cache}",
            *args.overrides,
        ]
        config = dataselect.load_config(None, overrides)
        start = time.perf_counter()
        result = dataselect.run(config, quiet=False)
        wall = time.perf_counter() - start

    source_of = pool_sources(pool)
    sources = Counter(source_of[i] for i in result.ids)
    share = sources["gsm8k"] / len(result.ids)
    throughput = result.manifest["throughput"]
    print(f"\nconfig overrides: {' '.join(overrides[6:])}")
    print(f"selected {len(result.ids)}; share with source 'gsm8k': {share:.4f} ({sources['gsm8k']}/{len(result.ids)})")
    print(f"other sources in the selection: {dict(sources.most_common(6))}")
    print(f"wall time {wall:.1f}s; embedded {throughput['scored_docs']} docs at {throughput['docs_per_s']} docs/s, "
          f"{throughput['tokens_per_s']} tokens/s; padding waste {throughput['padding_waste']}")
    print(f"timings: {result.manifest['timings_s']}; cache {result.manifest['cache']}; render {result.selection.metrics['render']}, "
          f"aggregation {result.selection.metrics['aggregation']}")
    return {"share_gsm8k": round(share, 4), "wall_s": round(wall, 1), "docs_per_s": throughput["docs_per_s"], "tokens_per_s": throughput["tokens_per_s"],
            "padding_waste": throughput["padding_waste"], "scored_docs": throughput["scored_docs"], "selected": len(result.ids),
            "cache": result.manifest["cache"], "timings_s": result.manifest["timings_s"], "sources": dict(sources.most_common(6))}


if __name__ == "__main__":
    sys.exit(record("rds_gsm8k", main))
