"""Kernel tests run every Triton kernel on CPU tensors under the Triton interpreter.

TRITON_INTERPRET must be set before a kernel module is imported: @triton.jit reads it when it decorates.
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

ROOT = Path(__file__).resolve().parents[2]



POISON_INT = -987654321


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
    import importlib.util, json, sys
    import triton
    from triton.backends.compiler import GPUTarget

    jobs = json.loads(sys.argv[1])
    modules = {}
    for path, kernel, signature, constexprs, options in jobs:
        if path not in modules:
            spec = importlib.util.spec_from_file_location("kernel_under_test_%d" % len(modules), path)
            modules[path] = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(modules[path])
        fn = getattr(modules[path], kernel)
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
    payload = [[str(ROOT / "kernels" / module_file), name, sig, consts, opts] for name, sig, consts, opts in jobs]
    env = dict(os.environ, TRITON_INTERPRET="0", TRITON_CACHE_DIR=str(tmp_path / "triton-cache"))
    proc = subprocess.run(
        [sys.executable, "-c", _COMPILE_SCRIPT, json.dumps(payload)], env=env, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr[-4000:]


@pytest.fixture
def compile_for_gpu(tmp_path: Path):
    """compile_for_gpu(module_file, jobs): see _compile_for_gpu."""
    return lambda module_file, jobs: _compile_for_gpu(module_file, jobs, tmp_path)
