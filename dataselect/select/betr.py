"""BETR (METHODS.md section 8): embed a sample, score it against the target, classify the rest.

score:  target embedded as RDS+ embeds it; a seeded sample of the pool (method.betr.sample, by a
        hash of each id: independent of sharding and batching) embedded the same way and
        featurised with a DSIR featuriser (scoring/sampled.py around the embedding and n-gram
        stages); RDS+ similarity of the sample to each task's targets (select/rds.py); the
        sample's top `positive_fraction` per task labelled positive; a logistic regression per task
        on the hashed n-gram features (scoring/logistic.py), fit on the sample minus a seeded
        held-out part; then the classifier stage scores every pool sample at n-gram speed
        (scoring/classify.py), shard by shard on the executor.
select: top-K of the classifier's logit; several tasks round-robin as in RDS+.
The manifest reports the classifier's held-out AUROC (against the labels) and Spearman correlation
(against the RDS+ scores) on the sample.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from dataselect.errors import ConfigError
from dataselect.io.render import TextRenderer
from dataselect.scorer.base import Scorer, portable_model, render_fields, save_scorer, scorer_renderer
from dataselect.scoring.logistic import LinearModel, auroc, fit_logistic, spearman
from dataselect.scoring.loop import ScoredSource
from dataselect.scoring.ngram import NgramFeatures
from dataselect.scoring.ngram_store import iter_features
from dataselect.select.base import Declared, Selection, selected_rows, target_tasks, task_counts, task_scores, top_k
from dataselect.select.figures import Bars, Figure, Table
from dataselect.select.rds import round_robin, task_similarities

AGREEMENT_BINS = 10  # the report's held-out agreement: RDS+ score by classifier-score decile
MIN_PER_CLASS = 2  # training rows each class needs, per task


def feature_rows(features: NgramFeatures, rows: np.ndarray) -> NgramFeatures:
    """The documents where rows ([n] bool) is set, in order."""
    rows = np.asarray(rows, bool)
    return NgramFeatures(np.asarray(features.unigrams)[np.repeat(rows, features.lengths)],
                         np.asarray(features.bigrams)[np.repeat(rows, features.n_bigrams)], features.lengths[rows], features.n_bigrams[rows])


def top_fraction_labels(scores: np.ndarray, usable: np.ndarray, fraction: float) -> np.ndarray:
    """[n, T] bool: per task, the ceil(fraction * usable) usable rows with the highest scores (ties: the earlier row)."""
    labels = np.zeros(scores.shape, bool)
    count = max(1, int(np.ceil(fraction * int(usable.sum()))))
    for t in range(scores.shape[1]):
        labels[top_k(scores[:, t], count, usable), t] = True
    return labels


def agreement_bins(classifier: np.ndarray, rds: np.ndarray, labels: np.ndarray, bins: int = AGREEMENT_BINS) -> list[dict[str, float]]:
    """Held-out rows in `bins` equal groups by classifier score (lowest first): mean RDS+ score and share positive."""
    order = np.lexsort((np.arange(len(classifier)), classifier))
    return [{"rds_mean": float(rds[part].mean()), "positive_share": float(labels[part].mean())}
            for part in np.array_split(order, min(bins, len(order))) if len(part)]


@dataclass
class Fit:
    """The classifier and what the manifest says about it."""

    model: LinearModel
    sample_scores: np.ndarray  # [n, T] RDS+ scores of the sample rows
    metrics: dict[str, Any]


class BETRMethod(Declared):
    """`method.name: betr`: RDS+ on a sample of the pool, learned by a linear model on hashed n-grams that scores the whole pool."""
    name = "betr"
    description = "BETR: RDS+ on a seeded sample of the pool, a logistic regression on hashed n-grams learns it and scores the whole pool (needs target.path)"
    needs_target = True

    def score(self, context: Any) -> dict[str, ScoredSource]:
        from dataselect.scoring import ngram
        from dataselect.scoring.classify import ClassifierStage
        from dataselect.scoring.embed import EmbedStage
        from dataselect.scoring.ngram_store import NgramStage
        from dataselect.scoring.sampled import SampledStage

        config = context.config
        options = config.method.betr
        if config.target.path is None:
            raise ConfigError("config error: target.path is required for method.name: betr")
        with context.stats.stage("load_model"):
            embed = EmbedStage(config.model, config.runtime.device, config.runtime.batch_tokens)
        with context.stats.stage("load_featurizer"):
            featurizer = ngram.make_featurizer(options, config.model.name, config.runtime.device)
        self.spec, self.featurizer = embed.spec, featurizer
        renderer = TextRenderer(config.input, embed.tokenizer)  # one rendering for embedding and features
        self.render_style = renderer.conversation_style
        task_field = config.target.task_field
        scored = {"target": context.score_source("target", config.target, embed, TextRenderer(config.target, embed.tokenizer),
                                                 fields={"task": task_field} if task_field else None)}
        limit = self._limit(context, renderer, scored)
        seed = config.method.seed
        scored["sample"] = context.score_source("sample", config.input, SampledStage(embed, seed, limit), renderer)
        scored["sample_ngrams"] = context.score_source("sample_ngrams", config.input, SampledStage(NgramStage(featurizer), seed, limit), renderer)
        with context.stats.stage("train_classifier"):
            self.fit = self.train(context, scored)
        scored["pool"] = context.score_source("pool", config.input, ClassifierStage(featurizer, self.fit.model), renderer)
        return scored

    def _limit(self, context: Any, renderer: TextRenderer, scored: dict[str, ScoredSource]) -> int:
        """The sample's key limit: a fraction's directly; a count's from a census of the pool's ids."""
        from dataselect.scoring.sampled import count_limit, fraction_limit, sample_keys
        from dataselect.scoring.samples import SampleStage

        config = context.config
        size = config.method.betr.sample
        if isinstance(size, float):
            return fraction_limit(size)
        scored["census"] = context.score_source("census", config.input, SampleStage(), renderer)
        ids = scored["census"].store.column("id").to_pylist()
        return count_limit(sample_keys(config.method.seed, ids), size)

    def train(self, context: Any, scored: dict[str, ScoredSource]) -> Fit:
        """RDS+ scores of the sample -> labels -> one logistic regression per task, and its held-out agreement."""
        from dataselect.scoring.sampled import fraction_limit, sample_keys

        config = context.config
        options = config.method.betr
        sample, sample_ngrams, target = scored["sample"], scored["sample_ngrams"], scored["target"]
        if not sample.store.column("id").equals(sample_ngrams.store.column("id")):
            raise RuntimeError("the sample's embedding and n-gram stores hold different samples")
        n = int(sample.store.rows().sum())
        dim = int(self.spec.hf_config.hidden_size)
        target_vectors = np.concatenate([np.asarray(e, np.float32) for _, e in target.store.iter_shards(columns=["id"])] or [np.zeros((0, dim), np.float32)])
        if len(target_vectors) == 0:
            raise ConfigError("config error: target.path: the target set has no usable samples")
        names, task_of_target = target_tasks(target.store, "task" if config.target.task_field else None, config.target.task_field)
        self.task_names = [str(name) for name in names]
        self.task_sizes = {str(name): int((task_of_target == i).sum()) for i, name in enumerate(names)}
        rds = config.method.rds
        sims = task_similarities(sample.store, target_vectors, task_of_target.astype(np.int64), rds.aggregation, rds.tile_size, self.spec.device,
                                 topk=rds.topk, temperature=rds.temperature)  # [n, T], RDS+'s own aggregation
        usable = context.eligible(sample)  # [n]
        ids = sample.store.column("id").to_pylist()
        held_out = sample_keys(config.method.seed, ids, salt="holdout") < np.uint64(fraction_limit(options.holdout))  # [n] holdout < 1
        train_rows, held_rows = usable & ~held_out, usable & held_out
        labels = top_fraction_labels(sims, usable, options.positive_fraction) if usable.any() else np.zeros(sims.shape, bool)  # [n, T]
        for t, name in enumerate(self.task_names):
            positives = int(labels[train_rows, t].sum())
            if min(positives, int(train_rows.sum()) - positives) < MIN_PER_CLASS:
                raise ConfigError(
                    f"config error: method.betr.sample: the sample's {int(train_rows.sum())} training rows (of {n} sampled) hold "
                    f"{positives} positive for task {name!r} (positive_fraction {options.positive_fraction}); each class needs "
                    f"{MIN_PER_CLASS} or more: sample more of the pool"
                )
        features = NgramFeatures.concat(list(iter_features(sample_ngrams.store)), np.dtype(np.int64))
        model = fit_logistic(feature_rows(features, train_rows), labels[train_rows], options.num_buckets, options.l2, options.max_iter)
        held_scores = model.decision(feature_rows(features, held_rows))  # [h, T]
        per_task = {}
        for t, name in enumerate(self.task_names):
            y, rds_scores = labels[held_rows, t], sims[held_rows, t]
            per_task[name] = {
                "positives": int(labels[usable, t].sum()),
                "label_threshold": float(sims[labels[:, t], t].min()),  # the lowest RDS+ score labelled positive
                "heldout_auroc": auroc(held_scores[:, t], y),
                "heldout_spearman": spearman(held_scores[:, t], rds_scores),
                "heldout_agreement": agreement_bins(held_scores[:, t], rds_scores, y) if len(y) else [],
                "lbfgs_evaluations": model.iterations[t],
                "final_objective": model.final_loss[t],
            }
        size = options.sample
        metrics = {
            "sample": {"requested": size, "sampled": n, "usable": int(usable.sum()), "train": int(train_rows.sum()), "heldout": int(held_rows.sum())},
            "classifier": {"model": "logistic regression (class-balanced, L2)", "features": self.featurizer.kind, "num_buckets": options.num_buckets,
                           "ngrams": options.ngrams, "l2": options.l2, "positive_fraction": options.positive_fraction, "digest": model.digest()},
            "betr_tasks": per_task,
        }
        return Fit(model, sims, metrics)

    def choose(self, context: Any, store: Any, scores: np.ndarray, scored: ScoredSource) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(chosen rows [K], proposing task [K], eligible [N]) of a store by scores [N, T]: unique, not target copies,
        then top-K (one task) or the round-robin."""
        eligible = context.eligible(scored, dedup=context.config.method.betr.dedup)
        k = context.budget(eligible)
        if scores.shape[1] == 1:
            return top_k(scores[:, 0], k, eligible), np.zeros(k, np.int64), eligible
        chosen, task = round_robin(scores, k, eligible)
        return chosen, task, eligible

    def pool_scores(self, store: Any) -> np.ndarray:
        """The classifier's logits of every pool row, from the pool store. -> [N, T] float64"""
        parts = [np.asarray(store.read_array(i, "betr"), np.float64) for i in range(store.num_shards)]
        return np.concatenate(parts) if parts else np.zeros((0, len(self.task_names)))

    def saved_scorer(self, context: Any, folder: Any, selection: Selection) -> None:
        """The classifier (weights [T, B], bias [T]) and the featuriser and rendering it reads records with."""
        from dataselect.scoring.ngram import featurizer_settings

        config, options = context.config, context.config.method.betr
        save_scorer(folder, context, selection, self.task_names, {
            "model": {"name": portable_model(config.model, self.spec)["name"]},  # its tokenizer: the featuriser's and the chat template's
            "render": render_fields(config.input, self.render_style),
            "betr": featurizer_settings(options, config.model.name),
        }, {"weights": self.fit.model.weights, "bias": self.fit.model.bias})

    def select(self, context: Any, scored: dict[str, ScoredSource]) -> Selection:
        pool = scored["pool"]
        store = pool.store
        scores = self.pool_scores(store)  # [N, T]
        chosen, task, eligible = self.choose(context, store, scores, pool)
        columns: dict[str, list] = {"length": store.column("length").to_numpy()[chosen].astype(np.int64).tolist()}
        if len(self.task_names) > 1:
            columns["task"] = [self.task_names[t] for t in task]
        device = {"embedding": str(self.spec.device), "features": str(getattr(self.featurizer, "device", "cpu"))}
        metrics = {"tasks": self.task_sizes, **self.fit.metrics, "device": device}
        return Selection(**selected_rows(store, chosen), scores=scores[chosen, task], columns=columns, metrics=metrics,
                         scored=len(scores), unique=int(eligible.sum()), **task_scores(scores, self.task_names))

    def figures(self, selection: Selection) -> list[Figure]:
        tasks = selection.metrics.get("betr_tasks") or {}
        keys = ["positives", "label_threshold", "heldout_auroc", "heldout_spearman", "lbfgs_evaluations"]
        out = task_counts(selection)
        out.append(Table(["task", *keys], [[name, *(info.get(k) for k in keys)] for name, info in tasks.items()]))
        for name, info in tasks.items():
            bins = info.get("heldout_agreement") or []
            if bins:
                out.append(Bars([str(i + 1) for i in range(len(bins))], [b["rds_mean"] for b in bins],
                                f"held-out sample, task {name}: RDS+ score by classifier decile", "classifier-score group (1 = lowest)", "mean RDS+ score",
                                f"The held-out part of the sample in {len(bins)} equal groups by the classifier's score; bars: the groups' mean RDS+ "
                                "score (rising left to right when the classifier agrees with RDS+). Share labelled positive per group: "
                                + ", ".join(f"{100 * b['positive_share']:.0f}%" for b in bins) + "."))
        return out


class BETRScorer(Scorer):
    """BETR reloaded: a record's classifier logit per task, from its hashed n-grams (no embedding)."""

    method = "betr"

    def __init__(self, description: dict, arrays: dict[str, np.ndarray], folder: Any, device: str = "cpu") -> None:
        super().__init__(description, arrays, folder)
        from dataselect.scoring.logistic import LinearModel
        from dataselect.scoring.ngram import featurizer_from_settings

        self.featurizer = featurizer_from_settings(description["betr"], device)
        self.renderer = scorer_renderer(description)
        self.model = LinearModel(np.asarray(arrays["weights"], np.float64), np.asarray(arrays["bias"], np.float64), [], [])

    def score_texts(self, texts: list[str], records: list[dict]) -> np.ndarray:
        return self.model.decision(self.featurizer.featurize(texts))  # [n, T]


BETRMethod.scorer_type = BETRScorer
