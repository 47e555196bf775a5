"""Kernel tests take a device: the Triton interpreter on CPU tensors, and the compiled kernels on CUDA.

    pytest tests/kernels                         # CPU: every kernel under the interpreter; CUDA cases skip
    TRITON_INTERPRET=0 pytest tests/kernels      # GPU machine: the same tests on the compiled kernels

TRITON_INTERPRET must be set before a kernel module is imported (@triton.jit reads it when it decorates);
tests/conftest.py sets it to 1 unless the environment already says otherwise, so an explicit 0 wins.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

os.environ.setdefault("TRITON_INTERPRET", "1")

import pytest  # noqa: E402
import torch  # noqa: E402
from kernel_checks import POISON_INT  # noqa: E402

from dataselect.kernels import dispatch  # noqa: E402


@pytest.fixture(autouse=True)
def _dispatch_from_the_test(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test decides the kernel backend itself; a DATASELECT_KERNELS in the caller's shell does not leak in."""
    monkeypatch.delenv(dispatch.ENV_VAR, raising=False)


@pytest.fixture(params=["cpu", "cuda"])
def device(request: pytest.FixtureRequest) -> torch.device:
    """A device for the inputs; CUDA cases skip without a CUDA device."""
    if request.param == "cuda" and not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    return torch.device(request.param)


@pytest.fixture
def kernel_device(device: torch.device, monkeypatch: pytest.MonkeyPatch) -> torch.device:
    """`device`, with the dispatch forced to Triton: the interpreter on CPU, the compiled kernels on CUDA."""
    if not dispatch.HAS_TRITON:
        pytest.skip("triton is not installed")
    if device.type == "cpu" and not dispatch.INTERPRETER:
        pytest.skip("TRITON_INTERPRET=0: Triton runs on CPU tensors only under the interpreter")
    if device.type == "cuda" and dispatch.INTERPRETER:
        pytest.skip("TRITON_INTERPRET=1: run with TRITON_INTERPRET=0 to check the compiled kernels on CUDA")
    monkeypatch.setenv(dispatch.ENV_VAR, "triton")
    return device


@pytest.fixture
def poisoned(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make torch.empty return NaN (floats) or POISON_INT (integers) so a kernel that skips an output
    element fails the comparison instead of passing on whatever memory happened to be there."""
    real_empty = torch.empty

    def empty(*args, **kwargs):
        t = real_empty(*args, **kwargs)
        if t.is_floating_point():
            t.fill_(float("nan"))
        elif t.dtype != torch.bool:
            t.fill_(POISON_INT)
        return t

    monkeypatch.setattr(torch, "empty", empty)


_COMPILE_SCRIPT = textwrap.dedent(
    """
    import importlib, json, sys
    import triton
    from triton.backends.compiler import GPUTarget

    jobs = json.loads(sys.argv[1])
    for module, kernel, signature, constexprs, options in jobs:
        fn = getattr(importlib.import_module(module), kernel)
        # positional order matters; args given a value are constexpr (also how Triton specialises 1s)
        signature = {name: "constexpr" if name in constexprs else signature[name] for name in fn.arg_names}
        for arch in (80, 90):
            src = triton.compiler.ASTSource(fn=fn, signature=signature, constexprs=constexprs)
            triton.compile(src, target=GPUTarget("cuda", arch, 32), options=options)
    """
)


def _compile_for_gpu(module_file: str, jobs: list[tuple[str, dict, dict, dict]], tmp_path: Path) -> None:
    """Compile kernels to sm_80 and sm_90 cubins in a subprocess without the interpreter.

    The interpreter accepts code the real compiler rejects (type mismatches across loop iterations,
    scalar/vector mixes); Triton ships ptxas, so this check needs no GPU.
    jobs: (kernel name, {arg: type}, {constexpr: value}, launch options)
    """
    module = "dataselect.kernels." + Path(module_file).stem
    payload = [[module, name, sig, consts, opts] for name, sig, consts, opts in jobs]
    env = dict(os.environ, TRITON_INTERPRET="0", TRITON_CACHE_DIR=str(tmp_path / "triton-cache"))
    proc = subprocess.run(
        [sys.executable, "-c", _COMPILE_SCRIPT, json.dumps(payload)], env=env, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr[-4000:]


@pytest.fixture
def compile_for_gpu(tmp_path: Path):
    """compile_for_gpu(module_file, jobs): see _compile_for_gpu."""
    if not dispatch.HAS_TRITON:
        pytest.skip("triton is not installed")
    return lambda module_file, jobs: _compile_for_gpu(module_file, jobs, tmp_path)
