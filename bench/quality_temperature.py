"""What temperature sampling buys (method `quality`, QuRating's selection) on a sample of the real pool.

Takes N samples of the instruction pool (seeded), rates them with a trained rater (GSM8K test as the
reference set against a seeded pool sample, a logistic head on all-MiniLM-L6-v2's pooled embeddings: one
`dataselect` run in this process, whose embedding store also gives the coverage below), then selects the
same budget by top-K, by sampling with P proportional to exp(score / T) for T = 0.5, 1 and 2 (scores
z-scored over the selectable pool, `normalize: true`), and at random (the `random` method's rule), with
the engine's own selection functions and --seeds seeds each. Prints per selection the mean rater score,
the coverage measure of bench/cluster_quality.py (mean over the pool of 1 - cosine to the nearest selected
sample: lower covers the pool better) and the share from source "gsm8k", each the mean over the seeds
with its range.

    python -m bench.quality_temperature [--pool ...instruct_pool.jsonl.gz] [--target ...gsm8k_test.jsonl.gz]
                                        [--n 10000] [--budget 1000] [--seeds 3] [--set model.dtype=bfloat16 ...]
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from bench.common import (
    SHARED_DATA,
    coverage,
    data_file,
    pool_sample,
    record,
    write_unchanged,
)

TEMPERATURES = (0.5, 1.0, 2.0)


def main() -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pool", type=Path, default=SHARED_DATA / "instruct_pool.jsonl.gz")
    parser.add_argument("--target", type=Path, default=SHARED_DATA / "targets" / "gsm8k_test.jsonl.gz")
    parser.add_argument("--n", type=int, default=10_000)
    parser.add_argument("--budget", type=int, default=1_000)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0, help="seeds the pool sample")
    parser.add_argument("--set", action="append", default=[], help="config overrides, dotted.key=value")
    parser.add_argument("--cache", default=None, help="the embedding cache, kept for later runs (default: a temporary folder)")
    args = parser.parse_args()
    pool, target = data_file(args.pool, "--pool"), data_file(args.target, "--target")

    import pyarrow.parquet as pq

    import dataselect.pipeline
    from dataselect.config import load_config
    from dataselect.index import StoreVectors
    from dataselect.io.shards import ShardStore
    from dataselect.select.base import top_k
    from dataselect.select.quality import selection_keys
    from dataselect.select.semdedup import unit_rows

    rng = np.random.default_rng(args.seed)
    rows = pool_sample(pool, args.n, rng)  # the same draw as bench/el2n_noise.py's for the same seed
    source_of = {r["id"]: r.get("source") for r in rows}
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(args.cache or tmp) / "pool.jsonl"  # beside a kept cache: the same file, so the store is a hit
        write_unchanged(data, "".join(json.dumps(r) + "\n" for r in rows))
        overrides = [f"input.path={data}", "input.prompt_field=prompt", "input.response_field=response", f"target.path={target}",
                     "target.prompt_field=prompt", "target.response_field=response", "method.name=quality", f"method.budget={args.budget}",
                     "method.quality.rater=trained", "method.quality.features=embeddings", "method.quality.labels=reference",
                     f"runtime.cache_dir={args.cache or Path(tmp) / 'cache'}", f"output.dir={Path(tmp) / 'out'}", "output.show_top=0", *args.set]
        load_before, started = os.getloadavg()[0], time.perf_counter()
        result = dataselect.pipeline.run(load_config(None, overrides))
        seconds = time.perf_counter() - started
        store = ShardStore(Path(result.manifest["stages"]["pool"]["store"]))
        ids = store.column("id").to_pylist()
        table = pq.read_table(Path(tmp) / "out" / "scores.parquet", columns=["id", "excluded"]).to_pydict()
        excluded = dict(zip(table["id"], table["excluded"]))
        eligible = np.array([excluded[i] is None for i in ids])  # [N] store order
        scores = np.asarray(result.selection.pool_scores, np.float64)  # [N] store order
        gsm8k = np.array([source_of[i] == "gsm8k" for i in ids])
        vectors = StoreVectors(store)

        def figures(chosen: np.ndarray) -> tuple[float, float, float]:
            return float(scores[chosen].mean()), coverage(vectors, unit_rows(vectors.rows(np.sort(chosen)))), float(gsm8k[chosen].mean())

        runs: dict[str, list[tuple[float, float, float]]] = {"top-K (T = 0)": [figures(top_k(scores, args.budget, eligible))]}
        for t in TEMPERATURES:
            runs[f"T = {t}"] = [figures(top_k(selection_keys(scores, eligible, t, True, seed), args.budget, eligible)) for seed in range(args.seeds)]
        runs["random"] = [figures(top_k(np.random.default_rng(seed).random(len(scores)), args.budget, eligible)) for seed in range(args.seeds)]
    print(f"{len(rows)} pool samples ({int(gsm8k.sum())} gsm8k), {int(eligible.sum())} selectable, budget {args.budget}; rater "
          f"{json.dumps(result.manifest['method']['trained'])}; rating run {seconds:.1f}s, 1-min load average before {load_before:.2f}, "
          f"after {os.getloadavg()[0]:.2f}")
    print(f"pool: mean score {scores[eligible].mean():.3f}")
    print("| selection | mean rater score | coverage (lower: better) | share gsm8k |")
    print("|---|---|---|---|")
    for name, values in runs.items():
        cells = []
        for column in range(3):
            series = [v[column] for v in values]
            cells.append(f"{np.mean(series):.3f}" + (f" ({min(series):.3f}-{max(series):.3f})" if len(series) > 1 else ""))
        print(f"| {name} | " + " | ".join(cells) + " |")
    key = {name: name.split(" (")[0].replace(" = ", "").replace("-", "_").lower() for name in runs}  # top_k, t0.5, t1.0, t2.0, random
    row: dict = {}  # each figure's mean over the seeds, coverage (what sampling buys) first
    for column, figure in ((1, "coverage"), (2, "share_gsm8k"), (0, "mean_score")):
        row |= {f"{figure}.{key[name]}": round(float(np.mean([v[column] for v in values])), 4) for name, values in runs.items()}
    return row | {"rating_s": round(seconds, 1), "pool_samples": len(rows), "pool_gsm8k": int(gsm8k.sum()), "selectable": int(eligible.sum()),
                  "budget": args.budget, "seeds": args.seeds, "pool_mean_score": round(float(scores[eligible].mean()), 4),
                  "rater": result.manifest["method"]["trained"],
                  "per_seed": {key[name]: [[round(x, 4) for x in v] for v in values] for name, values in runs.items()}}


if __name__ == "__main__":
    sys.exit(record("quality_temperature", main))
