"""What the hardware allows, for roofline context: the device's peak matmul rate and copy bandwidth,
and the model FLOP utilisation (MFU) of a forward pass against that peak.

Peak for known GPUs: the vendor's dense bf16 tensor-core figure. On the CPU or an unknown GPU: a
measured square-matmul rate in the given dtype (as nanoGPT's `estimate_mfu` compares against a fixed
figure, a measured one is the honest ceiling where the spec sheet is unknown). A forward pass costs
2 x (parameters of the model's linear layers) FLOPs per real token: embedding lookups and the pooler
(one token per sequence) do no per-token matmul, and attention's QK^T and AV products are left out
(4 x layers x sequence length x width per token: a few percent at the lengths embedding models see).
"""
from __future__ import annotations

import contextlib
import functools
import glob
import logging
import sys
import time
from typing import TYPE_CHECKING, Any, Callable, Iterable, Iterator

if TYPE_CHECKING:  # torch loads only when a figure is measured: the manifest of a DSIR run never needs it
    import torch

logger = logging.getLogger(__name__)

# dense bf16 tensor-core TFLOP/s (no sparsity), by a substring of torch.cuda.get_device_name; first match wins
GPU_BF16_PEAK_TFLOPS: tuple[tuple[str, float], ...] = (
    ("H200", 989.0),
    ("H100 PCIe", 756.0),
    ("H100 NVL", 835.0),
    ("H100", 989.0),  # SXM (HBM3)
    ("A100", 312.0),
    ("L40S", 362.0),
    ("L4", 121.0),
)


def cpu_name() -> str:
    """The CPU's model name (/proc/cpuinfo on Linux), for benchmark rows."""
    import platform

    try:
        with open("/proc/cpuinfo") as f:
            return next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        return platform.processor() or platform.machine()


# /proc/cpuinfo flags of native bf16 arithmetic: x86 AVX512-BF16 and AMX, Arm's BF16 extension
NATIVE_BF16_FLAGS = ("amx_bf16", "avx512_bf16", "bf16")


# device nodes an NVIDIA (CUDA) or AMD (ROCm) GPU driver creates; with none of them torch sees no GPU
GPU_DEVICE_NODES = ("/dev/nvidia[0-9]*", "/dev/kfd", "/dev/dxg")


def no_gpu_without_torch(patterns: Iterable[str] = GPU_DEVICE_NODES) -> bool:
    """True when this machine surely has no GPU torch could use, decided without importing torch (about
    1.5 s): torch is not loaded yet and no GPU driver's device node exists. False means: ask torch."""
    return "torch" not in sys.modules and not any(glob.glob(pattern) for pattern in patterns)


@functools.lru_cache(maxsize=4)
def cpu_flags(cpuinfo: str = "/proc/cpuinfo") -> frozenset[str]:
    """The CPU's feature flags (x86 `flags`, Arm `Features` in /proc/cpuinfo); empty where there is no such file."""
    try:
        with open(cpuinfo) as f:
            return next((frozenset(line.split(":", 1)[1].split()) for line in f if line.startswith(("flags", "Features"))), frozenset())
    except OSError:
        return frozenset()


def native_bf16_flag(cpuinfo: str = "/proc/cpuinfo") -> str | None:
    """The CPU flag that says this CPU computes bf16 natively (avx512_bf16, amx_bf16, Arm's bf16), or None
    (no such flag, or no `cpuinfo` file to read): where it is None, bf16 is emulated and slower than fp32."""
    return next((flag for flag in NATIVE_BF16_FLAGS if flag in cpu_flags(cpuinfo)), None)


@contextlib.contextmanager
def one_cpu_thread(device: Any) -> Iterator[None]:
    """On the CPU (`device` a name or a torch device), torch on one thread for the block: where the work is
    small vector ops a second thread only spins (n-gram hashing, L-BFGS: measured 20x slower on a busy
    machine), and where results must not depend on a batch's row count (per-sample gradients: the matmul
    libraries split reductions by it across threads). Elsewhere, nothing changes."""
    import torch

    if getattr(device, "type", device) != "cpu":
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def known_gpu_peak(name: str) -> float | None:
    """Dense bf16 FLOP/s of a GPU named `name`, or None when it is not in the table."""
    for key, tflops in GPU_BF16_PEAK_TFLOPS:
        if key.lower() in name.lower():
            return tflops * 1e12
    return None


def _sync(device: torch.device) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _best_seconds(fn: Any, device: torch.device, repeats: int) -> float:
    fn()  # warm-up: allocation, kernel selection
    _sync(device)
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        _sync(device)
        best = min(best, time.perf_counter() - start)
    return best


def measured_matmul_flops(device: str | torch.device = "cpu", dtype: torch.dtype | None = None, size: int = 1024, repeats: int = 5) -> float:
    """FLOP/s of a [size, size] @ [size, size] matmul in `dtype` (default float32) on `device` (best of `repeats`)."""
    import torch

    device, dtype = torch.device(device), dtype or torch.float32
    a = torch.randn(size, size, device=device).to(dtype)  # [n, n]
    b = torch.randn(size, size, device=device).to(dtype)  # [n, n]
    seconds = _best_seconds(lambda: a @ b, device, repeats)
    return 2 * size**3 / seconds


@functools.lru_cache(maxsize=16)
def _cached_matmul_flops(device: str, dtype: str) -> float:
    import torch

    return measured_matmul_flops(device, getattr(torch, dtype))


def peak_flops(device: str | torch.device, dtype: torch.dtype | None = None) -> tuple[float, str]:
    """(peak FLOP/s, where the figure comes from) for `device`: the table for known GPUs, else a
    measured matmul rate in `dtype` (default float32; measured once per process and device)."""
    import torch

    device, dtype = torch.device(device), dtype or torch.float32
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
        peak = known_gpu_peak(name)
        if peak is not None:
            return peak, f"{name}: dense bf16 spec"
        dtype = torch.bfloat16
    label = str(dtype).removeprefix("torch.")
    return _cached_matmul_flops(str(device), label), f"measured {label} matmul ({device.type})"


def copy_bandwidth(device: str | torch.device = "cpu", mib: int = 256, repeats: int = 5) -> float:
    """Bytes/s of a large device-side copy, counting bytes read + written (the memory-bound roofline)."""
    import torch

    device = torch.device(device)
    src = torch.empty(mib * 2**20 // 4, dtype=torch.float32, device=device).fill_(1.0)  # [n]
    dst = torch.empty_like(src)
    seconds = _best_seconds(lambda: dst.copy_(src), device, repeats)
    return 2 * src.numel() * 4 / seconds


def linear_parameters(model: torch.nn.Module) -> int:
    """Parameters of the linear layers that every token passes through (not embeddings, not the pooler)."""
    import torch

    return sum(
        sum(p.numel() for p in module.parameters(recurse=False))
        for name, module in model.named_modules()
        if isinstance(module, torch.nn.Linear) and "pooler" not in name
    )


def forward_flops(linear_params: int, real_tokens: int) -> int:
    """Model FLOPs of a forward pass over `real_tokens` tokens (padding not counted: it is waste)."""
    return 2 * int(linear_params) * int(real_tokens)


def significant(value: float, digits: int = 4) -> float:
    """`value` to `digits` significant digits: a tiny model's MFU on a CPU (0.00043) keeps its precision,
    which rounding to decimal places would take (0.0004)."""
    return float(f"{value:.{digits}g}")


def mfu_figures(model_flops: float, forward_seconds: float, device: str | torch.device, dtype: torch.dtype | None, devices_sharing: int = 1) -> dict[str, Any]:
    """The manifest's MFU figures: achieved FLOP/s of the forward passes against the device's peak.
    `forward_seconds` is summed over workers; `devices_sharing` workers that split one device's peak
    (CPU worker processes) each get 1/devices_sharing of it."""
    if not model_flops or forward_seconds <= 0:
        return {}
    peak, source = peak_flops(device, dtype)
    achieved = model_flops / forward_seconds
    return {
        "model_flops": int(model_flops),
        "forward_seconds": significant(forward_seconds),
        "model_tflops_per_s": significant(achieved / 1e12),
        "peak_tflops_per_s": significant(peak / 1e12),
        "peak_source": source,
        "mfu": significant(achieved / (peak / max(1, devices_sharing))),
        "flops_counted": "2 x linear-layer parameters x real tokens (no attention products, no padding)",
    }


def run_mfu(scored: Iterable[Any], resolved: Callable[[], tuple[Any, Any]], executor: dict[str, Any]) -> dict[str, Any]:
    """MFU of a run's forward passes from its scored sources' counters (`model_flops`, `forward_seconds`,
    summed over shards and sources); {} when no stage ran a model forward this run (a cache hit, DSIR, random).
    `resolved` gives the run's (torch device, dtype), asked only when there is a figure to compute."""
    counters = {name: sum(s.counter(name) for s in scored) for name in ("model_flops", "forward_seconds")}
    if not counters["model_flops"]:
        return {}
    device, dtype = resolved()
    workers = int(executor.get("workers") or 0)
    sharing = workers if device.type == "cpu" and workers > 1 else 1
    try:
        return mfu_figures(counters["model_flops"], counters.get("forward_seconds", 0.0), device, dtype, sharing)
    except Exception as error:  # noqa: BLE001 - a figure for the manifest; the run's result never depends on it
        logger.warning("MFU not measured: %s", error)
        return {}
