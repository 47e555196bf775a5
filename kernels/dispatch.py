"""The one place that decides, per call, whether a kernel family runs its Triton kernel or its torch
reference; every family (pooling, el2n, ngram, reweight, projection) asks `use_triton` and imports `triton` / `tl`
from here, so an install without Triton and the override below behave the same everywhere.

    DATASELECT_KERNELS=auto       (default) Triton for CUDA tensors when triton imports, the reference otherwise
    DATASELECT_KERNELS=reference  the torch reference everywhere, CUDA tensors included
    DATASELECT_KERNELS=triton     Triton for every supported input: CUDA tensors, or CPU tensors when the
                                  kernels were defined under TRITON_INTERPRET=1 (how the tests force the
                                  kernels on a CPU-only machine); an error when Triton cannot run the input

The variable is read at each call (a dictionary lookup), so a test or a user can change it at run time.
TRITON_INTERPRET, by contrast, is fixed when the kernel modules are imported: @triton.jit reads it then.
"""
from __future__ import annotations

import os

import torch

from dataselect.errors import ConfigError

try:  # Triton is optional: a CPU-only install runs the torch references
    import triton
    import triton.language as tl
except ImportError:  # pragma: no cover - exercised only without triton
    triton = None
    tl = None

ENV_VAR = "DATASELECT_KERNELS"
BACKENDS = ("auto", "reference", "triton")


def _interpreter_on() -> bool:
    """Whether @triton.jit makes interpreted functions (the state the kernels below are defined in)."""
    if triton is None:
        return False
    knobs = getattr(triton, "knobs", None)  # triton >= 3.4; older releases read the variable directly
    if knobs is not None:
        return bool(knobs.runtime.interpret)
    return os.environ.get("TRITON_INTERPRET", "0").lower() in ("1", "true", "yes", "on", "y")


HAS_TRITON = triton is not None
# Every kernel module imports this module before it decorates its kernels, so this is their state.
INTERPRETER = _interpreter_on()


def backend() -> str:
    """The requested backend from DATASELECT_KERNELS (auto when unset or empty)."""
    value = os.environ.get(ENV_VAR, "").strip().lower() or "auto"
    if value not in BACKENDS:
        raise ConfigError(f"config error: {ENV_VAR}: {value!r} is not one of {', '.join(BACKENDS)}")
    return value


def use_triton(tensor: torch.Tensor, supported: bool = True) -> bool:
    """True when the Triton kernel should run on `tensor` (the input that sets the device).

    supported: whether the kernel handles this input at all (e.g. reweight's single-program size
    limit); an unsupported input runs the reference under every backend.
    """
    choice = backend()
    if choice == "reference" or not supported:
        return False
    if choice == "auto":
        return HAS_TRITON and tensor.is_cuda
    if not HAS_TRITON:
        raise ConfigError(f"config error: {ENV_VAR}: triton was asked for but does not import")
    if not tensor.is_cuda and not INTERPRETER:
        raise ConfigError(
            f"config error: {ENV_VAR}: triton on {tensor.device.type} tensors needs TRITON_INTERPRET=1 "
            "set before dataselect.kernels is imported"
        )
    return True


def describe() -> dict[str, object]:
    """What the dispatch would do here, for benchmark rows and logs."""
    return {
        "backend": backend(),
        "triton": getattr(triton, "__version__", None),
        "interpreter": INTERPRETER,
        "torch": torch.__version__,
    }
