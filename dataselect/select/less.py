"""LESS (METHODS.md section 10): influence by gradient similarity to the target.

score:  a warm-up run of the proxy LM on a seeded 5% of the pool, with snapshots (scoring/warmup.py);
        the gradient stage (scoring/gradients.py) turns every pool sample into unit-norm projected
        Adam features and every target sample into unit-norm projected plain gradients, per snapshot
select: S = sum_i eta_i X_i V_i^T (eta: the snapshots' mean learning rates, renormalised to sum to 1);
        per target task the mean over its target samples (with method.less.subtask_field: the mean
        within each subtask, then the max over subtasks, as LESS's matching does); one task: top-K;
        several tasks (target.task_field): round-robin across tasks as in RDS+.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable, Iterator, Sequence

import numpy as np
import torch

from dataselect.errors import ConfigError
from dataselect.io.render import TextRenderer
from dataselect.scorer.base import Scorer, scorer_renderer
from dataselect.scoring.loop import ScoredSource
from dataselect.select.base import Declared, Excluded, Selection, selected_rows, target_tasks, task_counts, task_scores, top_k
from dataselect.select.figures import Bars, Curves, Figure, Table, seed_curves

HISTOGRAM_BINS = 30
POOL_TILE = 4096  # pool rows per influence tile


def checkpoint_weights(raw: Sequence[float]) -> np.ndarray:
    """LESS's checkpoint weights eta, renormalised to sum to 1. [C] -> [C] float64"""
    eta = np.asarray(raw, np.float64)
    if len(eta) == 0 or eta.sum() <= 0 or (eta < 0).any():
        raise ValueError(f"checkpoint weights must be non-negative with a positive sum, got {list(eta)}")
    return eta / eta.sum()


def influence(pool: torch.Tensor, target: torch.Tensor, eta: np.ndarray) -> torch.Tensor:
    """sum_i eta_i X_i V_i^T: pool [n, C, d], target [M, C, d] (unit rows), eta [C] -> [n, M] float32"""
    weights = torch.as_tensor(eta, dtype=torch.float32, device=pool.device)  # [C]
    return torch.einsum("ncd,mcd,c->nm", pool.float(), target.float(), weights)


def subtask_max_mean(sims: torch.Tensor, subtask: np.ndarray) -> torch.Tensor:
    """LESS's aggregation within one task: the mean over each subtask's targets, then the max over subtasks.
    sims [n, M], subtask [M] int (0..S-1) -> [n]"""
    groups = torch.as_tensor(subtask, dtype=torch.int64, device=sims.device)  # [M]
    count = int(groups.max()) + 1
    sums = torch.zeros((sims.shape[0], count), dtype=sims.dtype, device=sims.device).index_add_(1, groups, sims)  # [n, S]
    sizes = torch.bincount(groups, minlength=count).to(sims.dtype)  # [S]
    return (sums / sizes).amax(dim=1)


def task_influence(sims: torch.Tensor, task: np.ndarray, subtask: np.ndarray, num_tasks: int) -> torch.Tensor:
    """Per target task, subtask_max_mean over its targets. sims [n, M], task [M], subtask [M] -> [n, T]"""
    out = []
    for t in range(num_tasks):
        columns = np.flatnonzero(task == t)
        _, local = np.unique(subtask[columns], return_inverse=True)  # the task's subtasks as 0..S-1
        out.append(subtask_max_mean(sims[:, columns], local))
    return torch.stack(out, dim=1)


def store_features(store: Any) -> Iterator[np.ndarray]:
    """The gradient features of a store, shard by shard (memory-mapped): [n, C, d] float16 each."""
    for index in range(store.num_shards):
        yield store.read_array(index, "grads")


def influence_histogram(scores: np.ndarray, bins: int = HISTOGRAM_BINS) -> dict[str, list[float]]:
    """The pool's finite influence scores in `bins` equal-width bins: {"edges": [bins + 1], "counts": [bins]}."""
    finite = scores[np.isfinite(scores)]
    if len(finite) == 0:
        return {"edges": [], "counts": []}
    counts, edges = np.histogram(finite, bins=bins)
    return {"edges": [round(float(e), 6) for e in edges], "counts": [int(c) for c in counts]}


@dataclass
class Matcher:
    """The target side of the matching: features [M, C, d], each target's task and subtask, checkpoint weights eta [C]."""

    features: torch.Tensor
    task: np.ndarray
    subtask: np.ndarray
    eta: np.ndarray
    num_tasks: int

    def scores(self, blocks: Iterable[np.ndarray]) -> np.ndarray:
        """Per-task influence of feature blocks ([n, C, d] each) -> [N, T] float64, in block order."""
        parts = []
        for block in blocks:
            for start in range(0, len(block), POOL_TILE):
                sims = influence(torch.from_numpy(np.asarray(block[start : start + POOL_TILE], np.float32)), self.features, self.eta)  # [t, M]
                parts.append(task_influence(sims, self.task, self.subtask, self.num_tasks).double().numpy())
        return np.concatenate(parts) if parts else np.zeros((0, self.num_tasks))


class LessMethod(Declared):
    """`method.name: less`: LESS, pool samples ranked by the cosine of their projected, Adam-preconditioned gradients to the target's."""

    name = "less"
    description = "LESS: rank by cosine of Adam-preconditioned, projected per-sample gradients of a warm-up proxy LM to the target's (needs target.path)"
    needs_target = True

    def loads(self, config: Any) -> str | None:
        return "tokenizer"  # the warm-up proxy's

    def score(self, context: Any) -> dict[str, ScoredSource]:
        from dataselect.io.plan import iter_samples
        from dataselect.scoring.gradients import gradient_stage
        from dataselect.scoring.models import load_tokenizer, resolve_model_path
        from dataselect.scoring.warmup import load_warmup, warmup_for
        from dataselect.stats import SourceStats

        config = context.config
        if config.target.path is None:
            raise ConfigError(f"config error: target.path is required for method.name: {self.name}")
        tokenizer = load_tokenizer(resolve_model_path(config.model.name), config.model.trust_remote_code)
        renderer = TextRenderer(config.input, tokenizer)
        with context.stats.stage("warmup"):
            self.warmup = warmup_for(config, context.cache_root, lambda: iter_samples(config.input, renderer, SourceStats("pool")))
        _, checkpoints, self.warmup_losses = load_warmup(self.warmup.path)
        self.eta = checkpoint_weights([c.weight for c in checkpoints])
        self.gradient_size = int(sum(v.numel() for v in checkpoints[0].exp_avg.values()))  # P: the proxy's parameters
        self.renderer = renderer
        fields = {name: field for name, field in (("task", config.target.task_field), ("subtask", config.method.less.subtask_field)) if field}
        target_stage = gradient_stage(config, self.warmup, "sgd", config.target)
        self.projection_dtype = target_stage.dtype_choice["dtype"]  # resolved here; the saved scorer keeps it, not "auto"
        target = context.score_source("target", config.target, target_stage, TextRenderer(config.target, tokenizer), fields=fields or None)
        self.targets(config, target)
        scored = {"target": target}
        scored.update(self.score_pool(context, renderer))
        return scored

    def score_pool(self, context: Any, renderer: TextRenderer) -> dict[str, ScoredSource]:
        """The pool's gradient features (Quad overrides this to compute them only for the rows it draws)."""
        from dataselect.scoring.gradients import gradient_stage

        config = context.config
        return {"pool": context.score_source("pool", config.input, gradient_stage(config, self.warmup, "adam", config.input), renderer)}

    def targets(self, config: Any, target: ScoredSource) -> None:
        """The target's features [M, C, d] and each target sample's task and subtask, from its store (bad samples left out)."""
        store = target.store
        task_field, subtask_field = config.target.task_field, config.method.less.subtask_field
        names, task = target_tasks(store, "task" if task_field else None, task_field)
        subtask = np.zeros(len(task), np.int64)
        if subtask_field:
            labels = np.asarray(["" if v is None else str(v) for v in store.column("subtask").to_pylist()])
            subtask = np.unique(labels, return_inverse=True)[1]
        keep = np.array([e is None for e in store.column("error").to_pylist()], bool) if len(task) else np.zeros(0, bool)
        if not keep.any():
            raise ConfigError("config error: target.path: no target sample has tokens to score")
        features = torch.from_numpy(np.concatenate([np.asarray(f, np.float32) for f in store_features(store)])[keep])  # [M, C, d]
        self.task_names = [str(n) for n in names]
        self.matcher = Matcher(features, task[keep], subtask[keep], self.eta, len(self.task_names))
        self.task_sizes = {name: int((self.matcher.task == t).sum()) for t, name in enumerate(self.task_names)}
        empty = [name for name, size in self.task_sizes.items() if size == 0]
        if empty:
            raise ConfigError(f"config error: target.path: task(s) {empty} have no target sample with tokens to score")

    def pool_scores(self, pool: ScoredSource) -> tuple[np.ndarray, np.ndarray]:
        """(influence [N, T] float64, NaN for samples without a gradient; [N] bool: those samples)."""
        store = pool.store
        bad = np.array([e is not None for e in store.column("error").to_pylist()], bool)
        scores = self.matcher.scores(store_features(store))
        scores[bad] = np.nan
        return scores, bad

    def choose(self, context: Any, pool: ScoredSource, scores: np.ndarray, bad: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(chosen rows [K], proposing task [K], eligible [N]): top-K, or the round-robin for several tasks."""
        from dataselect.select.el2n import bad_scores
        from dataselect.select.rds import round_robin

        store = pool.store
        errors = store.column("error").to_pylist()
        bad_scores(errors, lambda row: store.take(np.array([row]), ["id"])["id"][0], context.config.input.on_error)
        eligible = context.eligible(pool, dedup=self.options(context).dedup, unscored=Excluded(bad, "without a gradient (nothing to score)"))
        k = context.budget(eligible)
        if scores.shape[1] == 1:
            return top_k(scores[:, 0], k, eligible), np.zeros(k, np.int64), eligible
        chosen, task = round_robin(scores, k, eligible)
        return chosen, task, eligible

    def options(self, context: Any) -> Any:
        return context.config.method.less

    def select(self, context: Any, scored: dict[str, ScoredSource]) -> Selection:
        pool = scored["pool"]
        scores, bad = self.pool_scores(pool)
        chosen, task, eligible = self.choose(context, pool, scores, bad)
        columns = {"n_tokens": pool.store.column("n_tokens").to_numpy()[chosen].astype(np.int64).tolist()}
        return self.selection(pool, scores, chosen, task, eligible, self.metrics(scores, bad), columns)

    def selection(self, pool: ScoredSource, scores: np.ndarray, chosen: np.ndarray, task: np.ndarray, eligible: np.ndarray,
                  metrics: dict[str, Any], columns: dict[str, list]) -> Selection:
        """The Selection of `chosen` rows of the pool store, with the method's own selection.parquet `columns`."""
        store = pool.store
        if len(self.task_names) > 1:
            columns["task"] = [self.task_names[t] for t in task]
        return Selection(**selected_rows(store, chosen), scores=scores[chosen, task], columns=columns, metrics=metrics,
                         scored=int(np.isfinite(scores[:, 0]).sum()), unique=int(eligible.sum()), **task_scores(scores, self.task_names))

    def metrics(self, scores: np.ndarray, bad: np.ndarray) -> dict[str, Any]:
        """The manifest's method metrics: the warm-up, the checkpoint weights, the influence histogram per task."""
        identity = self.warmup.identity
        return {
            "tasks": self.task_sizes,
            "score": "sum_i eta_i cos(Adam feature_i(x), gradient_i(target)), mean over a task's targets (max over subtasks)",
            "warmup": {**identity["proxy"], "seed": identity["seeds"][0], "sample_size": identity["sample_size"],
                       "checkpoints": identity["checkpoints"]},
            "checkpoint_weights": [round(float(e), 6) for e in self.eta],
            "gradient_size": self.gradient_size,
            "projection_dim": int(self.matcher.features.shape[2]),
            "warmup_training_loss": [[round(v, 5) for v in curve] for curve in self.warmup_losses],
            "unscored_bad": int(bad.sum()),
            "influence_histogram": {name: influence_histogram(scores[:, t]) for t, name in enumerate(self.task_names)},
        }

    def figures(self, selection: Selection) -> list[Figure]:
        metrics = selection.metrics
        out = task_counts(selection)
        weights = metrics.get("checkpoint_weights") or []
        if weights:
            out.append(Table(["checkpoint", "weight"], [[i + 1, w] for i, w in enumerate(weights)]))
        for name, hist in (metrics.get("influence_histogram") or {}).items():
            edges, counts = hist.get("edges") or [], hist.get("counts") or []
            if counts:
                centres = [f"{(a + b) / 2:.3g}" for a, b in zip(edges[:-1], edges[1:])]
                out.append(Bars(centres, counts, f"influence on task {name}", "influence (bin centre)", "pool samples",
                                "The pool's influence scores (checkpoint-weighted cosine to the task's target gradients) in "
                                f"{len(counts)} equal-width bins."))
        curves = seed_curves(metrics.get("warmup_training_loss") or [], "warm-up")
        if curves:
            out.append(Curves(curves, "warm-up run: training loss", "step", "loss", "The warm-up proxy's training loss per step; "
                              "the gradient features are taken at its checkpoints."))
        return out

    def saved_scorer(self, context: Any, folder: Any, selection: Selection) -> None:
        """The warm-up snapshots (weights and Adam moments, one safetensors file each), the reduced vocabulary, the
        target's features with their tasks, and the settings the gradient stage ran with."""
        from dataselect.scorer.base import portable_name, render_fields, save_scorer
        from dataselect.scoring.warmup import load_warmup

        config, options = context.config, context.config.method.less
        id_map, checkpoints, _ = load_warmup(self.warmup.path)
        weights = {}
        for i, point in enumerate(checkpoints):
            for part, tensors in (("state", point.state), ("exp_avg", point.exp_avg), ("exp_avg_sq", point.exp_avg_sq)):
                weights[f"{part}-{i}"] = {key: value.numpy() for key, value in tensors.items()}
        description = {"render": render_fields(config.input, self.renderer.conversation_style), "tokenizer": portable_name(config.model.name),
                       "less": {"proxy": options.proxy.model_dump(mode="json"), "dim": options.dim, "projection_seed": options.projection_seed,
                                "projection_dtype": self.projection_dtype, "batch_tokens": options.batch_tokens,
                                "batch_samples": options.batch_samples, "checkpoints": len(checkpoints)}}
        arrays = {"id_map": id_map, "target_features": self.matcher.features.numpy(), "task_of_target": self.matcher.task.astype(np.int64),
                  "subtask_of_target": self.matcher.subtask.astype(np.int64), "eta": self.eta}
        save_scorer(folder, context, selection, self.task_names, description, arrays, weights)


class LessScorer(Scorer):
    """LESS reloaded: a record's Adam gradient features under the saved warm-up snapshots, matched to the saved
    target features (the run's numbers: float16 features, the same projection)."""

    method = "less"
    gpu = True

    def __init__(self, description: dict, arrays: dict[str, Any], folder: Any, device: str = "auto") -> None:
        super().__init__(description, arrays, folder)
        from dataselect.config import ProxyConfig, SourceConfig
        from dataselect.scoring.gradients import GradientStage
        from dataselect.scoring.warmup import Checkpoint

        options = description["less"]
        source = SourceConfig(**description["render"])
        self.stage = GradientStage(None, ProxyConfig(**options["proxy"]), description["tokenizer"], source, "adam", int(options["dim"]),  # type: ignore[arg-type]
                                   int(options["projection_seed"]), device, int(options["batch_tokens"]), int(options["batch_samples"]),
                                   options.get("projection_dtype", "float32"))  # the run's resolved dtype (scorers before it: float32)
        points = [Checkpoint(*({k: torch.from_numpy(np.array(v)) for k, v in arrays[f"{part}-{i}"].items()} for part in ("state", "exp_avg", "exp_avg_sq")),
                             weight=0.0, step=i) for i in range(int(options["checkpoints"]))]
        self.stage.load(np.asarray(arrays["id_map"], np.int64), points, device)
        self.renderer = scorer_renderer(description, description["tokenizer"])
        self.matcher = Matcher(torch.from_numpy(np.asarray(arrays["target_features"], np.float32)), np.asarray(arrays["task_of_target"], np.int64),
                               np.asarray(arrays["subtask_of_target"], np.int64), np.asarray(arrays["eta"], np.float64), len(self.tasks))

    def score_texts(self, texts: list[str], records: list[dict]) -> np.ndarray:
        prepared = self.stage._encoder.encode(texts, records)
        output = self.stage.score_prepared(prepared)
        scores = self.matcher.scores([output.arrays["grads"]])  # [n, T]
        scores[[p.error is not None for p in prepared]] = np.nan
        return scores

    def close(self) -> None:
        self.stage.close()


LessMethod.scorer_type = LessScorer
