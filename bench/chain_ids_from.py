"""SemDeDup, then RDS+ on its survivors through `input.ids_from`, on real data: the chained run must embed no pool
sample again (its pool store is SemDeDup's, a cache hit) and select what RDS+ selects from a file holding only the
survivors.

    python -m bench.chain_ids_from [--pool ../shared/data/instruct_pool.jsonl.gz]
                                   [--target ../shared/data/targets/gsm8k_test.jsonl.gz] [--n 3000]
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time

import dataselect
from bench.common import SHARED_DATA, data_file, record, work_folder
from dataselect.config import SourceConfig
from dataselect.io.plan import iter_raw_records


def main() -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pool", default=SHARED_DATA / "instruct_pool.jsonl.gz")
    parser.add_argument("--target", default=SHARED_DATA / "targets" / "gsm8k_test.jsonl.gz")
    parser.add_argument("--n", type=int, default=3000)
    args = parser.parse_args()
    pool, target = data_file(args.pool, "--pool"), data_file(args.target, "--target")
    print(f"load average {os.getloadavg()[0]:.2f} at the start")
    with work_folder("bench-chain-") as work:
        common = {"target.path": str(target), "runtime.cache_dir": str(work / "cache"), "runtime.progress": False}
        start = time.perf_counter()
        dedup = dataselect.run(dataselect.load_config(None, {**common, "input.path": str(pool), "input.limit": args.n, "method.name": "semdedup",
                                                             "method.budget": 1.0, "output.dir": str(work / "dedup")}))
        dedup_s = time.perf_counter() - start
        print(f"semdedup: {len(dedup.ids):,} survivors of {args.n:,} ({dedup_s:.1f} s)")
        start = time.perf_counter()
        chained = dataselect.run(dataselect.load_config(None, {**common, "input.path": str(pool), "input.limit": args.n, "method.name": "rds",
                                                               "method.budget": 200, "input.ids_from": str(work / "dedup"),
                                                               "output.dir": str(work / "chained")}))
        stage = chained.manifest["stages"]["pool"]
        chained_s = time.perf_counter() - start
        print(f"rds on the survivors (input.ids_from): pool docs scored {stage['docs']}, cache {stage['cache']} ({chained_s:.1f} s)")
        survivors = set(dedup.ids)
        only = work / "survivors.jsonl"
        with open(only, "w", encoding="utf-8") as handle:
            for raw in iter_raw_records(SourceConfig(path=str(pool), limit=args.n)):
                if str(raw.record["id"]) in survivors:
                    handle.write(json.dumps(raw.record) + "\n")
        start = time.perf_counter()
        alone = dataselect.run(dataselect.load_config(None, {**common, "input.path": str(only), "method.name": "rds", "method.budget": 200,
                                                             "output.dir": str(work / "alone")}))
        alone_s = time.perf_counter() - start
        print(f"rds on a file of the survivors: {alone.manifest['stages']['pool']['docs']:,} pool docs scored ({alone_s:.1f} s)")
        same_ids = chained.ids == alone.ids
        difference = max(abs(a - b) for a, b in zip(chained.table.column("score").to_pylist(), alone.table.column("score").to_pylist()))
        # the file of survivors is embedded in other batches: the float16 store's last bits may move (docs/scorers.md)
        print(f"the same 200 ids in the same order: {same_ids}; largest score difference {difference:.2e}")
    print(f"load average {os.getloadavg()[0]:.2f} at the end")
    return {"same_ids": same_ids, "chained_pool_docs_scored": stage["docs"], "chained_cache": stage["cache"], "max_score_difference": float(difference),
            "survivors": len(dedup.ids), "n": args.n, "alone_pool_docs_scored": alone.manifest["stages"]["pool"]["docs"],
            "semdedup_s": round(dedup_s, 1), "chained_s": round(chained_s, 1), "alone_s": round(alone_s, 1)}


if __name__ == "__main__":
    sys.exit(record("chain_ids_from", main))
