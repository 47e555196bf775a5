"""The FineWeb-Edu recipe of method `quality` on labelled real data: a head trained on pooled embeddings
from labels carried by part of the pool, scoring the rest.

Takes N samples of the instruction pool (seeded) and corrupts 5% of their responses as
bench/el2n_noise.py does (half with their words shuffled, half replaced by random pool words). A seeded
--labelled of them carry the field `corrupted` (1 = corrupted, 0 = clean); the others carry no label. The
engine runs `method.name: quality` with `rater: trained`, `features: embeddings` (all-MiniLM-L6-v2's pooled
vectors, the store RDS+ uses) and `labels: field` in this process, so the pool's scores can be read, and
the script prints the AUROC of the rater's score for flagging the corrupted samples among the unlabelled
ones (overall and per corruption), the run's held-out AUROC, and the wall time with the load average.

    python -m bench.quality_fineweb_edu [--pool ../shared/data/instruct_pool.jsonl.gz] [--n 10000] [--labelled 1000]
                                        [--text pair|response] [--set model.dtype=bfloat16 ...]

`--text pair` rates prompt and response rendered together (what a run over the pool does by default);
`--text response` rates the response alone (`input.text_field: response`), the part the corruption touches.
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
    corrupt,
    data_file,
    pool_sample,
    record,
    write_unchanged,
)


def main() -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pool", type=Path, default=SHARED_DATA / "instruct_pool.jsonl.gz")
    parser.add_argument("--n", type=int, default=10_000)
    parser.add_argument("--labelled", type=int, default=1_000)
    parser.add_argument("--fraction", type=float, default=0.05)
    parser.add_argument("--min-words", type=int, default=4)
    parser.add_argument("--seed", type=int, default=0, help="seeds the sample, the corruption and the labelled part")
    parser.add_argument("--set", action="append", default=[], help="config overrides, dotted.key=value")
    parser.add_argument("--text", choices=("pair", "response"), default="pair", help="what the rater reads: prompt + response, or the response alone")
    parser.add_argument("--cache", default=None, help="the embedding cache, kept for later runs (default: a temporary folder)")
    args = parser.parse_args()
    pool = data_file(args.pool, "--pool")

    import dataselect.pipeline
    from dataselect.config import load_config
    from dataselect.scoring.logistic import auroc

    rng = np.random.default_rng(args.seed)
    rows = pool_sample(pool, args.n, rng)  # the same draw as bench/el2n_noise.py's for the same seed
    kind = corrupt(rows, args.fraction, args.min_words, rng)  # [n] 0 clean, 1 shuffled, 2 random words
    labelled = np.zeros(len(rows), bool)
    labelled[rng.choice(len(rows), size=args.labelled, replace=False)] = True
    for row, has, k in zip(rows, labelled, kind):
        if has:
            row["corrupted"] = int(k > 0)
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(args.cache or tmp) / "labelled_pool.jsonl"  # beside a kept cache: the same file, so the store is a hit
        write_unchanged(data, "".join(json.dumps(r) + "\n" for r in rows))
        text = ["input.prompt_field=prompt", "input.response_field=response"] if args.text == "pair" else ["input.text_field=response"]
        overrides = [f"input.path={data}", *text, "method.name=quality",
                     "method.quality.rater=trained", "method.quality.features=embeddings", "method.quality.labels=field",
                     "method.quality.label_field=corrupted", "method.budget=500", f"runtime.cache_dir={args.cache or Path(tmp) / 'cache'}",
                     f"output.dir={Path(tmp) / 'out'}", "output.show_top=0", *args.set]
        config = load_config(None, overrides)
        print(f"{len(rows)} samples, {int((kind == 1).sum())} shuffled + {int((kind == 2).sum())} random-word responses; "
              f"{int(labelled.sum())} labelled ({int((kind[labelled] > 0).sum())} of them corrupted)", flush=True)
        load_before = os.getloadavg()[0]
        started = time.perf_counter()
        result = dataselect.pipeline.run(config)
        seconds = time.perf_counter() - started
        from dataselect.io.shards import ShardStore

        ids = ShardStore(Path(result.manifest["stages"]["pool"]["store"])).column("id").to_pylist()
    order = {r["id"]: i for i, r in enumerate(rows)}
    rows_of = np.array([order[i] for i in ids])  # store row -> sample
    scores = np.asarray(result.selection.pool_scores, np.float64)
    unlabelled, corrupted = ~labelled[rows_of], kind[rows_of]
    report = {
        "auroc_unlabelled": auroc(scores[unlabelled], corrupted[unlabelled] > 0),
        "auroc_unlabelled_shuffled": auroc(scores[unlabelled & (corrupted != 2)], corrupted[unlabelled & (corrupted != 2)] == 1),
        "auroc_unlabelled_random_words": auroc(scores[unlabelled & (corrupted != 1)], corrupted[unlabelled & (corrupted != 1)] == 2),
        "unlabelled": int(unlabelled.sum()),
        "rater": result.manifest["method"]["trained"],
        "seconds_total": round(seconds, 1),
        "timings_s": result.manifest["timings_s"],
        "load_average_1min_before": round(load_before, 2),
        "load_average_1min_at_end": round(os.getloadavg()[0], 2),
    }
    print(json.dumps(report, indent=2))
    return {"text": args.text} | report


if __name__ == "__main__":
    sys.exit(record("quality_fineweb_edu", main))
