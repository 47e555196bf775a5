"""Selection throughput of the whole engine (`dataselect bench throughput`), on generated data, any device.

    dataselect bench throughput [--n 4000] [--model sentence-transformers/all-MiniLM-L6-v2] [--set key=value ...]

Generates a pool of N instruction samples with dataselect.demo's templates, runs RDS+ end to end with
an empty cache (so embedding is measured), and prints the device, docs/s, tokens/s, padding waste
and per-stage timings from the run's manifest.
"""
from __future__ import annotations

import argparse
import sys

from bench.common import record, work_folder


def main() -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=4000, help="pool size")
    parser.add_argument("--model", default="sentence-transformers/all-MiniLM-L6-v2")
    parser.add_argument("--set", dest="overrides", action="append", default=[], help="extra config overrides")
    args = parser.parse_args()

    import dataselect
    from dataselect.demo import make_demo

    with work_folder("dataselect-bench-") as work:  # generated data, output and an empty cache: removed at the end
        make_demo(work, pool_size=args.n, target_size=100)
        config = dataselect.load_config(None, [
            f"input.path={work / 'pool.jsonl'}", f"target.path={work / 'target.jsonl'}", f"model.name={args.model}",
            "method.name=rds", "method.budget=0.1", f"output.dir={work / 'out'}", f"runtime.cache_dir={work / 'cache'}",
            "output.show_top=0", *args.overrides,
        ])
        result = dataselect.run(config, quiet=True)
    method, t = result.manifest["method"], result.manifest["throughput"]
    print(f"device: {method['device']}; model {args.model}; dtype {method['dtype']}")
    print(f"embedded {t['scored_docs']} docs, {t['scored_tokens']} tokens in {t['score_seconds']}s: "
          f"{t['docs_per_s']} docs/s, {t['tokens_per_s']} tokens/s, padding waste {t['padding_waste']}")
    print(f"stage timings (s): {result.manifest['timings_s']}")
    return {"docs_per_s": t["docs_per_s"], "tokens_per_s": t["tokens_per_s"], "padding_waste": t["padding_waste"], "device": method["device"],
            "dtype": method["dtype"], "model": args.model, "scored_docs": t["scored_docs"], "score_seconds": t["score_seconds"],
            "scored_tokens": t["scored_tokens"], "timings_s": result.manifest["timings_s"]}

if __name__ == "__main__":
    sys.exit(record("throughput", main))
