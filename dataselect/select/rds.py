"""RDS+ (METHODS.md section 1): cosine similarity of pooled hidden states to a target set.

score:  pool and target embedded the same way (L2-normalised float16 shards, cached)
select: cosine in tiles -> aggregate over each task's target samples (max, mean, top-k mean, softmax)
        -> one task: top-K of the aggregate (path 2, exact row-max then top-k)
        -> several tasks (`target.task_field`): round-robin across tasks (path 3, "rrmax")
Exact-duplicate pool texts are collapsed (first occurrence kept) before ranking.
"""
from __future__ import annotations

import numpy as np
import torch
from tqdm import tqdm

from dataselect.config import SourceConfig
from dataselect.errors import ConfigError
from dataselect.io.render import TextRenderer
from dataselect.io.shards import ShardStore
from dataselect.scorer.base import Scorer, portable_model, render_fields, save_scorer
from dataselect.scoring.embed import Embedder, EmbedStage
from dataselect.scoring.loop import ScoredSource
from dataselect.scoring.models import describe_device
from dataselect.scoring.tokenize import encoder_for
from dataselect.select.base import Declared, Selection, first_occurrences, selected_rows, target_tasks, task_counts, task_scores, top_k
from dataselect.select.figures import Figure

TARGET_TILE = 16384  # target rows per similarity tile


class RunningAggregate:
    """One pool tile's aggregate over one task's targets, fed a target tile at a time (so the [t, Q]
    matrix is never held): `max`, `mean`, `topk_mean` (the mean of the `topk` largest) or `softmax`
    (the mean weighted by softmax(similarity / temperature): near max for a small temperature, near
    mean for a large one)."""

    def __init__(self, rows: int, aggregation: str, topk: int, temperature: float, device: torch.device) -> None:
        self.aggregation, self.topk, self.temperature = aggregation, topk, temperature
        self.count = 0
        self.best = torch.full((rows,), -torch.inf, device=device)  # [t] running max (max, softmax)
        self.total = torch.zeros(rows, device=device)  # [t] running sum (mean), or sum of weights (softmax)
        self.weighted = torch.zeros(rows, device=device)  # [t] softmax: sum of weight x similarity
        self.top = torch.empty((rows, 0), device=device)  # [t, <=k] topk_mean: the largest so far

    def add(self, sims: torch.Tensor) -> None:
        """sims: [t, q] cosine of the tile's pool rows to q more of the task's targets."""
        self.count += sims.shape[1]
        if self.aggregation == "max":
            self.best = torch.maximum(self.best, sims.amax(dim=1))
        elif self.aggregation == "mean":
            self.total += sims.sum(dim=1)
        elif self.aggregation == "topk_mean":
            joined = torch.cat([self.top, sims], dim=1)  # [t, k + q]
            self.top = joined.topk(min(self.topk, joined.shape[1]), dim=1).values
        else:  # softmax, in the log-sum-exp form: weights relative to the running max never overflow
            best = torch.maximum(self.best, sims.amax(dim=1))  # [t]
            rescale = torch.exp((self.best - best) / self.temperature)  # [t] (0 on the first tile)
            weights = torch.exp((sims - best[:, None]) / self.temperature)  # [t, q]
            self.total = self.total * rescale + weights.sum(dim=1)
            self.weighted = self.weighted * rescale + (weights * sims).sum(dim=1)
            self.best = best

    def result(self) -> torch.Tensor:
        """[t] the aggregate over every target added."""
        if self.aggregation == "max":
            return self.best
        if self.aggregation == "mean":
            return self.total / self.count
        if self.aggregation == "topk_mean":
            return self.top.mean(dim=1)
        return self.weighted / self.total


# pool rows in every similarity product: BLAS libraries choose a kernel by the call's shape, and kernels sum in
# different orders (an Intel Xeon's MKL gave a row other bits at 7 rows than at 21), so a fixed shape keeps a
# sample's cosine the same in a run's shard, a saved scorer's batch or any method.rds.tile_size
SIMILARITY_ROWS = 256


class TaskTargets:
    """A target set ready for similarity: its unit vectors on the device, each task's side by side, and
    the aggregation over a task's targets; `tile_scores` scores any [t, d] block of pool vectors."""

    def __init__(self, targets: np.ndarray, task_of_target: np.ndarray, aggregation: str, device: torch.device,
                 topk: int = 1, temperature: float = 1.0) -> None:
        """targets: [Q, d] unit vectors; task_of_target: [Q] int task index in 0..T-1."""
        self.num_tasks = int(task_of_target.max()) + 1
        self.aggregation, self.topk, self.temperature, self.device = aggregation, topk, temperature, device
        order = np.argsort(task_of_target, kind="stable")  # each task's targets side by side
        self.bounds = np.searchsorted(task_of_target[order], np.arange(self.num_tasks + 1))  # task i: rows bounds[i]:bounds[i+1]
        self.targets = torch.from_numpy(np.ascontiguousarray(targets[order], dtype=np.float32)).to(device)  # [Q, d]
        self.tasks = torch.from_numpy(np.ascontiguousarray(task_of_target[order])).to(device)  # [Q]
        self.counts = torch.bincount(self.tasks, minlength=self.num_tasks).to(torch.float32)  # [T]
        # many tasks under max/mean: one scatter over all targets, several times faster than a loop over tasks
        self.scatter = self.num_tasks > 1 and aggregation in ("max", "mean")

    def tile_scores(self, pool_tile: torch.Tensor) -> torch.Tensor:
        """[t, d] pool unit vectors -> [t, T] aggregated cosine to each task's targets."""
        if self.scatter:
            reduce = "amax" if self.aggregation == "max" else "sum"
            per_task = torch.full((len(pool_tile), self.num_tasks), -torch.inf if self.aggregation == "max" else 0.0, device=self.device)  # [t, T]
            for q0 in range(0, len(self.targets), TARGET_TILE):
                sims = pool_tile @ self.targets[q0 : q0 + TARGET_TILE].T  # [t, q]
                index = self.tasks[q0 : q0 + TARGET_TILE].expand(len(pool_tile), -1)  # [t, q]
                per_task = per_task.scatter_reduce(1, index, sims, reduce=reduce, include_self=True)
            return per_task / self.counts if self.aggregation == "mean" else per_task
        columns = []
        for task in range(self.num_tasks):
            running = RunningAggregate(len(pool_tile), self.aggregation, self.topk, self.temperature, self.device)
            end = int(self.bounds[task + 1])
            for q0 in range(int(self.bounds[task]), end, TARGET_TILE):
                running.add(pool_tile @ self.targets[q0 : min(q0 + TARGET_TILE, end)].T)  # [t, q]
            columns.append(running.result())
        return torch.stack(columns, dim=1)  # [t, T]

    def scores(self, vectors: np.ndarray, tile_rows: int) -> np.ndarray:
        """[n, d] pool unit vectors (any float dtype) -> [n, T] float32, up to `tile_rows` rows upcast at a time, each
        product on exactly SIMILARITY_ROWS rows (the last tile zero-padded), so no row's bits depend on its tile."""
        blocks = [np.zeros((0, self.num_tasks), np.float32)]
        step = max(SIMILARITY_ROWS, tile_rows - tile_rows % SIMILARITY_ROWS)
        for start in range(0, len(vectors), step):
            block = torch.from_numpy(np.asarray(vectors[start : start + step], dtype=np.float32)).to(self.device)  # [t, d]
            rows = len(block)
            padded = torch.nn.functional.pad(block, (0, 0, 0, -rows % SIMILARITY_ROWS))  # [t', d], t' a multiple of SIMILARITY_ROWS
            tiles = [self.tile_scores(tile) for tile in padded.split(SIMILARITY_ROWS)]  # each [SIMILARITY_ROWS, T]
            blocks.append(torch.cat(tiles)[:rows].cpu().numpy())
        return np.concatenate(blocks)


def task_similarities(
    store: ShardStore, targets: np.ndarray, task_of_target: np.ndarray, aggregation: str, tile_rows: int, device: torch.device,
    progress: bool = False, topk: int = 1, temperature: float = 1.0,
) -> np.ndarray:
    """Aggregated cosine of every pool sample to each task's targets, one pool tile at a time.

    targets:        [Q, d] unit vectors
    task_of_target: [Q] int task index in 0..T-1
    returns:        [N, T] float32 (the [N, Q] matrix is never held)
    """
    prepared = TaskTargets(targets, task_of_target, aggregation, device, topk, temperature)
    blocks = [np.zeros((0, prepared.num_tasks), np.float32)]
    bar = tqdm(total=store.num_shards, desc="similarity", unit=" shards", disable=not progress)
    for _, embeddings in store.iter_shards(columns=["id"]):
        bar.update(1)
        blocks.append(prepared.scores(embeddings, tile_rows))
    bar.close()
    return np.concatenate(blocks)


def round_robin(task_scores: np.ndarray, k: int, eligible: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Multi-task RDS+ (rrmax): tasks take turns in order, each popping its next-best sample; a sample
    already taken does not count for that turn. Stops at exactly k (or when every list is empty).

    task_scores: [N, T]; returns (chosen indices [k], proposing task [k])."""
    num_tasks = task_scores.shape[1]
    rankings = [top_k(task_scores[:, t], int(eligible.sum()), eligible) for t in range(num_tasks)]
    cursors = [0] * num_tasks
    taken: set[int] = set()
    chosen, tasks = [], []
    while len(chosen) < k and any(c < len(r) for c, r in zip(cursors, rankings)):
        for task in range(num_tasks):
            if len(chosen) == k:
                break
            if cursors[task] >= len(rankings[task]):
                continue  # this task's list ran out (the reference would raise here)
            item = int(rankings[task][cursors[task]])
            cursors[task] += 1
            if item not in taken:
                taken.add(item)
                chosen.append(item)
                tasks.append(task)
    return np.array(chosen, dtype=np.int64), np.array(tasks, dtype=np.int64)


class RDSMethod(Declared):
    """`method.name: rds`: RDS+, pool samples ranked by cosine similarity of pooled embeddings to the target."""
    name = "rds"
    description = "RDS+: rank the pool by cosine similarity of pooled embeddings to a target set (needs target.path and an embedding model)"
    needs_target = True

    def score(self, context) -> dict[str, ScoredSource]:
        config = context.config
        if config.target.path is None:
            raise ConfigError("config error: target.path is required for method.name: rds")
        with context.stats.stage("load_model"):
            stage = EmbedStage(config.model, config.runtime.device, config.runtime.batch_tokens)
        task_field = config.target.task_field
        renderers = {role: TextRenderer(getattr(config, role), stage.tokenizer, stage.spec.causal_lm) for role in ("input", "target")}
        pool = context.score_source("pool", config.input, stage, renderers["input"])
        target = context.score_source("target", config.target, stage, renderers["target"], fields={"task": task_field} if task_field else None)
        self.spec = stage.spec
        self.render = {role: renderer.conversation_style for role, renderer in renderers.items()}  # what `auto` became
        return {"pool": pool, "target": target}

    def select(self, context, scored: dict[str, ScoredSource]) -> Selection:
        config = context.config
        options = config.method.rds
        pool, target = scored["pool"], scored["target"]
        dim = int(self.spec.hf_config.hidden_size)
        target_vectors = np.concatenate([np.asarray(e, np.float32) for _, e in target.store.iter_shards(columns=["id"])] or [np.zeros((0, dim), np.float32)])
        if len(target_vectors) == 0:
            raise ConfigError("config error: target.path: the target set has no usable samples")
        task_names, task_of_target = target_tasks(target.store, "task" if config.target.task_field else None, config.target.task_field)

        self.fitted = {"target_embeddings": target_vectors.astype(np.float16), "task_of_target": task_of_target.astype(np.int64),
                       "tasks": [str(name) for name in task_names]}
        device = self.spec.device
        scores = task_similarities(pool.store, target_vectors, task_of_target.astype(np.int64), options.aggregation, options.tile_size, device,
                                    progress=config.runtime.progress, topk=options.topk, temperature=options.temperature)
        hashes = pool.store.column("text_hash").to_numpy()
        unique = first_occurrences(hashes) if options.dedup else np.ones(len(hashes), bool)
        eligible = context.eligible(pool, dedup=options.dedup)
        k = context.budget(eligible)
        columns: dict = {}
        if len(task_names) == 1:
            chosen = top_k(scores[:, 0], k, eligible)
            chosen_scores = scores[chosen, 0]
        else:
            chosen, tasks = round_robin(scores, k, eligible)
            chosen_scores = scores[chosen, tasks]
            columns["task"] = [str(task_names[t]) for t in tasks]

        return Selection(
            **selected_rows(pool.store, chosen),
            scores=chosen_scores.astype(np.float64),
            columns=columns,
            metrics={
                "pooling": self.spec.pooling,
                "render": self.render,
                "max_length": self.spec.max_length,
                "device": describe_device(device),
                # samples cut at max_length (RDS+ truncates, METHODS.md 1.5), from the stores: cache hits too
                "truncated": {role: int(s.store.column("truncated").to_numpy().sum()) for role, s in (("pool", pool), ("target", target))},
                "dtype": str(self.spec.dtype).removeprefix("torch."),
                "aggregation": options.aggregation,
                **({"topk": options.topk} if options.aggregation == "topk_mean" else {}),
                **({"temperature": options.temperature} if options.aggregation == "softmax" else {}),
                "tasks": {str(name): int((task_of_target == i).sum()) for i, name in enumerate(task_names)},
                "duplicates_collapsed": int(len(hashes) - unique.sum()),
            },
            scored=len(hashes),
            unique=int(unique.sum()),
            **task_scores(scores, [str(name) for name in task_names]),
        )

    def figures(self, selection: Selection) -> list[Figure]:
        return task_counts(selection)

    def saved_scorer(self, context, folder, selection: Selection) -> None:
        """The target's embeddings (float16, as stored) and how a sample becomes a score: model, rendering, aggregation."""
        config, options = context.config, context.config.method.rds
        fitted = self.fitted
        save_scorer(folder, context, selection, fitted["tasks"], {
            "model": portable_model(config.model, self.spec),
            "render": render_fields(config.input, self.render["input"]),
            "rds": {"aggregation": options.aggregation, "topk": options.topk, "temperature": options.temperature, "tile_size": options.tile_size},
        }, {"target_embeddings": fitted["target_embeddings"], "task_of_target": fitted["task_of_target"]})


class EmbeddingScorerBase(Scorer):
    """A saved scorer whose score starts from the run's pooled embedding of a record (rds, cluster): the
    model and rendering its description names, and `vectors`, rounded to float16 as the run's store keeps them."""

    gpu = True
    forward_type: type[Embedder] = Embedder  # what the forward returns per record (a subclass: a rater's logits)

    def __init__(self, description: dict, arrays: dict[str, np.ndarray], folder, device: str = "auto", batch_tokens: int = 16384) -> None:
        super().__init__(description, arrays, folder)
        from dataselect.config import ModelConfig

        self.embedder = self.forward_type.from_config(ModelConfig(**description["model"]), device)
        loaded = self.embedder.loaded
        self.renderer = TextRenderer(SourceConfig(**description["render"]), loaded.tokenizer)  # the style as the run resolved it
        self.encoder = encoder_for(loaded.tokenizer, loaded.max_length)
        self.batch_tokens = batch_tokens

    def forward_rows(self, texts: list[str]) -> np.ndarray:
        """[n, d] float32: the forward's row per text (a pooled unit vector, or a rater's logits)."""
        return self.embedder.embed_tokens(self.encoder(texts), self.batch_tokens)

    def vectors(self, texts: list[str]) -> np.ndarray:
        """[n, d] float16 unit vectors, as the run's store holds them."""
        return self.forward_rows(texts).astype(np.float16)

    def close(self) -> None:
        self.embedder.close()


class RDSScorer(EmbeddingScorerBase):
    """RDS+ reloaded: embed records with the run's model and rendering, round to float16 as the run's
    store did, and aggregate their cosine to the saved target embeddings per task."""

    method = "rds"

    def __init__(self, description: dict, arrays: dict[str, np.ndarray], folder, device: str = "auto", batch_tokens: int = 16384) -> None:
        super().__init__(description, arrays, folder, device, batch_tokens)
        options = description["rds"]
        self.tile_size = int(options["tile_size"])
        self.targets = TaskTargets(np.asarray(arrays["target_embeddings"], np.float32), np.asarray(arrays["task_of_target"], np.int64),
                                   options["aggregation"], self.embedder.device, int(options["topk"]), float(options["temperature"]))

    def score_texts(self, texts: list[str], records: list[dict]) -> np.ndarray:
        return self.targets.scores(self.vectors(texts), self.tile_size)  # [n, T]


RDSMethod.scorer_type = RDSScorer
