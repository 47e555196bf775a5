"""One saved scorer through every host: the library call, `dataselect apply`, a datatrove pipeline, Ray Data,
`datasets` and NeMo Curator give the same scores (within 1e-6) and keep the same ids.

RDS+ and DSIR (reference features) are fitted by `dataselect run` on the first --docs records of the
instruction pool with GSM8K test as the target; each saved scorer then scores those records
  - library: dataselect.load_scorer(...).score / .keep(keep=--keep)
  - apply:   `dataselect apply --scorer ... --keep` (a subprocess), its scores.parquet and passing records
  - datatrove: LocalPipelineExecutor(tasks=2): JsonlReader -> ScorerFilter -> JsonlWriter (+ exclusion writer)
  - Ray Data: score_dataset(..., concurrency=2) on a local Ray instance (2 actors)
  - datasets: add_scores(Dataset, ...) (a batched map)
  - NeMo Curator: SavedScorerStage over two DocumentBatches (setup, process), where nemo-curator is installed
and the bench prints, per method and host, the largest score difference from the library call and whether
the kept ids are the library's.

    python -m bench.integrations_equality [--docs 3000] [--keep 0.1]
"""
from __future__ import annotations

import argparse
import gzip
import json
import os
import subprocess
import sys
from itertools import islice
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pyarrow.parquet as pq

from bench.common import SHARED_DATA, common_overrides, data_file, record, work_folder

os.environ.setdefault("HF_HUB_OFFLINE", "1")

FITS = {"rds": [], "dsir": ["method.name=dsir", "method.dsir.features=reference", "method.dsir.min_words=5"]}


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--pool", default=str(SHARED_DATA / "instruct_pool.jsonl.gz"))
    parser.add_argument("--target", default=str(SHARED_DATA / "targets" / "gsm8k_test.jsonl.gz"))
    parser.add_argument("--docs", type=int, default=3000)
    parser.add_argument("--keep", type=float, default=0.1, help="the cut every host applies: a fraction of the fitting run's pool")
    parser.add_argument("--keep-work", default=None, help="keep the work files in this folder")
    return parser.parse_args()


def first_records(path: Path, n: int) -> list[dict]:
    with gzip.open(path, "rt", encoding="utf-8") as handle:
        return [json.loads(line) for line in islice(handle, n)]


def jsonl_rows(path: Path) -> list[dict]:
    """The records of a JSON Lines file, split at newlines only (texts hold U+2028 and other line breaks that
    str.splitlines would cut at)."""
    with open(path, encoding="utf-8") as handle:
        return [json.loads(line) for line in handle if line.strip()]


def fit(method: str, pool: Path, target: Path, work: Path) -> Path:
    from dataselect.config import load_config
    from dataselect.pipeline import run

    overrides = common_overrides(pool, target, 300, [*FITS[method], f"output.dir={work / method}", f"runtime.cache_dir={work / 'cache'}"])
    result = run(load_config(None, dict(item.split("=", 1) for item in overrides)), quiet=True)
    return Path(result.output_dir) / "scorer"


def via_library(scorer: Path, records: list[dict], keep: float, work: Path) -> tuple[dict, list]:
    import dataselect

    with dataselect.load_scorer(scorer) as loaded:
        scores, mask = loaded.score(records), loaded.keep(records, keep=keep)
    return dict(zip([r["id"] for r in records], scores)), [r["id"] for r, passed in zip(records, mask) if passed]


def via_apply(scorer: Path, records: list[dict], keep: float, work: Path) -> tuple[dict, list]:
    source, out = work / "apply-in.jsonl", work / f"apply-out-{scorer.parent.name}"
    source.write_text("".join(json.dumps(r) + "\n" for r in records))
    subprocess.run([sys.executable, "-m", "dataselect.cli", "apply", "-q", "--scorer", str(scorer), "--input", str(source), "--output", str(out),
                    "--keep", str(keep), "--set", f"runtime.cache_dir={work / 'cache'}"], check=True)
    table = pq.read_table(out / "scores.parquet")
    passed = [row["id"] for path in sorted(out.glob("*.jsonl")) for row in jsonl_rows(path)]
    return dict(zip(table.column("id").to_pylist(), table.column("score").to_numpy())), passed


def via_datatrove(scorer: Path, records: list[dict], keep: float, work: Path) -> tuple[dict, list]:
    from datatrove.executor import LocalPipelineExecutor
    from datatrove.pipeline.readers import JsonlReader
    from datatrove.pipeline.writers import JsonlWriter

    from dataselect.integrations.datatrove import ScorerFilter

    folder = work / f"datatrove-{scorer.parent.name}"
    (folder / "in").mkdir(parents=True)
    half = len(records) // 2
    for name, part in (("a", records[:half]), ("b", records[half:])):  # a file per task
        (folder / "in" / f"{name}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in part))
    LocalPipelineExecutor([
        JsonlReader(str(folder / "in"), text_key="prompt", id_key="id"),
        ScorerFilter(scorer, keep=keep, text_key="prompt", exclusion_writer=JsonlWriter(str(folder / "dropped"), compression=None, expand_metadata=True)),
        JsonlWriter(str(folder / "kept"), compression=None, expand_metadata=True),
    ], tasks=2, workers=2, logging_dir=str(folder / "logs")).run()

    def rows(name: str) -> list[dict]:
        return [row for path in sorted((folder / name).glob("*.jsonl")) for row in jsonl_rows(path)]

    kept = rows("kept")
    return {row["id"]: row["score"] for row in kept + rows("dropped")}, [row["id"] for row in kept]


def via_ray_data(scorer: Path, records: list[dict], keep: float, work: Path) -> tuple[dict, list]:
    import ray

    from dataselect.integrations.ray_data import score_dataset

    dataset = ray.data.from_items(records, override_num_blocks=2)
    scored = score_dataset(dataset, scorer, concurrency=2, batch_size=512).take_all()
    kept = score_dataset(dataset, scorer, keep=keep, concurrency=2, batch_size=512).take_all()
    return {row["id"]: row["score"] for row in scored}, [row["id"] for row in kept]


def via_datasets(scorer: Path, records: list[dict], keep: float, work: Path) -> tuple[dict, list]:
    from datasets import Dataset

    from dataselect.integrations.hf_datasets import add_scores

    dataset = Dataset.from_list(records)
    scored = add_scores(dataset, scorer, batch_size=500)
    return dict(zip(scored["id"], scored["score"])), add_scores(dataset, scorer, keep=keep, batch_size=500)["id"]


def via_curator(scorer: Path, records: list[dict], keep: float, work: Path) -> tuple[dict, list]:
    import pyarrow as pa
    from nemo_curator.tasks import DocumentBatch

    from dataselect.integrations.curator import SavedScorerStage

    half = len(records) // 2
    batches = [DocumentBatch(dataset_name="pool", data=pa.Table.from_pylist(part)) for part in (records[:half], records[half:])]
    scores, kept = {}, []
    for cut, sink in ((None, scores), (keep, kept)):
        stage = SavedScorerStage(str(scorer), keep=cut)
        stage.setup()
        for batch in batches:
            table = stage.process(batch).to_pyarrow()
            if cut is None:
                sink.update(zip(table.column("id").to_pylist(), table.column("score").to_pylist()))
            else:
                sink.extend(table.column("id").to_pylist())
        stage.teardown()
    return scores, kept


HOSTS: dict[str, Callable[..., tuple[dict, list]]] = {"apply": via_apply, "datatrove": via_datatrove, "ray_data": via_ray_data,
                                                      "datasets": via_datasets, "curator": via_curator}


def compare(library: tuple[dict, list], got: tuple[dict, list]) -> dict[str, Any]:
    (expected, expected_kept), (scores, kept) = library, got
    missing = sorted(set(expected) - set(scores))
    nan_same = all(np.isnan(scores[i]) == np.isnan(expected[i]) for i in expected if i in scores)
    diffs = [abs(float(scores[i]) - float(expected[i])) for i in expected if i in scores and not np.isnan(expected[i])]
    return {"max_abs_diff": max(diffs, default=0.0), "missing": len(missing), "nan_same": nan_same,
            "same_kept_ids": sorted(kept) == sorted(expected_kept), "kept": len(kept)}


def main() -> dict | int:
    args = parse_args()
    import ray

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    results: dict[str, dict] = {}
    try:
        with work_folder("integrations-equality-", args.keep_work) as work:
            records = first_records(data_file(args.pool, "--pool"), args.docs)
            pool = work / "pool.jsonl"
            pool.write_text("".join(json.dumps(r) + "\n" for r in records))
            target = data_file(args.target, "--target")
            for method in FITS:
                scorer = fit(method, pool, target, work)
                library = via_library(scorer, records, args.keep, work)
                print(f"{method}: library call: {len(library[0]):,} scores, {len(library[1]):,} kept at keep {args.keep}", flush=True)
                for host, call in HOSTS.items():
                    try:
                        figures = compare(library, call(scorer, records, args.keep, work))
                    except ImportError as error:
                        figures = {"skipped": f"not installed: {error.name}"}
                    results[f"{method}/{host}"] = figures
                    print(f"  {host:10s} {figures}", flush=True)
    finally:
        ray.shutdown()
    met = all(f.get("same_kept_ids") and f["max_abs_diff"] <= 1e-6 and not f["missing"] and f["nan_same"] for f in results.values() if "skipped" not in f)
    print(f"\nevery host: the library call's scores within 1e-6 and its kept ids: {'yes' if met else 'NO'}")
    return {"docs": args.docs, "keep": args.keep, "hosts": results, "all_equal": met}


if __name__ == "__main__":
    sys.exit(record("integrations_equality", main))
