"""Helpers shared by the engine tests (imported as `support`; conftest.py holds the fixtures)."""
from __future__ import annotations

import json
import os
import select
import threading
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pyarrow as pa

import dataselect
from dataselect import pipeline
from dataselect.io.shards import ShardStore
from dataselect.stats import SourceStats

MINILM = "sentence-transformers/all-MiniLM-L6-v2"
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "special_tokens_map.json")
# waits end on their event (a file written, a process gone) however loaded the machine is; only a hung run reaches this
HANG_GUARD_S = 900


def wait_for(condition: Callable[[], bool], process: Any = None) -> None:
    """Wait until `condition()` holds (a file written, a count reached) or `process` (a Popen) has exited;
    fails only when neither happens within HANG_GUARD_S, a hang rather than a slow machine."""
    start = time.monotonic()
    while not condition() and (process is None or process.poll() is None):
        assert time.monotonic() - start < HANG_GUARD_S, "hung: the awaited event never came"
        time.sleep(0.01)


TESTS_DIR = Path(__file__).resolve().parent


def done_shards(cache: Path, kind: str = "embeddings") -> int:
    """Finished shards of every `kind` store under a cache folder."""
    return len(list(Path(cache).glob(f"{kind}/*/shard-*.done.json")))


class PausesAfter:
    """A run's executor that stops taking results once `shards` shards are finished under `cache`, and then
    writes `marker`: a test that waits for the marker kills the run mid-score however loaded the machine
    is (the shards already in flight may still finish; no more are sent)."""

    def __init__(self, executor: Any, cache: str, shards: int, marker: str) -> None:
        self.executor, self.cache, self.shards, self.marker = executor, cache, shards, marker

    def map(self, task: Any, specs: Any) -> Any:
        for result in self.executor.map(task, specs):
            yield result
            if done_shards(Path(self.cache)) >= self.shards:
                Path(self.marker).touch()
                threading.Event().wait()  # until the test kills this process

    def close(self) -> None:
        self.executor.close()

    def describe(self) -> dict:
        return self.executor.describe()


def script_env(**extra: str) -> dict[str, str]:
    """The environment of a test's script: this one, with the tests folder importable (`from support import ...`)."""
    path = os.pathsep.join(p for p in (str(TESTS_DIR), os.environ.get("PYTHONPATH", "")) if p)
    return {**os.environ, "PYTHONPATH": path, **extra}


class CountedPayload:
    """A stage's large state that writes its process id into `log` each time it is unpickled."""

    def __init__(self, log: str, size: int) -> None:
        self.log, self.data = log, bytes(size)

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        with open(self.log, "a") as handle:
            handle.write(f"{os.getpid()}\n")


def unpickled_by(log: str) -> list[str]:
    """The process ids that unpickled a CountedPayload logging to `log`, one per unpickle."""
    return Path(log).read_text().split() if Path(log).exists() else []


class HeavyStage:
    """The census stage holding `size` bytes of state; its first shard in a worker waits (on the log file)
    until `workers` processes have unpickled it, so that every worker takes shards."""

    kind = "samples"
    token_unit = "tokens"

    def __init__(self, log: str, size: int, workers: int) -> None:
        from dataselect.scoring.stage import Resources

        self.payload, self.workers, self.resources = CountedPayload(log, size), workers, Resources()

    def setup(self, device: str | None) -> None:
        pass

    def close(self) -> None:
        pass

    def identity(self) -> dict:
        return {"heavy": self.payload.log}

    def score(self, samples: list) -> Any:
        from dataselect.scoring.stage import ShardOutput

        wait_for(lambda: len(set(unpickled_by(self.payload.log))) >= self.workers)
        return ShardOutput()


def wait_for_exit(pids: list[int]) -> None:
    """Block until every process in `pids` (not necessarily children of this one) has exited, on their
    pidfds (woken by the exit itself, no polling), or fail after HANG_GUARD_S."""
    fds = []
    for pid in pids:
        try:
            fds.append(os.pidfd_open(pid))
        except ProcessLookupError:
            continue  # gone already
    try:
        pending = list(fds)
        while pending:
            ready, _, _ = select.select(pending, [], [], HANG_GUARD_S)
            assert ready, f"processes {pids} still running after {HANG_GUARD_S} s"
            pending = [fd for fd in pending if fd not in ready]
    finally:
        for fd in fds:
            os.close(fd)

MATH = [f"Sam has {a} apples and buys {b} more. How many apples does Sam have?" for a, b in [(3, 4), (7, 2), (5, 9), (12, 6), (8, 8), (21, 3)]]
OTHER = ["How do I bake bread at home?", "Write a poem about the sea.", "What is the capital of Peru?",
         "Explain how vaccines work.", "Suggest a name for a cat.", "How do I change a bike tyre?",
         "Translate 'good morning' into French.", "What causes rain?", "Recommend a science fiction novel.",
         "How can I improve my handwriting?", "Describe a sunset over the mountains.", "What is a prime number?"]


# topics with their own words, for methods that must find the one source holding a target's n-grams
TOPICS = {
    "math": "apples pears coins marbles buys gives sum total how many more each left altogether".split(),
    "cooking": "bake bread oven flour salt minutes stir sauce boil pan heat dough recipe taste".split(),
    "travel": "train city hotel ticket museum river walk map airport night street beach trip".split(),
    "code": "function return value list loop python error class string index file print array".split(),
}
COMMON = "the a of and to in is it that for on with as was at by this".split()


def topic_text(rng: np.random.Generator, topic: str, words: int) -> str:
    """`words` words drawn from a topic's vocabulary and the common words."""
    vocab = TOPICS[topic] + COMMON
    return " ".join(vocab[i] for i in rng.integers(len(vocab), size=words))


def write_jsonl(path: Path, rows: list) -> Path:
    """Rows may be dicts (written as JSON) or raw strings (written as they are, for malformed lines)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as handle:
        for row in rows:
            handle.write((row if isinstance(row, str) else json.dumps(row)) + "\n")
    return path


def run_shipped_config(tmp_path: Path, name: str, extra: dict | None = None):
    """configs/<name>.yaml on the demo pool and target, into tmp_path (no progress bars); `extra` overrides more keys."""
    root = Path(__file__).resolve().parents[1]
    overrides = {"input.path": str(root / "configs" / "demo" / "pool.jsonl"), "target.path": str(root / "configs" / "demo" / "target.jsonl"),
                 "output.dir": str(tmp_path / "out"), "runtime.cache_dir": str(tmp_path / "cache"), "runtime.progress": False, "output.show_top": 0,
                 **(extra or {})}
    return pipeline.run(dataselect.load_config(root / "configs" / f"{name}.yaml", overrides), quiet=True)


def base_overrides(tmp_path: Path, pool: Path, target: Path, **extra) -> dict:
    """An RDS run on small files with MiniLM, no workers or progress bars; `a__b=v` overrides `a.b`."""
    overrides = {
        "input.path": str(pool), "target.path": str(target),
        "model.name": MINILM, "method.name": "rds", "method.budget": 4,
        "output.dir": str(tmp_path / "out"), "runtime.cache_dir": str(tmp_path / "cache"),
        "runtime.num_workers": 0, "runtime.progress": False, "output.show_top": 0,
    }
    overrides.update({k.replace("__", "."): v for k, v in extra.items()})
    return overrides


# ---- the executor tests' shared cases: one pool, one config shape, the selection's bytes ----

EXECUTOR_METHODS = {
    "rds": {},
    "dsir-reference": {"method.name": "dsir", "method.dsir.features": "reference", "method.dsir.min_words": 3},
    "dsir-tokens": {"method.name": "dsir", "method.dsir.features": "tokens", "method.dsir.min_words": 3},
    "random": {"method.name": "random"},
    # the default model means: train the proxy causal LM (tiny here) on the pool, then score with it
    "el2n-proxy": {"method.name": "el2n", "model.name": "sentence-transformers/all-MiniLM-L6-v2", "method.el2n.proxy.steps": 3,
                   "method.el2n.proxy.seeds": 2, "method.el2n.proxy.hidden": 16, "method.el2n.proxy.heads": 2,
                   "method.el2n.proxy.layers": 1, "method.el2n.proxy.context": 16, "method.el2n.proxy.vocab": 64,
                   "method.el2n.proxy.batch_size": 4},
    "cluster": {"method.name": "cluster", "method.cluster.num_clusters": 4},
    # the prior: the tiny proxy trained on the pool; the conditional model: it fine-tuned on the target
    "color": {"method.name": "color", "model.name": "sentence-transformers/all-MiniLM-L6-v2", "method.color.proxy.steps": 3,
              "method.color.proxy.hidden": 16, "method.color.proxy.heads": 2, "method.color.proxy.layers": 1,
              "method.color.proxy.context": 16, "method.color.proxy.vocab": 64, "method.color.proxy.batch_size": 4,
              "method.color.finetune_steps": 3},
    # the warm-up proxy (tiny) trained on the pool; per-sample gradients of pool and target, projected
    "less": {"method.name": "less", "method.less.proxy.steps": 3, "method.less.proxy.sample": 1.0, "method.less.proxy.hidden": 16,
             "method.less.proxy.heads": 2, "method.less.proxy.layers": 1, "method.less.proxy.context": 16, "method.less.proxy.vocab": 64,
             "method.less.proxy.batch_size": 4, "method.less.dim": 128, "method.less.checkpoints": 2, "method.less.batch_samples": 3},
    # LESS's influence for the rows a UCB bandit over 4 k-means clusters draws
    "quad": {"method.name": "quad", "method.cluster.num_clusters": 4, "method.quad.probes": 2, "method.quad.clusters_per_round": 2,
             "method.quad.oversample": 1.0, "method.less.proxy.steps": 3, "method.less.proxy.sample": 1.0, "method.less.proxy.hidden": 16,
             "method.less.proxy.heads": 2, "method.less.proxy.layers": 1, "method.less.proxy.context": 16, "method.less.proxy.vocab": 64,
             "method.less.proxy.batch_size": 4, "method.less.dim": 128, "method.less.checkpoints": 2},
    "betr": {"method.name": "betr", "method.betr.sample": 0.6, "method.betr.positive_fraction": 0.25, "method.betr.num_buckets": 4096},
    "semdedup": {"method.name": "semdedup", "method.cluster.num_clusters": 4, "method.semdedup.eps": 0.2, "method.budget": 1.0},
}


def executor_pool(tmp_path: Path, copies: int = 3) -> tuple[Path, Path]:
    rows = [{"id": f"p{c}-{i}", "prompt": f"{t} (variant {c})", "response": f"Answer {i}."} for c in range(copies) for i, t in enumerate(MATH + OTHER)]
    target = [{"id": "t0", "prompt": "Lea has 4 pears and buys 5 more. How many pears?", "response": "9"}]
    return write_jsonl(tmp_path / "pool.jsonl", rows), write_jsonl(tmp_path / "target.jsonl", target)


def executor_config(tmp_path: Path, name: str, model: Path, pool: Path, target: Path, extra: dict) -> dataselect.Config:
    overrides = {
        "input.path": str(pool), "target.path": str(target), "model.name": str(model), "method.budget": 10,
        "output.dir": str(tmp_path / name / "out"), "runtime.cache_dir": str(tmp_path / name / "cache"),
        "runtime.shard_size": 7, "runtime.progress": False, "output.show_top": 0, **extra,
    }
    return dataselect.load_config(None, overrides)


def selection_bytes(tmp_path, name, executor, model, pool, target, extra) -> bytes:
    result = pipeline.run(executor_config(tmp_path, name, model, pool, target, extra), quiet=True, executor=executor)
    return (Path(result.output_dir) / "selection.parquet").read_bytes()
# ---- vectors for the index and cluster tests ----


def unit(rng, n, d):
    """n random unit vectors. -> [n, d] float32"""
    x = rng.standard_normal((n, d)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def blobs(rng, k, per, d, spread=0.02):
    """k well-separated unit-vector blobs of `per` points each, blob after blob. -> ([k*per, d], [k*per])"""
    centres = np.eye(d, dtype=np.float32)[:k]  # orthogonal directions
    x = np.repeat(centres, per, axis=0) + spread * rng.standard_normal((k * per, d)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True), np.repeat(np.arange(k), per)


def fill_vector_store(root, vectors, shard_size):
    """A ShardStore filled by hand, as the embedding stage would leave it (float16 per shard)."""
    store = ShardStore(root)
    starts = list(range(0, len(vectors), shard_size)) or [0]
    for index, start in enumerate(starts):
        block = vectors[start : start + shard_size]
        rows = range(start, start + len(block))
        meta = pa.table({"id": [f"s{i}" for i in rows], "position": np.array(rows, np.int64), "text_hash": np.array(rows, np.int64),
                         "preview": [f"text {i}" for i in rows]})
        store.write_shard(index, meta, SourceStats("pool"), {"emb": block.astype(np.float16)})
    store.complete(len(starts), {})
    return store


def source_samples(config, tokenizer=None, causal_lm=False):
    """(the source's samples as the score phase renders them, its SourceStats)."""
    from dataselect.io.plan import iter_samples
    from dataselect.io.render import TextRenderer
    from dataselect.stats import SourceStats

    stats = SourceStats("pool")
    return list(iter_samples(config, TextRenderer(config, tokenizer, causal_lm), stats)), stats
