"""Kernel benchmarks: time, bytes moved, achieved GB/s against the measured copy bandwidth, and peak memory
of each kernel's dispatch path next to the family's torch reference from kernels/ (never a copy of it).

    python -m bench.kernels_vs_torch [--device auto|cpu|cuda] [--kernels pooling,el2n,el2n-lmhead,ngram,reweight]
                            [--size name=value ...] [--quick] [--json PATH]

Every run appends its rows (kernel, variant, shape, dtype, device name, ms, GB/s, peak memory, the
command, torch / triton versions, the kernels backend) as JSON lines to bench/results/kernels.jsonl, or
to --json PATH. DATASELECT_KERNELS=reference makes the "dispatch" rows the reference too (rows say so).

GPU: time is the median of triton.testing.do_bench (L2 flushed between runs); peak memory is
torch.cuda.max_memory_allocated above what the inputs already hold. CPU: the dispatch path is the torch
reference; each variant runs in a fresh subprocess that reports its peak RSS increase over the RSS with
its inputs built (first call; VmHWM reset through /proc/self/clear_refs after the inputs are built),
then the median perf_counter time of further calls.
Copy bandwidth: a large device-to-device copy, counting bytes read + written. Sizes default to the
acceptance shapes on GPU and to smaller ones on CPU, except the EL2N LM-head memory row (B=8, T=512,
V=50,000, H=768), which runs on either; override with --size, e.g. --size el2n-lmhead.V=128256.
"""
from __future__ import annotations

import argparse
import datetime
import importlib
import json
import os
import platform
import resource
import shlex
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable

import torch

from bench.common import RESULTS_DIR, ROOT, bench_command

# name -> {param: (cpu default, cuda default)}
SIZES: dict[str, dict[str, tuple]] = {
    "copy": {"MiB": (256, 2048)},
    "pooling": {"B": (32, 64), "T": (512, 2048), "H": (768, 4096), "dtype": ("bfloat16", "bfloat16"), "mode": ("weighted_mean", "weighted_mean")},
    "el2n": {"B": (4, 8), "T": (512, 512), "V": (50_000, 128_256), "dtype": ("float32", "bfloat16")},
    "el2n-lmhead": {"B": (8, 8), "T": (512, 512), "V": (50_000, 128_256), "H": (768, 4096), "dtype": ("float32", "bfloat16")},
    "ngram": {"B": (1024, 4096), "T": (512, 2048), "buckets": (10_000, 10_000)},
    "reweight": {"N": (4096, 4096), "strategy": ("linupper", "linupper")},
}
KERNELS = ["pooling", "el2n", "el2n-lmhead", "ngram", "reweight"]
# --quick: tiny shapes that exercise every case in seconds (a smoke run; its figures measure nothing)
QUICK: dict[str, dict] = {
    "copy": {"MiB": 8},
    "pooling": {"B": 3, "T": 37, "H": 100},
    "el2n": {"B": 3, "T": 37, "V": 123},
    "el2n-lmhead": {"B": 3, "T": 37, "V": 123, "H": 100},
    "ngram": {"B": 3, "T": 37, "buckets": 101},
    "reweight": {"N": 37},
}
# the "reference" variant of each kernel: the torch reference in kernels/ that every ratio is against
BASELINES = {
    "pooling": "pooling.pool_reference",
    "el2n": "el2n.token_el2n_and_ce_reference (fp32)",
    "el2n-lmhead": "hidden @ W.T, then el2n.token_el2n_and_ce_reference (fp32) on the [B, T, V] logits",
    "ngram": "ngram.hashed_ngram_counts_reference @ log_ratio (builds [B, buckets])",
    "reweight": "reweight.reweight_weights_reference",
}
DTYPES = {"ngram": "int64", "reweight": "float32", "copy": "float32"}  # kernels whose sizes name no dtype
RESULTS = RESULTS_DIR / "kernels.jsonl"


def import_kernels() -> None:
    """dataselect.kernels is kernels/ through the link dataselect/kernels (run as `python -m bench.kernels_vs_torch` from the checkout)."""
    importlib.import_module("dataselect.kernels.dispatch")


# ---------------------------------------------------------------------------------------------
# cases: (callable, bytes a perfect implementation must move, flops or 0)
# ---------------------------------------------------------------------------------------------


def make_case(kernel: str, variant: str, p: dict, device: str) -> tuple[Callable[[], object], int, int]:
    """variant "dispatch" is the public entry point the engine calls (Triton on CUDA); "reference" is the
    family's torch reference from kernels/ (BASELINES names it), the baseline every ratio is against."""
    import_kernels()
    g = torch.Generator(device=device).manual_seed(0)
    if kernel == "copy":
        n = p["MiB"] * (1 << 20) // 4
        src = torch.empty(n, dtype=torch.float32, device=device).uniform_(generator=g)  # [n]
        dst = torch.empty_like(src)
        return (lambda: dst.copy_(src)), 2 * src.numel() * 4, 0

    if kernel == "pooling":
        from dataselect.kernels.pooling import pool, pool_reference

        B, T, H, dtype = p["B"], p["T"], p["H"], getattr(torch, p["dtype"])
        hidden = torch.randn(B, T, H, generator=g, device=device, dtype=dtype)  # [B, T, H]
        lengths = torch.randint(T // 4, T + 1, (B,), generator=g, device=device)  # [B]
        mask = (torch.arange(T, device=device)[None, :] >= T - lengths[:, None]).long()  # [B, T] left padding
        moved = hidden.numel() * hidden.element_size() + mask.numel() * mask.element_size() + B * H * 4
        fn = pool if variant == "dispatch" else pool_reference
        return (lambda: fn(hidden, mask, p["mode"], True)), moved, 0

    if kernel == "el2n":  # the reduction alone, on given logits
        from dataselect.kernels.el2n import token_el2n_and_ce, token_el2n_and_ce_reference

        B, T, V, dtype = p["B"], p["T"], p["V"], getattr(torch, p["dtype"])
        logits = (torch.randn(B, T, V, generator=g, device=device) * 3).to(dtype)  # [B, T, V]
        labels = torch.randint(0, V, (B, T), generator=g, device=device)  # [B, T]
        moved = logits.numel() * logits.element_size() + labels.numel() * 8 + 2 * B * T * 4
        if variant == "dispatch":
            return (lambda: token_el2n_and_ce(logits, labels)), moved, 0
        return (lambda: token_el2n_and_ce_reference(logits, labels, dtype=torch.float32)), moved, 0

    if kernel == "el2n-lmhead":
        from dataselect.kernels.el2n import lm_head_el2n_and_loss, token_el2n_and_ce_reference

        B, T, V, H, dtype = p["B"], p["T"], p["V"], p["H"], getattr(torch, p["dtype"])
        hidden = torch.randn(B, T, H, generator=g, device=device).to(dtype)  # [B, T, H]
        weight = (torch.randn(V, H, generator=g, device=device) / H**0.5).to(dtype)  # [V, H]
        labels = torch.randint(0, V, (B, T), generator=g, device=device)  # [B, T]
        flops = 2 * B * T * H * V
        if variant == "dispatch":
            return (lambda: lm_head_el2n_and_loss(hidden, weight, labels)), 0, flops

        def materialised() -> tuple[torch.Tensor, torch.Tensor]:
            e, c = token_el2n_and_ce_reference(hidden @ weight.T, labels, dtype=torch.float32)  # via [B, T, V] logits
            return e.mean(1), c.mean(1)

        return materialised, 0, flops

    if kernel == "ngram":
        from dataselect.kernels.ngram import dsir_log_weights, hashed_ngram_counts_reference

        B, T, NB = p["B"], p["T"], p["buckets"]
        ids = torch.randint(0, 128_000, (B, T), generator=g, device=device)  # [B, T]
        lengths = torch.randint(T // 2, T + 1, (B,), generator=g, device=device)  # [B]
        log_ratio = torch.randn(NB, generator=g, device=device)  # [NB]
        moved = ids.numel() * 8 + B * 8 + B * 4
        if variant == "dispatch":
            return (lambda: dsir_log_weights(ids, lengths, log_ratio)), moved, 0
        return (lambda: hashed_ngram_counts_reference(ids, lengths, NB) @ log_ratio), moved, 0  # builds [B, NB]

    if kernel == "reweight":
        from dataselect.kernels.reweight import reweight_weights, reweight_weights_reference

        losses = 2.0 + torch.rand(p["N"], generator=g, device=device)  # [N]
        fn = reweight_weights if variant == "dispatch" else reweight_weights_reference
        return (lambda: fn(losses, p["strategy"], 0.4)), p["N"] * 8, 0
    raise ValueError(kernel)


# ---------------------------------------------------------------------------------------------
# measurement
# ---------------------------------------------------------------------------------------------


def _rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _reset_peak_rss() -> bool:
    """Linux: writing 5 to clear_refs resets VmHWM, so building the inputs (and their temporaries)
    does not count towards the peak of the call under test."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def _peak_rss_bytes(reset: bool) -> int:
    if reset:
        with open("/proc/self/status") as f:
            return next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmHWM"))
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # lifetime peak: an upper bound


def measure(kernel: str, variant: str, p: dict, device: str, cpu_budget_s: float) -> dict:
    """Peak extra memory of the first call, then the median time of further calls."""
    if device == "cuda":
        import triton.testing

        fn, moved, flops = make_case(kernel, variant, p, device)
        torch.cuda.synchronize()
        base = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
        fn()
        torch.cuda.synchronize()
        peak = torch.cuda.max_memory_allocated() - base
        seconds = triton.testing.do_bench(fn, warmup=25, rep=200, return_mode="median") / 1e3
        runs = -1
    else:
        fn, moved, flops = make_case(kernel, variant, p, device)
        reset = _reset_peak_rss()
        base = _rss_bytes()
        fn()
        peak = _peak_rss_bytes(reset) - base
        times: list[float] = []
        start = time.perf_counter()
        while len(times) < 2 or (time.perf_counter() - start < cpu_budget_s and len(times) < 100):
            t0 = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t0)
        seconds, runs = statistics.median(times), len(times)
    return {"seconds": seconds, "bytes": moved, "flops": flops, "peak_bytes": max(peak, 0), "runs": runs}


def measure_fresh(kernel: str, variant: str, p: dict, device: str, cpu_budget_s: float) -> dict:
    """CPU: a fresh interpreter per variant, so one variant's high-water mark never hides another's."""
    if device == "cuda":
        return measure(kernel, variant, p, device, cpu_budget_s)
    spec = json.dumps({"kernel": kernel, "variant": variant, "p": p, "device": device, "budget": cpu_budget_s})
    proc = subprocess.run(bench_command("kernels_vs_torch", "--child", spec), capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"{kernel}/{variant} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


# ---------------------------------------------------------------------------------------------
# report
# ---------------------------------------------------------------------------------------------


def shape_of(p: dict) -> str:
    return " ".join(f"{k}={v}" for k, v in p.items())


def fmt(value: float | None, spec: str) -> str:
    return format(value, spec) if value is not None else "-"


def environment(device: str) -> dict:
    """Device name and the versions every row carries, so rows from different machines can sit in one file."""
    import_kernels()
    from dataselect.kernels import dispatch

    if device == "cuda":
        name = torch.cuda.get_device_name()
    else:
        name = f"CPU ({cpu_model()}), {os.cpu_count()} cores, {torch.get_num_threads()} torch threads"
    info = dispatch.describe()
    return {
        "device": name, "device_type": device, "torch": torch.__version__, "triton": info["triton"],
        "cuda": torch.version.cuda, "kernels_backend": info["backend"], "triton_interpreter": info["interpreter"],
        "python": platform.python_version(),
    }


def cpu_model() -> str:
    from dataselect.hardware import cpu_name

    return cpu_name()


def append_rows(path: Path, rows: list[dict]) -> None:
    """One JSON object per line, appended: earlier runs (other machines, other commits) stay in the file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row, sort_keys=True) + "\n")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    parser.add_argument("--kernels", default=",".join(KERNELS), help=f"comma list of {KERNELS}")
    parser.add_argument("--size", action="append", default=[], metavar="KERNEL.PARAM=VALUE")
    parser.add_argument("--quick", action="store_true", help="tiny shapes: a smoke run in seconds, not a measurement")
    parser.add_argument("--cpu-budget", type=float, default=3.0, help="seconds of timed calls per CPU variant")
    parser.add_argument("--json", type=Path, default=RESULTS,
                        help=f"append the rows here as JSON lines (default {RESULTS.relative_to(ROOT)})")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.child:  # subprocess mode: one variant, JSON on stdout
        spec = json.loads(args.child)
        print(json.dumps(measure(spec["kernel"], spec["variant"], spec["p"], spec["device"], spec["budget"])))
        return

    device = ("cuda" if torch.cuda.is_available() else "cpu") if args.device == "auto" else args.device
    col = 1 if device == "cuda" else 0
    params = {k: {name: v[col] for name, v in d.items()} for k, d in SIZES.items()}
    if args.quick:
        for kernel, values in QUICK.items():
            params[kernel].update(values)
    for item in args.size:
        key, value = item.split("=", 1)
        kernel, name = key.split(".", 1)
        old = params[kernel][name]
        params[kernel][name] = type(old)(value)
    env = environment(device)
    command = shlex.join(["python", "-m", "bench.kernels_vs_torch", *(sys.argv[1:] if argv is None else argv)])
    stamp = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    print(f"device: {env['device']}; torch {env['torch']}; triton {env['triton']}; kernels backend {env['kernels_backend']}")

    copy = measure_fresh("copy", "dispatch", params["copy"], device, args.cpu_budget)
    copy_bw = copy["bytes"] / copy["seconds"]
    print(f"copy bandwidth ({params['copy']['MiB']} MiB fp32, read + write): {copy_bw / 1e9:.1f} GB/s\n")

    def row_of(kernel: str, variant: str, p: dict, r: dict, ref: dict | None) -> dict:
        gbps = r["bytes"] / r["seconds"] / 1e9 if r["bytes"] else None
        return {
            **env, "bench": "kernels", "command": command, "time": stamp,
            "kernel": kernel, "variant": variant, "baseline": BASELINES.get(kernel) if variant == "reference" else None,
            "shape": {k: v for k, v in p.items() if isinstance(v, int)}, "dtype": p.get("dtype", DTYPES.get(kernel)),
            "params": {k: v for k, v in p.items() if not isinstance(v, int) and k != "dtype"},
            "ms": r["seconds"] * 1e3, "runs": r["runs"], "gb_per_s": gbps, "copy_gb_per_s": copy_bw / 1e9,
            "pct_copy_bw": 100 * gbps * 1e9 / copy_bw if gbps else None,
            "tflop_per_s": r["flops"] / r["seconds"] / 1e12 if r["flops"] else None,
            "peak_mib": r["peak_bytes"] / 2**20,
            "speedup_vs_reference": ref["seconds"] / r["seconds"] if ref else None,
            "peak_ratio_vs_reference": r["peak_bytes"] / max(ref["peak_bytes"], 1) if ref else None,
        }

    rows = [row_of("copy", "torch", params["copy"], copy, None)]
    header = f"{'kernel':<12} {'variant':<9} {'ms':>10} {'GB/s':>8} {'%copy':>6} {'TFLOP/s':>8} {'peak MiB':>9} {'x faster':>8} {'mem ratio':>9}  shape"
    print(header)
    print("-" * len(header))
    for kernel in [k for k in args.kernels.split(",") if k]:
        p = params[kernel]
        results = {v: measure_fresh(kernel, v, p, device, args.cpu_budget) for v in ("dispatch", "reference")}
        for variant, r in results.items():
            row = row_of(kernel, variant, p, r, results["reference"])
            rows.append(row)
            print(
                f"{kernel:<12} {variant:<9} {row['ms']:>10.3f} {fmt(row['gb_per_s'], '8.1f'):>8} {fmt(row['pct_copy_bw'], '6.1f'):>6} "
                f"{fmt(row['tflop_per_s'], '8.2f'):>8} {row['peak_mib']:>9.1f} {row['speedup_vs_reference']:>8.2f} "
                f"{row['peak_ratio_vs_reference']:>9.3f}  {shape_of(p)}"
            )
    print("\nreference: " + "; ".join(f"{k}: {BASELINES[k]}" for k in args.kernels.split(",") if k in BASELINES))

    append_rows(args.json, rows)
    print(f"\nappended {len(rows)} rows to {args.json}")
    if args.quick:
        print("--quick: shapes too small for the acceptance checks")
        return

    print("\nacceptance:")
    by = {(r["kernel"], r["variant"]): r for r in rows}
    checks = []
    lm = by.get(("el2n-lmhead", "dispatch"))
    if lm:
        checks.append((f"EL2N LM-head peak memory, chunked / materialised logits ({shape_of(lm['shape'])} {lm['dtype']})",
                       lm["peak_ratio_vs_reference"], "<=", 0.25))
    if device == "cuda":
        pl = by.get(("pooling", "dispatch"))
        if pl:
            checks.append((f"pooling % of copy bandwidth ({shape_of(pl['shape'])})", pl["pct_copy_bw"], ">=", 70.0))
        if lm:
            checks.append(("fused EL2N speed-up vs materialised logits", lm["speedup_vs_reference"], ">=", 1.5))
    for label, value, op, target in checks:
        ok = value <= target if op == "<=" else value >= target
        print(f"  {label}: {value:.3f} (target {op} {target}) {'PASS' if ok else 'FAIL'}")
    if device != "cuda":
        print("  GPU targets (pooling >= 70% of copy bandwidth; fused EL2N >= 1.5x faster) need a CUDA device")


if __name__ == "__main__":
    main()
