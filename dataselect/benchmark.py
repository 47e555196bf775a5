"""`dataselect bench`: every stage of the engine on one pool, with roofline context.

    dataselect bench [--n N] [--pool PATH] [--model NAME] [--device auto|cpu|cuda] [--json FILE]

Stages: read + render, tokenise, the model forward, pooling, EL2N (the LM-head kernel on random hidden
states), DSIR's n-gram weights (the kernel on the pool's token ids), LESS's random projection (random
gradients) and gradient features (the default warm-up proxy on the pool's samples), k-means (faiss, on random unit
vectors), top-K, and the whole RDS+ pipeline (a fresh cache, so it embeds). Per stage: docs/s and
tokens/s; for the forward its model FLOP utilisation (dataselect.hardware: 2 x linear parameters x real
tokens against the GPU's dense bf16 peak, or a measured matmul rate on the CPU); for the memory-bound
kernels (pooling, n-gram weights) GB/s against a measured copy bandwidth; and each stage's share of a
document's time were it put through every stage once. The forward is timed twice over the same
batches, interleaved batch by batch: as the engine counts it (the figure a run's manifest reports) and
directly around the bare model call; their ratio is printed as a check of that figure.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import statistics
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

CPU_DEFAULT_N, CUDA_DEFAULT_N = 400, 20_000  # docs: about 2 minutes on a loaded 2-core CPU; a GPU needs more to be busy


@dataclass
class Row:
    stage: str
    docs: int
    tokens: int
    seconds: float
    workload: str
    tflops_per_s: float | None = None
    mfu: float | None = None  # of the device's peak (matmul-bound stages)
    gb_per_s: float | None = None
    pct_copy_bandwidth: float | None = None  # memory-bound stages
    share: float | None = None  # of a document's time through every stage row

    @property
    def docs_per_s(self) -> float:
        return self.docs / self.seconds if self.seconds > 0 else float("nan")

    @property
    def tokens_per_s(self) -> float | None:
        return self.tokens / self.seconds if self.tokens and self.seconds > 0 else None

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "docs_per_s": self.docs_per_s, "tokens_per_s": self.tokens_per_s}


def _sync(device: Any) -> None:
    import torch

    if torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)


TIMING_BUDGET_S = [1.0]  # seconds of repeated calls per kernel row (--quick: a smoke run)


def timed(fn: Callable[[], Any], device: Any, min_runs: int = 3) -> float:
    """Median seconds of `fn` after one warm-up call, repeated for about TIMING_BUDGET_S."""
    budget_s = TIMING_BUDGET_S[0]
    fn()
    _sync(device)
    times: list[float] = []
    start = time.perf_counter()
    while len(times) < min_runs or (time.perf_counter() - start < budget_s and len(times) < 50):
        t0 = time.perf_counter()
        fn()
        _sync(device)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


# ------------------------------------------------------------------------------------------------
# the stages
# ------------------------------------------------------------------------------------------------


def read_samples(source: Any, tokenizer: Any, causal_lm: bool = False) -> tuple[list[Any], float]:
    """Every usable sample of the source, read and rendered as the score phase does, and the seconds."""
    from dataselect.io.plan import plan_shards
    from dataselect.io.readers import read_spec
    from dataselect.io.render import TextRenderer
    from dataselect.io.samples import to_sample
    from dataselect.stats import SourceStats

    renderer = TextRenderer(source, tokenizer, causal_lm)
    stats = SourceStats("pool")
    start = time.perf_counter()
    samples = [s for spec in plan_shards(source, 4096) for r in read_spec(spec) if (s := to_sample(r, source, renderer, stats)) is not None]
    return samples, time.perf_counter() - start


def forward_pair(embedder: Any, tokens: Any, batch_tokens: int) -> dict[str, Any]:
    """The engine's forward over `tokens` in its token-budget batches, and a direct timing of the bare
    model call on the same batches, interleaved batch by batch so both see the same machine load. Each
    batch first runs once untimed: its shape's one-off kernel set-up would otherwise fall on whichever
    side runs it first (for a small model, many times the forward itself)."""
    import torch

    from dataselect.scoring.batching import token_budget_batches
    from dataselect.scoring.embed import WIDTH_STEP

    totals = {"engine": 0.0, "direct": 0.0, "flops": 0}

    def engine(batch: Any) -> tuple[float, int]:  # the engine path, counted as in a run: (seconds, model FLOPs)
        seconds, flops = embedder.forward_seconds, embedder.model_flops
        embedder._forward(tokens, batch.indices, batch.padded_length)
        return embedder.forward_seconds - seconds, embedder.model_flops - flops

    def direct(batch: Any) -> float:  # the bare model call on the same padded batch
        ids, mask = tokens.padded(batch.indices, embedder.pad_id, batch.padded_length)  # [b, T] each
        with torch.inference_mode():
            input_ids, attention_mask = torch.from_numpy(ids).to(embedder.device), torch.from_numpy(mask).to(embedder.device)
            _sync(embedder.device)
            start = time.perf_counter()
            embedder.model(input_ids=input_ids, attention_mask=attention_mask)
            _sync(embedder.device)
        return time.perf_counter() - start

    ratios = []
    for number, batch in enumerate(token_budget_batches(tokens.lengths, batch_tokens, WIDTH_STEP)):
        direct(batch)  # the untimed warm-up of this shape
        first, second = (engine, direct) if number % 2 == 0 else (direct, engine)  # alternate who runs first
        results = {first: first(batch), second: second(batch)}
        (engine_seconds, flops), direct_seconds = results[engine], results[direct]
        totals["engine"] += engine_seconds
        totals["direct"] += direct_seconds
        totals["flops"] += flops
        ratios.append(engine_seconds / direct_seconds)
    return {"engine_seconds": totals["engine"], "direct_seconds": totals["direct"], "model_flops": totals["flops"], "batch_ratios": ratios}


def pooling_row(hidden_size: int, mode: str, dtype: Any, device: Any, copy_bw: float) -> Row:
    """The pooling kernel's row: a [64, 256, hidden] batch pooled, in GB/s against a plain copy."""
    import torch

    from dataselect.kernels.pooling import pool

    B, T = 64, 256
    g = torch.Generator(device=device).manual_seed(0)
    hidden = torch.randn(B, T, hidden_size, generator=g, device=device).to(dtype)  # [B, T, H]
    lengths = torch.randint(T // 4, T + 1, (B,), generator=g, device=device)  # [B]
    mask = (torch.arange(T, device=device)[None, :] < lengths[:, None]).long()  # [B, T] right padding
    seconds = timed(lambda: pool(hidden, mask, mode, True), device)
    moved = hidden.numel() * hidden.element_size() + mask.numel() * mask.element_size() + B * hidden_size * 4
    gbps = moved / seconds / 1e9
    return Row("pooling", B, int(lengths.sum()), seconds, f"{mode} over random [{B}, {T}, {hidden_size}] {str(dtype).removeprefix('torch.')}",
               gb_per_s=gbps, pct_copy_bandwidth=100 * gbps * 1e9 / copy_bw)


def el2n_row(hidden_size: int, vocab: int, dtype: Any, device: Any, peak: float) -> Row:
    """The fused LM-head EL2N-and-loss kernel's row, in TFLOP/s and MFU against the device's peak."""
    import torch

    from dataselect.kernels.el2n import lm_head_el2n_and_loss

    B, T = 4, 128
    g = torch.Generator(device=device).manual_seed(0)
    hidden = torch.randn(B, T, hidden_size, generator=g, device=device).to(dtype)  # [B, T, H]
    weight = (torch.randn(vocab, hidden_size, generator=g, device=device) / hidden_size**0.5).to(dtype)  # [V, H]
    labels = torch.randint(0, vocab, (B, T), generator=g, device=device)  # [B, T]
    seconds = timed(lambda: lm_head_el2n_and_loss(hidden, weight, labels), device)
    achieved = 2 * B * T * hidden_size * vocab / seconds
    return Row("EL2N (LM head)", B, B * T, seconds, f"random hidden [{B}, {T}, {hidden_size}], V={vocab:,}",
               tflops_per_s=achieved / 1e12, mfu=achieved / peak)


def projection_row(device: Any, peak: float, copy_bw: float, quick: bool) -> Row:
    """The seeded random projection (LESS's features) of a [16, P] gradient block to 8,192 dimensions (smaller on a CPU)."""
    import torch

    from dataselect.kernels.projection import project
    from dataselect.scoring.models import resolve_dtype

    cuda = torch.device(device).type == "cuda"
    B, P, dim = 16, (1 << 22 if cuda else 1 << 16) >> (4 if quick else 0), 8192 if cuda and not quick else 1024
    dtype = resolve_dtype("auto", torch.device(device))  # method.less.projection_dtype's default on this device
    grads = torch.randn(B, P, generator=torch.Generator().manual_seed(0)).to(device)  # [B, P]
    seconds = timed(lambda: project(grads, dim, 0, dtype), device)
    achieved = 2 * B * P * dim / seconds
    gbps = grads.numel() * grads.element_size() / seconds / 1e9
    name = str(dtype).removeprefix("torch.")
    return Row("projection", B, 0, seconds, f"random gradients [{B}, {P:,}] -> {dim:,} dims, {name} products (signs hashed on the fly)",
               tflops_per_s=achieved / 1e12, mfu=achieved / peak, gb_per_s=gbps, pct_copy_bandwidth=100 * gbps * 1e9 / copy_bw)


def gradient_row(samples: list[Any], device: Any, quick: bool) -> Row:
    """LESS's gradient stage (per-sample gradients of the default warm-up proxy, Adam feature, projection) on the pool's
    samples; GB/s counts the per-sample gradients it forms and projects."""
    import torch

    from dataselect.config import LessConfig, ModelConfig, SourceConfig
    from dataselect.scoring.gradients import GradientStage
    from dataselect.scoring.proxy import proxy_model
    from dataselect.scoring.warmup import Checkpoint

    options = LessConfig()
    cuda = torch.device(device).type == "cuda"
    count = min(len(samples), 16 if quick else 512 if cuda else 64)
    torch.manual_seed(0)
    model = proxy_model(options.proxy, options.proxy.vocab)  # a freshly initialised warm-up proxy: the cost does not depend on its weights
    zeros = {name: torch.zeros_like(p) for name, p in model.named_parameters()}
    dim = 1024 if quick else options.dim
    stage = GradientStage(None, options.proxy, ModelConfig().name, SourceConfig(), "adam", dim, 0, str(device),  # type: ignore[arg-type]
                          options.batch_tokens, options.batch_samples)
    id_map = np.arange(1 << 16) % options.proxy.vocab  # every tokenizer id onto the proxy's classes (a trained map keeps the frequent ones)
    stage.load(id_map, [Checkpoint(model.state_dict(), zeros, zeros, 1.0, 0)], str(device))
    prepared = stage._encoder.encode([s.text for s in samples[:count]], [s.record for s in samples[:count]])
    seconds = timed(lambda: stage.score_prepared(prepared), device, min_runs=1)
    params = sum(p.numel() for p in model.parameters())
    gbps = count * params * 4 / seconds / 1e9
    return Row("LESS gradients", count, int(sum(len(p.ids) for p in prepared)), seconds,
               f"LESS proxy ({params / 1e6:.2f}M params) per-sample gradients, Adam feature, {dim:,}-dim projection, one checkpoint",
               gb_per_s=gbps)


def ngram_row(tokens: Any, device: Any, copy_bw: float, num_buckets: int = 10_000) -> Row:
    """The DSIR n-gram weight kernel's row over `tokens`, in GB/s against a plain copy."""
    import torch

    from dataselect.kernels.ngram import dsir_log_weights

    count = min(len(tokens), 4096)
    ids, _ = tokens.padded(np.arange(count), 0)  # [n, T]
    token_ids = torch.from_numpy(ids).to(device)
    lengths = torch.from_numpy(tokens.lengths[:count]).to(device)  # [n]
    log_ratio = torch.randn(num_buckets, generator=torch.Generator().manual_seed(0)).to(device)  # [buckets]
    seconds = timed(lambda: dsir_log_weights(token_ids, lengths, log_ratio), device)
    moved = token_ids.numel() * token_ids.element_size() + lengths.numel() * 8 + count * 4
    gbps = moved / seconds / 1e9
    return Row("n-gram weights", count, int(lengths.sum()), seconds, f"the pool's token ids [{count}, {ids.shape[1]}], {num_buckets:,} buckets",
               gb_per_s=gbps, pct_copy_bandwidth=100 * gbps * 1e9 / copy_bw)


def kmeans_row(dim: int, n: int, k: int = 64, iterations: int = 10) -> Row:
    """FAISS k-means over `n` random unit vectors: iterations per second."""
    import faiss

    vectors = np.random.default_rng(0).standard_normal((n, dim)).astype(np.float32)  # [n, d]
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    start = time.perf_counter()
    faiss.Kmeans(dim, k, niter=iterations, seed=0, spherical=True, verbose=False).train(vectors)
    return Row("k-means (faiss)", n, 0, time.perf_counter() - start, f"{n:,} random unit vectors, d={dim}, k={k}, {iterations} iterations (CPU)")


def top_k_row(n: int, device: Any) -> Row:
    """top-K of `n` random scores (K = n / 10), the select phase's core."""
    from dataselect.select.base import top_k

    scores = np.random.default_rng(0).random(n)  # [n]
    seconds = timed(lambda: top_k(scores, n // 10), "cpu")
    return Row("top-K", n, 0, seconds, f"{n:,} scores, K={n // 10:,} (numpy)")


def pipeline_row(pool: Path, target: Path, model: str, device: str, limit: int | None, work: Path) -> tuple[Row, dict[str, Any]]:
    """The whole RDS+ run (pool + target embedded, fresh cache) and where its wall time went."""
    import dataselect
    from dataselect.io.mirror import open_store

    overrides = {"input.path": str(pool), "target.path": str(target), "model.name": model, "method.name": "rds", "method.budget": 0.1,
                 "output.dir": str(work / "out"), "runtime.cache_dir": str(work / "cache"), "runtime.device": device,
                 "runtime.num_workers": 0, "runtime.progress": False, "output.show_top": 0, "input.limit": limit}
    result = dataselect.run(dataselect.load_config(None, {k: v for k, v in overrides.items() if v is not None}), quiet=True)
    manifest = result.manifest
    throughput, timings = manifest["throughput"], manifest["timings_s"]
    counters: dict[str, float] = {}
    for stage in manifest["stages"].values():
        store = open_store(stage["store"])
        for index in range(store.num_shards):
            for name, value in store.shard_record(index)["counters"].items():
                counters[name] = counters.get(name, 0) + value
    total = timings["total"]
    score = timings.get("score_pool", 0) + timings.get("score_target", 0)
    breakdown = {
        "forward": counters.get("forward_seconds", 0), "tokenise": counters.get("tokenize_seconds", 0),
        "rest of the score phase (model weights load, read, render, pooling, hashing, store writes)": score - counters.get("forward_seconds", 0)
        - counters.get("tokenize_seconds", 0),
        "select": timings.get("select", 0), "write": timings.get("write", 0),
        "model load and the rest": total - score - timings.get("select", 0) - timings.get("write", 0),
    }
    row = Row("RDS+ pipeline", throughput["scored_docs"], throughput["scored_tokens"], total,
              f"dataselect.run, method rds, pool + target, fresh cache; device {device}", mfu=throughput.get("mfu"),
              tflops_per_s=throughput.get("model_tflops_per_s"))
    return row, {"seconds": {k: round(v, 3) for k, v in breakdown.items()}, "share": {k: v / total for k, v in breakdown.items()}}


# ------------------------------------------------------------------------------------------------
# the command
# ------------------------------------------------------------------------------------------------


def environment(device: Any) -> dict[str, Any]:
    """What the figures ran on: device name, torch and triton versions, peak FLOP/s and copy bandwidth."""
    import torch

    from dataselect.hardware import cpu_name

    if torch.device(device).type == "cuda":
        name = torch.cuda.get_device_name(device)
    else:
        name = f"CPU ({cpu_name()}), {os.cpu_count()} cores, {torch.get_num_threads()} torch threads"
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    return {"device": name, "torch": torch.__version__, "python": platform.python_version(), "load_average_1min": load}


def _fmt(value: float | None, spec: str) -> str:
    return "-" if value is None or value != value else format(value, spec)


def table(rows: list[Row]) -> str:
    """The rows as the fixed-width table `dataselect bench` prints."""
    header = f"{'stage':<16} {'docs/s':>11} {'tokens/s':>11} {'TFLOP/s':>8} {'MFU':>7} {'GB/s':>7} {'%copy':>6} {'share':>6}  workload"
    lines = [header, "-" * len(header)]
    for r in rows:
        lines.append(
            f"{r.stage:<16} {_fmt(r.docs_per_s, ',.1f'):>11} {_fmt(r.tokens_per_s, ',.0f'):>11} {_fmt(r.tflops_per_s, '.4f'):>8} "
            f"{_fmt(None if r.mfu is None else 100 * r.mfu, '.1f') + ('%' if r.mfu is not None else ''):>7} {_fmt(r.gb_per_s, '.3g'):>7} "
            f"{_fmt(r.pct_copy_bandwidth, '.3g'):>6} {_fmt(None if r.share is None else 100 * r.share, '.1f') + ('%' if r.share is not None else ''):>6}"
            f"  {r.workload}"
        )
    return "\n".join(lines)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="dataselect bench", description=__doc__.split("\n")[0],
                                     epilog="dataselect bench NAME [ARGS]: a script from bench/ in a source checkout (e.g. kernels, throughput)")
    parser.add_argument("--n", type=int, default=None, help=f"pool docs (default {CPU_DEFAULT_N} on CPU, {CUDA_DEFAULT_N:,} on CUDA)")
    parser.add_argument("--pool", type=Path, help="a pool file or folder to read (default: a generated instruction pool)")
    parser.add_argument("--target", type=Path, help="the RDS+ target with --pool (default: generated math questions)")
    parser.add_argument("--model", default="sentence-transformers/all-MiniLM-L6-v2")
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    parser.add_argument("--batch-tokens", type=int, default=16384, help="padded tokens per forward batch (runtime.batch_tokens)")
    parser.add_argument("--json", type=Path, help="also write every figure to this JSON file")
    parser.add_argument("--quick", action="store_true", help="short kernel timings and small k-means / top-K inputs: a smoke run, not a measurement")
    return parser


def run_bench(args: argparse.Namespace, out: Any = sys.stdout) -> dict[str, Any]:
    """Every stage, the table printed to `out`; returns what --json writes."""
    import torch

    from dataselect.config import SourceConfig
    from dataselect.demo import make_demo
    from dataselect.hardware import copy_bandwidth, peak_flops
    from dataselect.scoring.embed import Embedder
    from dataselect.scoring.models import load_weights, resolve_device, resolve_model
    from dataselect.scoring.tokenize import TokenizedTexts, encoder_for

    device = resolve_device(args.device)
    TIMING_BUDGET_S[0] = 0.05 if args.quick else 1.0
    n = args.n or (CUDA_DEFAULT_N if device.type == "cuda" else CPU_DEFAULT_N)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="dataselect-bench-") as folder:
        work = Path(folder)
        make_demo(work / "data", pool_size=n if args.pool is None else 1, target_size=100)
        pool = args.pool or work / "data" / "pool.jsonl"
        target = args.target or work / "data" / "target.jsonl"
        source = SourceConfig(path=str(pool), limit=n)
        spec = resolve_model(args.model, "auto", None, "auto", str(device))
        env = environment(device)
        peak, peak_source = peak_flops(device, spec.dtype)
        copy_bw = copy_bandwidth(device, mib=16 if args.quick else 256 if device.type == "cpu" else 2048)
        print(f"device: {env['device']}; torch {env['torch']}; model {args.model} ({str(spec.dtype).removeprefix('torch.')}, "
              f"max length {spec.max_length}); {n:,} docs", file=out)
        print(f"peak: {peak / 1e12:.3f} TFLOP/s ({peak_source}); copy bandwidth {copy_bw / 1e9:.1f} GB/s (read + write)", file=out)

        samples, read_seconds = read_samples(source, spec.tokenizer, spec.causal_lm)
        texts = [s.text for s in samples]
        encoder = encoder_for(spec.tokenizer, spec.max_length)
        start = time.perf_counter()
        tokens = TokenizedTexts.concat([encoder(texts[i : i + 4096]) for i in range(0, len(texts), 4096)])
        tokenize_seconds = time.perf_counter() - start
        real_tokens = int(tokens.lengths.sum())
        rows = [Row("read + render", len(samples), 0, read_seconds, f"{pool.name}: plan, parse, render"),
                Row("tokenise", len(samples), real_tokens, tokenize_seconds, "fast tokenizer, one thread, truncation at max length")]

        embedder = Embedder(load_weights(spec, device))
        pair: dict[str, Any] = {"engine_seconds": 0.0, "direct_seconds": 0.0, "model_flops": 0, "batch_ratios": []}
        for start_index in range(0, len(tokens), 4096):  # the pipeline's shards: batches are cut per shard
            part = TokenizedTexts(tokens.flat[tokens.offsets[start_index]:tokens.offsets[min(start_index + 4096, len(tokens))]],
                                  tokens.lengths[start_index : start_index + 4096])
            for key, value in forward_pair(embedder, part, args.batch_tokens).items():
                pair[key] += value
        achieved = pair["model_flops"] / pair["engine_seconds"]
        rows.append(Row("forward", len(samples), real_tokens, pair["engine_seconds"],
                        f"{embedder.linear_params / 1e6:.1f}M linear params, token-budget batches of {args.batch_tokens:,}",
                        tflops_per_s=achieved / 1e12, mfu=achieved / peak))
        check = {"engine_forward_seconds": pair["engine_seconds"], "direct_forward_seconds": pair["direct_seconds"],
                 "ratio": pair["engine_seconds"] / pair["direct_seconds"], "direct_docs_per_s": len(samples) / pair["direct_seconds"],
                 "batches": len(pair["batch_ratios"]), "median_batch_ratio": statistics.median(pair["batch_ratios"])}

        hidden_size, dtype = embedder.dim, spec.dtype
        rows.append(pooling_row(hidden_size, embedder.loaded.pooling, dtype, device, copy_bw))
        rows.append(el2n_row(hidden_size, len(spec.tokenizer), dtype, device, peak))
        rows.append(ngram_row(tokens, device, copy_bw))
        rows.append(projection_row(device, peak, copy_bw, args.quick))
        rows.append(gradient_row(samples, device, args.quick))
        rows.append(kmeans_row(hidden_size, 2_000 if args.quick else max(20_000, n)))
        rows.append(top_k_row(100_000 if args.quick else max(1_000_000, 10 * n), device))
        del embedder
        if device.type == "cuda":
            torch.cuda.empty_cache()
        per_doc = [r.seconds / r.docs for r in rows]
        for row, cost in zip(rows, per_doc):
            row.share = cost / sum(per_doc)
        pipeline, breakdown = pipeline_row(pool, target, args.model, device.type, n, work)
        rows.append(pipeline)

    print("\n" + table(rows), file=out)
    print(f"\nforward check: the engine's counted forward time / a direct timing of the same model and batches = {check['ratio']:.3f} "
          f"({check['engine_forward_seconds']:.2f}s / {check['direct_forward_seconds']:.2f}s over {check['batches']} batches, "
          f"median per batch {check['median_batch_ratio']:.3f}; target within 20%)", file=out)
    print("RDS+ pipeline wall time: " + ", ".join(f"{name} {100 * share:.1f}%" for name, share in breakdown["share"].items()), file=out)
    print("share: a stage's time per doc as a share of the stage rows' sum (a doc put through every stage once); "
          "MFU: 2 x linear params x real tokens against the peak above", file=out)
    wall = time.perf_counter() - started
    print(f"bench wall time {wall:.1f}s", file=out)
    return {"environment": env, "docs": n, "model": args.model, "dtype": str(spec.dtype).removeprefix("torch."), "device_type": device.type,
            "peak_flops": peak, "peak_source": peak_source, "copy_bandwidth": copy_bw, "rows": [r.to_dict() for r in rows],
            "forward_check": check, "pipeline_breakdown": breakdown, "wall_seconds": wall, "command": " ".join(["dataselect", "bench", *sys.argv[2:]])}


def main(argv: list[str] | None = None) -> int:
    """`dataselect bench [--n N] [--device D] [--json FILE]`: every stage's row; returns the exit code."""
    args = _parser().parse_args(argv)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # a killed bench still removes its temporary folder
    figures = run_bench(args)
    if args.json is not None:
        args.json.write_text(json.dumps(figures, indent=2, default=float) + "\n", encoding="utf-8")
        print(f"wrote {args.json}")
    return 0
