"""CoLoR-Filter (METHODS.md section 7): conditional loss reduction between two small causal LMs.

score:  prior model = the proxy trained on a seeded sample of the pool (scoring/proxy.py), or
        model.name when it is a causal LM; conditional model = the prior fine-tuned on the target
        (scoring/finetune.py), one per target task; the loss stage scores every pool sample with
        the prior and with each conditional model (the prior's store does not depend on the target)
select: score = prior mean loss - conditional mean loss (the loss reduction the target brings);
        one task: top-K; several tasks (`target.task_field`): round-robin across tasks as in RDS+.
Masks are the loss stage's: for prompt/response samples only response tokens count.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from dataselect.errors import ConfigError, InputError
from dataselect.io.render import TextRenderer
from dataselect.scorer.base import Scorer, render_fields, save_scorer, scorer_renderer
from dataselect.scoring.loop import ScoredSource
from dataselect.select.base import Declared, Excluded, Selection, first_occurrences, selected_rows, target_tasks, task_counts, task_scores, top_k
from dataselect.select.el2n import bad_scores
from dataselect.select.figures import Curves, Figure, Table, seed_curves
from dataselect.select.rds import round_robin


def loss_reduction(prior_loss: np.ndarray, conditional_loss: np.ndarray) -> np.ndarray:
    """CoLoR-Filter's score: prior mean loss - conditional mean loss. [N], [N] or [N, T] -> same shape (NaN stays NaN)"""
    prior = np.asarray(prior_loss, np.float64)
    conditional = np.asarray(conditional_loss, np.float64)
    return (prior[:, None] if conditional.ndim == 2 else prior) - conditional


def _task_samples(samples: list[Any], task_field: str | None) -> dict[str, list[Any]]:
    """Target samples by task name (the labels target_tasks gives the target store: a missing field is "")."""
    if task_field is None:
        return {"target": samples}
    tasks: dict[str, list[Any]] = {}
    for sample in samples:
        value = sample.record.get(task_field)
        tasks.setdefault("" if value is None else str(value), []).append(sample)
    return tasks


class ColorMethod(Declared):
    """`method.name: color`: CoLoR-Filter, the loss drop from a prior causal LM to the one fine-tuned on the target."""
    name = "color"
    description = "CoLoR-Filter: rank by how much a small causal LM's loss drops once fine-tuned on the target (needs target.path)"
    needs_target = True

    def loads(self, config: Any) -> str | None:
        return "tokenizer"  # the proxy's (a causal LM model.name loads when the prior is scored)

    def score(self, context: Any) -> dict[str, ScoredSource]:
        from dataselect.config import ModelConfig
        from dataselect.io.plan import iter_samples
        from dataselect.scoring.finetune import finetune_causal_lm, finetune_proxies
        from dataselect.scoring.loss import LossStage, loss_stage_for
        from dataselect.scoring.models import load_tokenizer, resolve_model_path
        from dataselect.scoring.samples import SampleStage
        from dataselect.stats import SourceStats

        config = context.config
        options = config.method.color
        if config.target.path is None:
            raise ConfigError("config error: target.path is required for method.name: color")
        tokenizer = load_tokenizer(resolve_model_path(config.model.name), config.model.trust_remote_code)
        renderer = TextRenderer(config.input, tokenizer)
        target_renderer = TextRenderer(config.target, tokenizer)
        task_field = config.target.task_field
        target = context.score_source("target", config.target, SampleStage(), target_renderer, fields={"task": task_field} if task_field else None)
        names, _ = target_tasks(target.store, "task" if task_field else None, task_field)
        by_task = _task_samples(list(iter_samples(config.target, target_renderer, SourceStats("target"))), task_field)
        if not by_task:
            raise ConfigError("config error: target.path: the target set has no usable samples")

        with context.stats.stage("train_prior"):
            prior = loss_stage_for(config, context.cache_root, lambda: iter_samples(config.input, renderer, SourceStats("pool")),
                                   scorer=options.scorer, proxy=options.proxy)
        self.prior = prior.proxies
        self.task_names = [str(n) for n in names]
        self.task_sizes = {name: len(by_task.get(name, [])) for name in self.task_names}
        self.finetune_losses: dict[str, list[list[float]]] = {}
        conditional_stages = {}
        with context.stats.stage("finetune"):
            for name in self.task_names:
                if options.finetune_steps == 0:
                    conditional_stages[name] = prior  # conditional = prior: the same store, every score exactly 0
                    continue
                try:
                    if prior.proxies is not None:
                        trained = finetune_proxies(prior.proxies, by_task[name], tokenizer, config.target, options.proxy, options.finetune_steps,
                                                   options.finetune_lr, context.cache_root, config.runtime.progress, label=name)
                        conditional_stages[name] = LossStage(config.model, config.input, config.runtime.device, config.runtime.batch_tokens,
                                                             proxies=trained, proxy_config=options.proxy, tokenizer_name=config.model.name)
                        self.finetune_losses[name] = _losses(trained.path)
                    else:
                        folder, losses = finetune_causal_lm(config.model, config.runtime.device, by_task[name], config.target, options.proxy,
                                                            options.finetune_steps, options.finetune_lr, config.method.seed, context.cache_root,
                                                            config.runtime.progress, label=name)
                        fine_tuned = ModelConfig(name=folder, max_length=config.model.max_length, dtype=config.model.dtype,
                                                 trust_remote_code=config.model.trust_remote_code)
                        conditional_stages[name] = LossStage(fine_tuned, config.input, config.runtime.device, config.runtime.batch_tokens)
                        self.finetune_losses[name] = [losses]
                except ValueError as error:
                    raise InputError(f"input error: target.path: cannot fine-tune the conditional model on task {name!r}: {error}") from None

        self.stages, self.render_style = {"prior": prior, **conditional_stages}, renderer.conversation_style
        scored = {"pool": context.score_source("pool", config.input, prior, renderer), "target": target}
        for name, stage in conditional_stages.items():
            scored[self._conditional(name)] = context.score_source(self._conditional(name), config.input, stage, renderer)
        return scored

    def saved_scorer(self, context: Any, folder: Any, selection: Selection) -> None:
        """The prior and each task's conditional model (proxies' weights as safetensors, or causal LMs by name or
        path: a fine-tuned model.name lives in runtime.cache_dir) and how a record becomes its scored tokens."""
        from dataselect.scoring.loss import saved_loss_model

        config = context.config
        parts, arrays, weights = {}, {}, {}
        for number, (role, stage) in enumerate(self.stages.items()):
            name = "prior" if role == "prior" else f"conditional-{number - 1}"  # conditional-t: task t of `tasks`
            parts[name], more_arrays, more_weights = saved_loss_model(stage, name)
            arrays |= more_arrays
            weights |= more_weights
        description = {"render": render_fields(config.input, self.render_style), "batch_tokens": config.runtime.batch_tokens, "models": parts}
        save_scorer(folder, context, selection, self.task_names, description, arrays, weights)

    def _conditional(self, task: str) -> str:
        return "conditional" if len(self.task_names) == 1 else f"conditional:{task}"

    def select(self, context: Any, scored: dict[str, ScoredSource]) -> Selection:
        config = context.config
        options = config.method.color
        pool = scored["pool"]
        store = pool.store
        prior_loss = store.column("loss").to_numpy(zero_copy_only=False).astype(np.float64)  # [N]
        conditional = []
        for name in self.task_names:
            other = scored[self._conditional(name)].store
            if not other.column("id").equals(store.column("id")):
                raise RuntimeError("the prior's and the conditional model's stores hold different samples")
            conditional.append(other.column("loss").to_numpy(zero_copy_only=False).astype(np.float64))
        conditional_loss = np.stack(conditional, axis=1)  # [N, T]
        scores = loss_reduction(prior_loss, conditional_loss)  # [N, T]
        errors = store.column("error").to_pylist()
        bad = bad_scores(errors, lambda row: store.take(np.array([row]), ["id"])["id"][0], config.input.on_error)
        hashes = store.column("text_hash").to_numpy()
        unique = first_occurrences(hashes) if options.dedup else np.ones(len(hashes), bool)
        eligible = context.eligible(pool, dedup=options.dedup, unscored=Excluded(bad, "without a score (the model could not score them)"))
        k = context.budget(eligible)
        columns: dict[str, list] = {}
        if len(self.task_names) == 1:
            chosen, task = top_k(scores[:, 0], k, eligible), np.zeros(k, np.int64)
        else:
            chosen, task = round_robin(scores, k, eligible)
            columns["task"] = [self.task_names[t] for t in task]
        columns["prior_loss"] = prior_loss[chosen].tolist()
        columns["conditional_loss"] = conditional_loss[chosen, task].tolist()
        columns["n_tokens"] = store.column("n_tokens").to_numpy()[chosen].astype(np.int64).tolist()
        return Selection(**selected_rows(store, chosen), scores=scores[chosen, task], columns=columns,
                         metrics=self._metrics(scores, prior_loss, conditional_loss, chosen, task, bad, hashes, unique),
                         scored=int(np.isfinite(prior_loss).sum()), unique=int(eligible.sum()),
                         **task_scores(scores, self.task_names))

    def figures(self, selection: Selection) -> list[Figure]:
        metrics = selection.metrics
        tasks = metrics.get("color_tasks") or {}
        keys = ["selected", "conditional_mean_loss", "score_mean", "selected_min_score"]
        out = task_counts(selection)
        out.append(Table(["task", *keys], [[name, *(info.get(k) for k in keys)] for name, info in tasks.items()]))
        prior = seed_curves(metrics.get("prior_training_loss") or [], "prior")
        if prior:
            mean = metrics.get("prior_mean_loss")
            out.append(Curves(prior, "prior model: training loss", "step", "loss", "The prior proxy's training loss per step on its sample of "
                              f"the pool (prior mean loss on the pool {mean:.4g})." if mean is not None else "The prior proxy's training loss per step."))
        conditional = {name: curve for task, curves in (metrics.get("conditional_training_loss") or {}).items()
                       for name, curve in seed_curves(curves, task).items()}
        if conditional:
            out.append(Curves(conditional, "conditional model: fine-tuning loss on the target", "step", "loss",
                              "The prior fine-tuned on each target task: its training loss per step."))
        return out

    def _metrics(self, scores: np.ndarray, prior_loss: np.ndarray, conditional_loss: np.ndarray, chosen: np.ndarray, task: np.ndarray,
                 bad: np.ndarray, hashes: np.ndarray, unique: np.ndarray) -> dict[str, Any]:
        valid = np.isfinite(prior_loss)
        tasks = {}
        for t, name in enumerate(self.task_names):
            picked = scores[chosen[task == t], t]
            tasks[name] = {
                "selected": int((task == t).sum()),
                "conditional_mean_loss": float(conditional_loss[valid, t].mean()) if valid.any() else None,
                "score_mean": float(scores[valid, t].mean()) if valid.any() else None,
                "selected_min_score": float(picked.min()) if len(picked) else None,
            }
        metrics: dict[str, Any] = {
            "scorer": "proxy" if self.prior is not None else "model",
            "score": "prior_loss - conditional_loss",
            "prior_mean_loss": float(prior_loss[valid].mean()) if valid.any() else None,
            "tasks": self.task_sizes,  # target samples per task (the report's task table)
            "color_tasks": tasks,
            "unscored_bad": int(bad.sum()),
            "duplicates_collapsed": int(len(hashes) - unique.sum()),
        }
        if self.prior is not None:
            metrics["prior"] = {**self.prior.identity["proxy"], "training_seeds": self.prior.identity["seeds"],
                                "sample_size": self.prior.identity["sample_size"]}
            metrics["prior_training_loss"] = _losses(self.prior.path)
        metrics["conditional_training_loss"] = self.finetune_losses
        return metrics


def _losses(path: str) -> list[list[float]]:
    from dataselect.scoring.proxy import training_losses

    return [[round(v, 5) for v in curve] for curve in training_losses(path)]


class ColorScorer(Scorer):
    """CoLoR-Filter reloaded: a record's prior mean loss minus each task's conditional mean loss, both under
    the run's models (float32 losses, as the run's stores keep them)."""

    method = "color"
    gpu = True

    def __init__(self, description: dict, arrays: dict[str, Any], folder: Any, device: str = "auto", batch_tokens: int | None = None) -> None:
        super().__init__(description, arrays, folder)
        from dataselect.config import SourceConfig
        from dataselect.scoring.loss import loaded_loss_model

        source, batch = SourceConfig(**description["render"]), batch_tokens or int(description["batch_tokens"])
        names = ["prior", *(f"conditional-{t}" for t in range(len(self.tasks)))]
        self.models = [loaded_loss_model(description["models"][name], arrays, name, source, device, batch) for name in names]
        prior = description["models"]["prior"]
        self.renderer = scorer_renderer(description, prior.get("tokenizer") or prior["model"]["name"])

    def score_texts(self, texts: list[str], records: list[dict]) -> np.ndarray:
        from dataselect.scoring.loss import average_over_seeds, score_samples

        losses = [average_over_seeds(score_samples(encoder, scorers, texts, records)[2]) for encoder, scorers in self.models]  # each [n] float32
        return loss_reduction(losses[0], np.stack(losses[1:], axis=1))  # [n, T]


ColorMethod.scorer_type = ColorScorer
