"""Overlap check: the end-to-end docs/s of an RDS+ run against the model forward alone on the same batches.

    python -m bench.overlap [--pool ../shared/data/instruct_pool.jsonl.gz] [--target ../shared/data/targets/gsm8k_test.jsonl.gz]
                            [--n 2000] [--set model.dtype=bfloat16 ...]

The run: `dataselect.run` with method rds on the first N pool records and the whole target, a fresh
cache and output folder (a temporary folder, removed at the end), in this process (runtime.num_workers 0).
End to end: (pool + target docs) / the run's wall time, model load, reading, tokenising, pooling,
store writes, select and write included. Forward alone: the same sources read, rendered and tokenised
beforehand (untimed), cut into the run's token-budget batches shard by shard, then only the model's
forward timed (before the run and again after it, so that a change in machine load between them shows).
Ratio = end-to-end docs/s / forward-only docs/s (target >= 0.85): how much of the run hides behind the model.
Also printed: the run's own counted forward time as a share of its wall time (the same question,
answered inside one run, so the machine's load cannot differ between the two sides).
"""
from __future__ import annotations

import argparse
import shutil
import signal
import sys
import tempfile
import time
from pathlib import Path

from bench.common import record

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def forward_only(config, spec, device) -> tuple[int, float]:
    """(docs, seconds of the model's forward alone) over the run's batches of pool and target."""
    import torch

    from dataselect.io.plan import plan_shards
    from dataselect.io.readers import read_spec
    from dataselect.io.render import TextRenderer
    from dataselect.io.samples import to_sample
    from dataselect.scoring.batching import token_budget_batches
    from dataselect.scoring.models import load_weights
    from dataselect.scoring.tokenize import encoder_for
    from dataselect.stats import SourceStats

    loaded = load_weights(spec, device)
    pad = loaded.tokenizer.pad_token_id or 0
    encoder = encoder_for(spec.tokenizer, spec.max_length)
    docs, seconds = 0, 0.0
    for source in (config.input, config.target):
        renderer = TextRenderer(source, spec.tokenizer, spec.causal_lm)
        for shard in plan_shards(source, config.runtime.shard_size):
            stats = SourceStats("pool")
            texts = [s.text for r in read_spec(shard) if (s := to_sample(r, source, renderer, stats)) is not None]
            tokens = encoder(texts)
            batches = [tokens.padded(b.indices, pad, b.padded_length) for b in token_budget_batches(tokens.lengths, config.runtime.batch_tokens)]
            docs += len(texts)
            with torch.inference_mode():
                for ids, mask in batches:
                    input_ids, attention_mask = torch.from_numpy(ids).to(device), torch.from_numpy(mask).to(device)
                    if device.type == "cuda":
                        torch.cuda.synchronize(device)
                    start = time.perf_counter()
                    loaded.model(input_ids=input_ids, attention_mask=attention_mask)
                    if device.type == "cuda":
                        torch.cuda.synchronize(device)
                    seconds += time.perf_counter() - start
    return docs, seconds


def warm_up(spec) -> None:
    """One small forward before anything is timed: the process's one-off kernel set-up is then in neither side."""
    import torch

    from dataselect.scoring.models import load_weights

    loaded = load_weights(spec, spec.device)
    with torch.inference_mode():
        loaded.model(input_ids=torch.ones(8, 64, dtype=torch.long, device=spec.device), attention_mask=torch.ones(8, 64, dtype=torch.long, device=spec.device))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--pool", type=Path, default=DATA / "instruct_pool.jsonl.gz")
    parser.add_argument("--target", type=Path, default=DATA / "targets" / "gsm8k_test.jsonl.gz")
    parser.add_argument("--n", type=int, default=2000, help="pool records (the first N; the full pool takes ~30 min on a 2-core CPU)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], help="extra config overrides (key=value)")
    parser.add_argument("--keep-report", type=Path, help="copy the run's report.html here before the temporary folder goes")
    args = parser.parse_args()
    for name, path in (("--pool", args.pool), ("--target", args.target)):
        if not path.exists():
            print(f"error: {name}: {path} does not exist; pass {name} PATH (the instruction pool and GSM8K test of ../shared/data)",
                  file=sys.stderr)
            return 2

    import dataselect
    from dataselect.scoring.models import resolve_model

    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # a killed run still removes its temporary folder
    with tempfile.TemporaryDirectory(prefix="dataselect-overlap-") as work:
        config = dataselect.load_config(None, [
            f"input.path={args.pool}", f"input.limit={args.n}", "input.prompt_field=prompt", "input.response_field=response",
            f"target.path={args.target}", "target.prompt_field=prompt", "target.response_field=response",
            "method.name=rds", "method.budget=0.1", f"output.dir={work}/out", f"runtime.cache_dir={work}/cache",
            "runtime.num_workers=0", "runtime.progress=false", *args.overrides,
        ])
        m = config.model
        spec = resolve_model(m.name, m.pooling, m.max_length, m.dtype, config.runtime.device, m.trust_remote_code)
        print(f"pool {args.pool} (first {args.n:,}), target {args.target}; model {m.name} {str(spec.dtype).removeprefix('torch.')} on {spec.device}; "
              f"batch_tokens {config.runtime.batch_tokens:,}, shard_size {config.runtime.shard_size:,}", flush=True)
        warm_up(spec)
        docs, before = forward_only(config, spec, spec.device)
        print(f"forward alone (before the run): {docs:,} docs in {before:.1f}s = {docs / before:.2f} docs/s", flush=True)
        result = dataselect.run(config, quiet=True)
        manifest = result.manifest
        run_docs, wall = manifest["throughput"]["scored_docs"], manifest["timings_s"]["total"]
        counted = manifest["throughput"].get("forward_seconds") or 0.0
        print(f"RDS+ run end to end: {run_docs:,} docs in {wall:.1f}s = {run_docs / wall:.2f} docs/s "
              f"(timings {manifest['timings_s']})", flush=True)
        if args.keep_report is not None:
            shutil.copy(Path(work) / "out" / "report.html", args.keep_report)
        _, after = forward_only(config, spec, spec.device)
        print(f"forward alone (after the run): {docs:,} docs in {after:.1f}s = {docs / after:.2f} docs/s")
    if run_docs != docs:
        print(f"warning: the run embedded {run_docs:,} docs, the forward-only pass {docs:,}", file=sys.stderr)
    forward_rate = docs / ((before + after) / 2)
    print(f"\nratio end-to-end / forward-only docs/s: {run_docs / wall / forward_rate:.3f} (target >= 0.85; "
          f"against the before pass {run_docs / wall / (docs / before):.3f}, the after pass {run_docs / wall / (docs / after):.3f})")
    print(f"inside the run: counted forward {counted:.1f}s of {wall:.1f}s wall = {counted / wall:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(record("overlap", main))
