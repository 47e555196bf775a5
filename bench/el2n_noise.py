"""Noisy-sample detection with EL2N on real instruction data, with the default proxy model.

Takes N samples of the instruction pool (seeded), corrupts 5% of their responses (half with their
words shuffled, half replaced by as many words drawn at random from the sample's responses), scores
every sample by running the engine as `dataselect run --config configs/el2n.yaml` does (in this
process, so that the pool's scores can be read from the score store; the proxy is trained on the
corrupted pool itself and averaged over its seeds), and prints the AUROC of the EL2N score for flagging the corrupted samples,
overall, per corruption and per seed, with the run's wall time (proxy training included).

Only responses of at least --min-words words (after the T0 "<|endoftext|>" marker is set aside, and
put back after the corruption) are corrupted: shuffling a one-word response changes nothing, and 39%
of this pool's responses are a single word.

    python -m bench.el2n_noise [--pool ../shared/data/instruct_pool.jsonl.gz] [--n 10000]
"""
from __future__ import annotations

import argparse
import gzip
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from bench.common import ROOT, SHARED_DATA, config_with_default_proxy, corrupt, record

DEFAULT_POOL = SHARED_DATA / "instruct_pool.jsonl.gz"


def auroc(scores: np.ndarray, positive: np.ndarray) -> float:
    """Mann-Whitney AUROC with average ranks for ties: P(score of a positive > score of a negative)."""
    from scipy.stats import rankdata

    ranks = rankdata(scores)
    n_pos, n_neg = int(positive.sum()), int((~positive).sum())
    return float((ranks[positive].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))





def main() -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pool", default=str(DEFAULT_POOL))
    parser.add_argument("--n", type=int, default=10_000)
    parser.add_argument("--fraction", type=float, default=0.05)
    parser.add_argument("--min-words", type=int, default=4)
    parser.add_argument("--seed", type=int, default=0, help="seeds the sample and the corruption")
    parser.add_argument("--config", default=str(ROOT / "configs" / "el2n.yaml"))
    parser.add_argument("--set", action="append", default=[], help="config overrides, dotted.key=value")
    parser.add_argument("--cache-dir", default=None, help="default: a fresh temporary folder (no cached proxy)")
    parser.add_argument("--save", default=None, help="write per-sample scores, corruption kinds and sources to this .npz")
    args = parser.parse_args()
    pool = Path(args.pool)
    if not pool.exists():
        sys.exit(f"pool not found: {pool} (the instruction pool lives in ../shared/data beside the repository; pass --pool)")

    import dataselect.pipeline
    from dataselect.io.shards import ShardStore

    with gzip.open(pool, "rt", encoding="utf-8") as handle:
        records = [json.loads(line) for line in handle]
    rng = np.random.default_rng(args.seed)
    rows = [records[i] for i in np.sort(rng.choice(len(records), size=min(args.n, len(records)), replace=False))]
    kind = corrupt(rows, args.fraction, args.min_words, rng)
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "noisy_pool.jsonl"
        data.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
        cache = args.cache_dir or str(Path(tmp) / "cache")
        overrides = [f"input.path={data}", f"runtime.cache_dir={cache}", f"output.dir={Path(tmp) / 'out'}", "output.show_top=0", *args.set]
        config = config_with_default_proxy(args.config, overrides)
        print(f"{len(rows)} samples, {int((kind == 1).sum())} shuffled + {int((kind == 2).sum())} random-word responses; "
              f"proxy {config.method.el2n.proxy.model_dump()}", flush=True)
        # `dataselect run --config configs/el2n.yaml --set ...`, in this process so that the pool's scores can be read
        started, cpu_started = time.perf_counter(), time.process_time()
        result = dataselect.pipeline.run(config)
        finished, cpu_finished = time.perf_counter(), time.process_time()
        store = ShardStore(Path(result.manifest["stages"]["pool"]["store"]))
        ids = store.column("id").to_pylist()
        el2n = store.column("el2n").to_numpy(zero_copy_only=False).astype(np.float64)
        loss = store.column("loss").to_numpy(zero_copy_only=False).astype(np.float64)
        seeds = np.concatenate([store.read_array(i, "el2n_seeds") for i in range(store.num_shards)])  # [N, S]
    order = {r["id"]: i for i, r in enumerate(rows)}
    kind = kind[[order[i] for i in ids]]  # store row order
    sources = np.array([rows[order[i]].get("source", "") for i in ids])
    words = np.array([len(rows[order[i]]["response"].split()) for i in ids])
    scored = np.isfinite(el2n)
    print(f"scored {int(scored.sum())} of {len(el2n)} (bad: {int((~scored).sum())})")
    positive = kind[scored] > 0
    report = {
        "auroc_el2n": auroc(el2n[scored], positive),
        "auroc_el2n_shuffled": auroc(el2n[scored][kind[scored] != 2], kind[scored][kind[scored] != 2] == 1),
        "auroc_el2n_random_words": auroc(el2n[scored][kind[scored] != 1], kind[scored][kind[scored] != 1] == 2),
        "auroc_loss": auroc(loss[scored], positive),
        "auroc_el2n_per_seed": [auroc(seeds[scored, s], positive) for s in range(seeds.shape[1])],
        "seconds_total": round(finished - started, 1),
        "timings_s": result.manifest["timings_s"],
        "cpu_seconds_total": round(cpu_finished - cpu_started, 1),  # this process's CPU time, all threads
        "load_average_1min_at_end": round(os.getloadavg()[0], 2),  # other work on the machine stretches wall time
    }
    print(json.dumps(report, indent=2))
    if args.save:
        np.savez(args.save, el2n=el2n, loss=loss, el2n_seeds=seeds, kind=kind, source=sources, words=words)
    aurocs = {key: round(report[key], 4) for key in ("auroc_el2n", "auroc_el2n_shuffled", "auroc_el2n_random_words", "auroc_loss")}
    aurocs["auroc_el2n_per_seed"] = [round(a, 4) for a in report["auroc_el2n_per_seed"]]
    return aurocs | {key: value for key, value in report.items() if key not in aurocs}


if __name__ == "__main__":
    sys.exit(record("el2n_noise", main))
