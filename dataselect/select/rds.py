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

from dataselect.errors import ConfigError
from dataselect.io.render import TextRenderer
from dataselect.io.shards import ShardStore
from dataselect.scoring.embed import EmbedStage
from dataselect.scoring.loop import ScoredSource
from dataselect.scoring.models import describe_device
from dataselect.select.base import Selection, first_occurrences, selected_rows, target_tasks, top_k

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


def task_similarities(
    store: ShardStore, targets: np.ndarray, task_of_target: np.ndarray, aggregation: str, tile_rows: int, device: torch.device,
    progress: bool = False, topk: int = 1, temperature: float = 1.0,
) -> np.ndarray:
    """Aggregated cosine of every pool sample to each task's targets, one pool tile at a time.

    targets:        [Q, d] unit vectors
    task_of_target: [Q] int task index in 0..T-1
    returns:        [N, T] float32 (the [N, Q] matrix is never held)
    """
    num_tasks = int(task_of_target.max()) + 1
    order = np.argsort(task_of_target, kind="stable")  # each task's targets side by side
    bounds = np.searchsorted(task_of_target[order], np.arange(num_tasks + 1))  # task i: rows bounds[i]:bounds[i+1]
    target_tensor = torch.from_numpy(np.ascontiguousarray(targets[order], dtype=np.float32)).to(device)  # [Q, d]
    task_tensor = torch.from_numpy(np.ascontiguousarray(task_of_target[order])).to(device)  # [Q]
    counts = torch.bincount(task_tensor, minlength=num_tasks).to(torch.float32)  # [T]
    # many tasks under max/mean: one scatter over all targets, several times faster than a loop over tasks
    scatter = num_tasks > 1 and aggregation in ("max", "mean")
    blocks = []
    bar = tqdm(total=store.num_shards, desc="similarity", unit=" shards", disable=not progress)
    for _, embeddings in store.iter_shards(columns=["id"]):
        bar.update(1)
        for start in range(0, len(embeddings), tile_rows):
            pool_tile = torch.from_numpy(np.asarray(embeddings[start : start + tile_rows], dtype=np.float32)).to(device)  # [t, d]
            if scatter:
                reduce = "amax" if aggregation == "max" else "sum"
                per_task = torch.full((len(pool_tile), num_tasks), -torch.inf if aggregation == "max" else 0.0, device=device)  # [t, T]
                for q0 in range(0, len(target_tensor), TARGET_TILE):
                    sims = pool_tile @ target_tensor[q0 : q0 + TARGET_TILE].T  # [t, q]
                    index = task_tensor[q0 : q0 + TARGET_TILE].expand(len(pool_tile), -1)  # [t, q]
                    per_task = per_task.scatter_reduce(1, index, sims, reduce=reduce, include_self=True)
                if aggregation == "mean":
                    per_task = per_task / counts
            else:
                columns = []
                for task in range(num_tasks):
                    running = RunningAggregate(len(pool_tile), aggregation, topk, temperature, device)
                    for q0 in range(int(bounds[task]), int(bounds[task + 1]), TARGET_TILE):
                        running.add(pool_tile @ target_tensor[q0 : min(q0 + TARGET_TILE, int(bounds[task + 1]))].T)  # [t, q]
                    columns.append(running.result())
                per_task = torch.stack(columns, dim=1)  # [t, T]
            blocks.append(per_task.cpu().numpy())
    bar.close()
    return np.concatenate(blocks) if blocks else np.zeros((0, num_tasks), np.float32)


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


class RDSMethod:
    name = "rds"

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

        device = self.spec.device
        scores = task_similarities(pool.store, target_vectors, task_of_target.astype(np.int64), options.aggregation, options.tile_size, device,
                                    progress=config.runtime.progress, topk=options.topk, temperature=options.temperature)
        hashes = pool.store.column("text_hash").to_numpy()
        unique = first_occurrences(hashes) if options.dedup else np.ones(len(hashes), bool)
        eligible = unique & context.eligible(pool)
        k = config.method.budget_for(int(eligible.sum()))
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
            pool_scores=scores[:, 0] if len(task_names) == 1 else scores,
        )
