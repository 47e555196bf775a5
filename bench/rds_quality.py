"""RDS+ selection quality on held-out targets: this engine vs a plain sentence-transformers pipeline.

    python -m bench.rds_quality [--pool ../shared/data/instruct_pool.jsonl.gz] [--work runs/bench_rds_quality]
                                [--sources t0/ag_news,...,codealpaca,gsm8k] [--per-source 64] [--seed 0]
                                [--pool-limit N] [--renders default,plain,tulu] [--aggregations max,mean,...]
                                [--pipeline | --no-pipeline] [--set key=value ...]

Development targets come out of the pool itself: a seeded `--per-source` samples of each source in
`--sources` are removed from the pool and become that source's target task, so the right answer is
known: a good selection for a target ranks the rest of its own source first. (t0/samsum, sciq, trec,
xsum and quarel are left out of the defaults on purpose: they stay an independent check.)

Both sides score the same reduced pool against the same targets, with the same model
(all-MiniLM-L6-v2 by default):
- the engine, `dataselect.run` with `target.task_field: source`, once per `--renders` x `--aggregations`;
  its embeddings are cached under WORK/cache, so only the first run of a rendering embeds the pool
  (the manifest's cache line is printed: later runs must say "hit"). `default` is the engine with no
  render or aggregation set: what a user gets;
- the plain pipeline: sentence-transformers `encode` of prompt + "\\n\\n" + response for pool and
  targets (normalised), ranked by the max (and mean) cosine to each target task. Its vectors are
  stored under WORK/st, in parts, so a stopped run resumes and later runs do not embed again.

For each target task and configuration: precision@10 and @100 and R-precision (the share of the
target's own source among the top R pool samples, R = that source's size in the reduced pool), with
the same ranking for both sides (every pool row, ties to the earlier row). `--pool-limit N` keeps a
seeded N of the reduced pool (the held-out targets stay out): for trying the script, not for figures.
"""
from __future__ import annotations

import argparse
import gzip
import hashlib
import json
import os
import sys
import time
from collections import Counter
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import numpy as np

from bench.common import SHARED_DATA, data_file, record

DEFAULT_SOURCES = ["t0/ag_news", "t0/common_gen", "t0/cosmos_qa", "t0/paws_labeled_final", "t0/quoref", "t0/wiki_bio",
                   "codealpaca", "gsm8k"]
CHECK_SOURCES = {"t0/samsum", "t0/sciq", "t0/trec", "t0/xsum", "t0/quarel"}  # the independent check: never a development target
AGGREGATIONS = ["max", "mean", "topk_mean:2", "topk_mean:3", "topk_mean:4", "topk_mean:8", "topk_mean:16", "softmax:0.02", "softmax:0.05"]
PRECISION_AT = (10, 100)
ST_PART = 4096  # pool texts per stored part of the pipeline's embeddings


# ------------------------------------------------------------------------------------------------
# the data: targets held out of the pool
# ------------------------------------------------------------------------------------------------

def read_records(path: Path) -> list[dict]:
    with gzip.open(path, "rt", encoding="utf-8") if path.name.endswith(".gz") else open(path, encoding="utf-8") as handle:
        return [json.loads(line) for line in handle if line.strip()]


def hold_out(records: list[dict], sources: list[str], per_source: int, seed: int, pool_limit: int | None) -> tuple[list[dict], list[dict]]:
    """(reduced pool, targets): `per_source` seeded records of each source leave the pool; with
    `pool_limit`, a seeded `pool_limit` of the rest stay (in file order)."""
    rng = np.random.default_rng(seed)
    by_source: dict[str, list[int]] = {}
    for i, row in enumerate(records):
        by_source.setdefault(row["source"], []).append(i)
    held: list[int] = []
    for source in sources:
        if source not in by_source:
            sys.exit(f"error: --sources: no pool sample has source {source!r}")
        if len(by_source[source]) <= per_source:
            sys.exit(f"error: --per-source {per_source}: source {source!r} has only {len(by_source[source])} samples")
        held.extend(sorted(rng.choice(by_source[source], size=per_source, replace=False).tolist()))
    taken = set(held)
    rest = [i for i in range(len(records)) if i not in taken]
    if pool_limit is not None and pool_limit < len(rest):
        rest = sorted(rng.choice(rest, size=pool_limit, replace=False).tolist())
    return [records[i] for i in rest], [records[i] for i in held]


def write_if_changed(path: Path, records: list[dict]) -> Path:
    """Write JSONL unless the file already holds exactly this: its mtime is part of the engine's cache
    key, so an unchanged file must stay untouched for later runs to be cache hits."""
    text = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records).encode("utf-8")
    if not (path.is_file() and path.read_bytes() == text):
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_bytes(text)
        tmp.replace(path)
    return path


def plain_text(record: dict) -> str:
    """The plain pipeline's text: what a user writes without a chat template."""
    return record["prompt"] + "\n\n" + record["response"]


# ------------------------------------------------------------------------------------------------
# ranking quality (the same function for both sides)
# ------------------------------------------------------------------------------------------------

def quality(scores: np.ndarray, is_source: np.ndarray) -> dict[str, float]:
    """precision@k and R-precision of one target's scores [N] over the pool, is_source [N] bool."""
    from dataselect.select.base import top_k

    r = int(is_source.sum())
    ranked = top_k(scores.astype(np.float64), max(r, *PRECISION_AT))
    out = {f"p@{k}": float(is_source[ranked[:k]].mean()) for k in PRECISION_AT}
    out["r_precision"] = float(is_source[ranked[:r]].mean())
    return out


def aggregate(sims: np.ndarray, form: str) -> np.ndarray:
    """[N, q] cosines -> [N] scores, in numpy: the pipeline's max and mean, and the engine's other
    forms as a reference the engine's own figures are checked against."""
    name, _, value = form.partition(":")
    if name == "max":
        return sims.max(axis=1)
    if name == "mean":
        return sims.mean(axis=1)
    if name == "topk_mean":
        k = min(int(value), sims.shape[1])
        return -np.sort(-sims, axis=1)[:, :k].mean(axis=1)
    if name == "softmax":
        logits = sims / float(value)
        weights = np.exp(logits - logits.max(axis=1, keepdims=True))
        return (weights * sims).sum(axis=1) / weights.sum(axis=1)
    raise ValueError(f"unknown aggregation {form!r}")


# ------------------------------------------------------------------------------------------------
# the two sides
# ------------------------------------------------------------------------------------------------

def engine_overrides(form: str) -> list[str]:
    name, _, value = form.partition(":")
    extra = {"topk_mean": "method.rds.topk", "softmax": "method.rds.temperature"}
    return [f"method.rds.aggregation={name}"] + ([f"{extra[name]}={value}"] if value else [])


def run_engine(pool: Path, targets: Path, work: Path, render: str, form: str | None, extra: list[str]) -> tuple[np.ndarray, list[str], dict]:
    """One engine run: ([N, T] scores, one row per pool store row, in the pool file's order; task names; manifest)."""
    import dataselect
    from dataselect.io.shards import ShardStore

    label = f"{render}-{form or 'default'}".replace(":", "_")
    overrides = [
        f"input.path={pool}", "input.prompt_field=prompt", "input.response_field=response",
        f"target.path={targets}", "target.prompt_field=prompt", "target.response_field=response", "target.task_field=source",
        "method.name=rds", "method.budget=10", f"output.dir={work / 'out' / label}", f"runtime.cache_dir={work / 'cache'}",
    ]
    if render != "default":
        overrides += [f"input.render={render}", f"target.render={render}"]
    if form is not None:
        overrides += engine_overrides(form)
    result = dataselect.run(dataselect.load_config(None, overrides + extra), quiet=True)
    ids = ShardStore(Path(result.manifest["stages"]["pool"]["store"])).column("id").to_pylist()
    return np.asarray(result.scores, np.float32), ids, result.manifest


def st_embeddings(texts: list[str], folder: Path, model_path: str, batch_size: int) -> np.ndarray:
    """sentence-transformers `encode` of the texts [n, d] (normalised), stored in parts under `folder`."""
    from sentence_transformers import SentenceTransformer

    folder.mkdir(parents=True, exist_ok=True)
    model = None
    parts = []
    for number, start in enumerate(range(0, len(texts), ST_PART)):
        part = folder / f"part_{number:05d}.npy"
        if not part.exists():
            if model is None:
                model = SentenceTransformer(model_path, device="cpu")
            began = time.perf_counter()
            vectors = model.encode(texts[start : start + ST_PART], batch_size=batch_size, convert_to_numpy=True, normalize_embeddings=True)
            np.save(part.with_suffix(".tmp.npy"), vectors.astype(np.float32))
            part.with_suffix(".tmp.npy").replace(part)
            print(f"  sentence-transformers: {min(start + ST_PART, len(texts)):,}/{len(texts):,} texts "
                  f"({len(vectors) / (time.perf_counter() - began):.1f} texts/s)", flush=True)
        parts.append(np.load(part))
    return np.concatenate(parts)


def st_folder(work: Path, texts: list[str], model_path: str) -> Path:
    """WORK/st/<digest of the texts and model>: a stored pass is reused only for the same texts."""
    digest = hashlib.sha256()
    digest.update(model_path.encode())
    for text in texts:
        digest.update(hashlib.sha256(text.encode()).digest())
    return work / "st" / digest.hexdigest()[:16]


def run_pipeline(pool_records: list[dict], target_records: list[dict], work: Path, batch_size: int) -> tuple[np.ndarray, np.ndarray]:
    from dataselect.scoring.models import resolve_model_path

    model_path = resolve_model_path("sentence-transformers/all-MiniLM-L6-v2")
    pool_texts = [plain_text(r) for r in pool_records]
    target_texts = [plain_text(r) for r in target_records]
    targets = st_embeddings(target_texts, st_folder(work, target_texts, model_path), model_path, batch_size)
    pool = st_embeddings(pool_texts, st_folder(work, pool_texts, model_path), model_path, batch_size)
    return pool, targets


# ------------------------------------------------------------------------------------------------
# tables
# ------------------------------------------------------------------------------------------------

def short(source: str) -> str:
    return source.removeprefix("t0/")


def print_tables(rows: dict[str, dict[str, dict[str, float]]], sources: list[str], reference: str | None) -> None:
    """One markdown table per measure: configurations x targets, average, and the worst target's gap
    to the reference configuration (the plain pipeline's max)."""
    for measure in ("r_precision", *(f"p@{k}" for k in PRECISION_AT)):
        gap = reference is not None and measure == "r_precision"
        print(f"\n{measure}:\n")
        header = ["configuration", *map(short, sources), "average"] + (["worst gap to pipeline max"] if gap else [])
        print("| " + " | ".join(header) + " |")
        print("|" + "---|" * len(header))
        for label, per_target in rows.items():
            values = [per_target[s][measure] for s in sources]
            cells = [label, *(f"{v:.3f}" for v in values), f"**{np.mean(values):.3f}**"]
            if gap:
                cells.append(f"{min(v - rows[reference][s][measure] for v, s in zip(values, sources)):+.3f}")
            print("| " + " | ".join(cells) + " |")


def main() -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--pool", type=Path, default=SHARED_DATA / "instruct_pool.jsonl.gz")
    parser.add_argument("--work", type=Path, default=Path("runs/bench_rds_quality"), help="data, caches and outputs (kept)")
    parser.add_argument("--sources", default=",".join(DEFAULT_SOURCES))
    parser.add_argument("--per-source", type=int, default=64)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--pool-limit", type=int, default=None, help="keep a seeded N of the reduced pool (trial runs)")
    parser.add_argument("--renders", default="default,plain,tulu", help="engine renderings; 'default' sets none; empty: no engine runs")
    parser.add_argument("--aggregations", default=",".join(AGGREGATIONS), help="max, mean, topk_mean:K, softmax:T")
    parser.add_argument("--pipeline", action=argparse.BooleanOptionalAction, default=True, help="run the sentence-transformers side")
    parser.add_argument("--st-batch-size", type=int, default=32, help="sentence-transformers' default")
    parser.add_argument("--set", dest="overrides", action="append", default=[], help="extra engine config overrides")
    args = parser.parse_args()
    sources = [s for s in args.sources.split(",") if s]
    if CHECK_SOURCES & set(sources):
        sys.exit(f"error: --sources: {sorted(CHECK_SOURCES & set(sources))} are kept for the independent check")
    forms = [f for f in args.aggregations.split(",") if f]
    renders = [r for r in args.renders.split(",") if r]

    started = time.perf_counter()
    records = read_records(data_file(args.pool, "--pool"))
    pool_records, target_records = hold_out(records, sources, args.per_source, args.seed, args.pool_limit)
    tag = f"{args.pool_limit or 'full'}-seed{args.seed}-{hashlib.sha256(','.join(sources).encode()).hexdigest()[:8]}"
    pool = write_if_changed(args.work / "data" / f"pool-{tag}.jsonl", pool_records)
    targets = write_if_changed(args.work / "data" / f"targets-{tag}.jsonl", target_records)
    pool_source = np.array([r["source"] for r in pool_records])
    sizes = Counter(pool_source.tolist())
    print(f"pool {len(pool_records):,} samples ({pool}); targets {len(target_records)} ({args.per_source} of each of "
          f"{len(sources)} sources, seed {args.seed}); R per target: " + ", ".join(f"{short(s)} {sizes[s]}" for s in sources), flush=True)

    rows: dict[str, dict[str, dict[str, float]]] = {}
    reference_scores: dict[str, dict[str, np.ndarray]] = {}  # pipeline form -> target -> [N]
    if args.pipeline:
        began = time.perf_counter()
        pool_vectors, target_vectors = run_pipeline(pool_records, target_records, args.work, args.st_batch_size)
        target_source = np.array([r["source"] for r in target_records])
        for form in ("max", "mean", *(f for f in forms if f not in ("max", "mean"))):
            scores = {s: aggregate(pool_vectors @ target_vectors[target_source == s].T, form) for s in sources}
            reference_scores[form] = scores
            label = f"pipeline (sentence-transformers, plain, {form})"
            rows[label] = {s: quality(scores[s], pool_source == s) for s in sources}
        print(f"pipeline: {time.perf_counter() - began:.1f}s", flush=True)

    pool_ids = [str(r["id"]) for r in pool_records]
    dtypes: set[str] = set()  # what the engine's embedding stage ran in (the manifest's)
    for render in renders:
        for form in ([None] if render == "default" else forms):
            began = time.perf_counter()
            scores, ids, manifest = run_engine(pool, targets, args.work, render, form, args.overrides)
            tasks = list(manifest["method"]["tasks"])  # sorted task names: the score columns' order
            if ids != pool_ids or sorted(sources) != tasks:
                sys.exit(f"error: the engine's pool store ({len(ids):,} rows, tasks {tasks}) does not line up with the pool file")
            method = manifest["method"]
            setting = {"topk_mean": f":{method.get('topk')}", "softmax": f":{method.get('temperature')}"}.get(method["aggregation"], "")
            chosen = f"{method['render']['input']}, {method['aggregation']}{setting}"
            label = f"engine default ({chosen})" if render == "default" else f"engine {render}, {form}"
            rows[label] = {s: quality(scores[:, tasks.index(s)], pool_source == s) for s in sources}
            dtypes.add(manifest["stages"]["pool"].get("dtype", "?"))
            agreement = ""
            if render == "plain" and form in reference_scores:  # the engine's aggregation vs numpy's on the pipeline's vectors
                gap = max(float(np.abs(scores[:, tasks.index(s)] - reference_scores[form][s]).max()) for s in sources)
                agreement = f"; largest |engine - pipeline| score {gap:.4f}"
            print(f"{label}: {time.perf_counter() - began:.1f}s; cache {manifest['cache']}{agreement}", flush=True)

    reference = "pipeline (sentence-transformers, plain, max)" if args.pipeline else None
    print_tables(rows, sources, reference)
    (args.work / f"results-{tag}.json").write_text(json.dumps(rows, indent=1))
    wall = time.perf_counter() - started
    print(f"\nwall time {wall:.1f}s; load average {os.getloadavg()[0]:.2f} "
          f"{os.getloadavg()[1]:.2f} {os.getloadavg()[2]:.2f}")
    return figures(rows, sources, len(pool_records), wall, dtypes)


def figures(rows: dict[str, dict[str, dict[str, float]]], sources: list[str], pool_samples: int, wall: float, dtypes: set[str]) -> dict:
    """The row's figures: the first configuration's R-precision per target first (the table shows a row's
    first scalars), then every configuration's measures."""
    first = next(iter(rows.values()), {})
    out: dict = {f"r_precision.{short(s)}": round(first[s]["r_precision"], 4) for s in sources if s in first}
    out |= {"pool_samples": pool_samples, "engine_dtype": ",".join(sorted(dtypes)), "wall_s": round(wall, 1), "configurations": rows}
    return out


if __name__ == "__main__":
    sys.exit(record("rds_quality", main))
