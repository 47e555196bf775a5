"""Quality raters (METHODS.md section 9): QuRating, FineWeb-Edu-style and DCLM-style, as `method.name: quality`.

score:  rater: model    the pool through a Hugging Face sequence-classification model (scoring/rater.py:
                        the embedding stage's batching and back-off, every head's logits stored)
        rater: trained  the pool's features (pooled embeddings, scoring/embed.py, or hashed n-grams,
                        scoring/ngram_store.py), and for labels: reference the target's too; a linear
                        head fit on the labelled rows (scoring/logistic.py): a logistic regression for
                        two-valued labels, ridge regression for numeric ones; a seeded part of the
                        labelled rows held out for the manifest's AUROC and Spearman; for labels:
                        pairs, a Bradley-Terry head fit to judged pairs of pool records (scoring/pairs.py)
select: a score per pool sample (the read-out, or the head's logit / value); samples below
        `threshold` kept out; then top-K (temperature 0) or Gumbel top-K on score / temperature (sampling
        without replacement, P proportional to exp(score / temperature), QuRating's); with `balance_by`
        each value of a field (or each k-means cluster of the pool's embeddings: `balance_by: clusters`,
        the cluster method's k-means) takes a quota of the budget in proportion to its share of the
        selectable pool; with `token_budget` the budget is in tokens (QuRating's prefix rule).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

import numpy as np

from dataselect.errors import ConfigError
from dataselect.io.render import TextRenderer
from dataselect.scorer.base import Scorer, portable_model, portable_name, render_fields, save_scorer, scorer_renderer
from dataselect.scoring.loop import ScoredSource
from dataselect.scoring.samples import WordCountStage
from dataselect.select.base import Declared, Excluded, Selection, selected_rows, top_k
from dataselect.select.dsir import gumbel_keys
from dataselect.select.figures import Bars, Figure, Table
from dataselect.select.rds import EmbeddingScorerBase

LABEL, GROUP, TOKENS = "quality_label", "quality_group", "quality_tokens"  # the pool store's copies of label_field, balance_by, token_field
CLUSTERS = "clusters"  # balance_by's value for k-means clusters of the pool's embeddings (not a record field)
MIN_PER_CLASS = 2  # training rows each class needs

# ------------------------------------------------------------------------------------------------
# pure functions: read-outs, labels, selection
# ------------------------------------------------------------------------------------------------


def int_score(score: np.ndarray | float) -> np.ndarray:
    """FineWeb-Edu's int_score: round(clip(score, 0, 5)), half to even as Python's round (2.5 -> 2). [n] -> [n] int64"""
    return np.round(np.clip(np.asarray(score, np.float64), 0.0, 5.0)).astype(np.int64)


def parse_labels(values: list[str | None], key: str = "label_field") -> tuple[np.ndarray, np.ndarray]:
    """(labelled [n] bool, value [n] float64) from the store's copies of a label field (text: "True", "0.5", ...);
    `key` names the config key in an error."""
    labelled = np.array([v is not None and v != "" for v in values], bool)
    numbers = np.full(len(values), np.nan)
    booleans = {"true": 1.0, "false": 0.0}  # a JSON boolean is copied into the store as "True" / "False"
    for row in np.flatnonzero(labelled):
        text = str(values[row]).strip()
        try:
            numbers[row] = booleans[text.lower()] if text.lower() in booleans else float(text)
        except ValueError:
            raise ConfigError(f"config error: method.quality.{key}: the value {text!r} is neither a number nor true/false") from None
    return labelled, numbers


def head_kind(requested: str, values: np.ndarray) -> str:
    """`auto`: a logistic regression when the labels take two values, else ridge regression."""
    if requested != "auto":
        return requested
    return "logistic" if len(np.unique(values)) <= 2 else "ridge"


def selection_keys(scores: np.ndarray, eligible: np.ndarray, temperature: float, normalize: bool, seed: int) -> np.ndarray:
    """Keys whose top-K is the selection: the scores themselves (temperature 0, top-K), else score / temperature
    (z-scored over the eligible rows first, with normalize) plus Gumbel(0, 1) noise drawn for every row in pool
    order: the top-K of these keys samples K rows without replacement with P proportional to exp(score / T). [N] -> [N]"""
    scores = np.asarray(scores, np.float64)
    if temperature == 0:
        return scores
    logits = scores
    if normalize and eligible.any():
        kept = scores[eligible]
        spread = float(kept.std())  # ddof 0, as QuRating's np.std
        logits = (scores - float(kept.mean())) / (spread if spread > 0 else 1.0)
    return gumbel_keys(logits / temperature, np.random.default_rng([seed, 24]))


def group_quotas(sizes: np.ndarray, k: int) -> np.ndarray:
    """Each group's share of k: floor(k * size / total) (QuRating's per-domain quota), the remainder one each to
    the groups with the largest fractional parts (ties: the earlier group), never more than a group holds. [G] -> [G]"""
    sizes = np.asarray(sizes, np.int64)
    total = int(sizes.sum())
    if total == 0:
        return np.zeros(len(sizes), np.int64)
    exact = k * sizes / total  # [G]
    quotas = np.minimum(np.floor(exact).astype(np.int64), sizes)
    order = np.lexsort((np.arange(len(sizes)), -(exact - np.floor(exact))))
    for g in order:
        if quotas.sum() >= k:
            break
        if quotas[g] < sizes[g]:
            quotas[g] += 1
    return quotas


def choose(keys: np.ndarray, k: int, eligible: np.ndarray, groups: np.ndarray | None = None) -> np.ndarray:
    """The k eligible rows with the highest keys, best first; with groups ([N] int, -1: none), each group's
    quota of k by its eligible share, then all of them in key order. -> [k] int64"""
    if groups is None:
        return top_k(keys, k, eligible)
    names = np.unique(groups[eligible])
    quotas = group_quotas(np.array([int((eligible & (groups == g)).sum()) for g in names]), k)
    return in_key_order(keys, [top_k(keys, int(q), eligible & (groups == g)) for g, q in zip(names, quotas)])


def take_tokens(keys: np.ndarray, tokens: np.ndarray, budget: float, eligible: np.ndarray) -> np.ndarray:
    """QuRating's token budget: the eligible rows in key order, best first, up to and including the one that
    brings their tokens to `budget` or more (all of them when they hold fewer). -> [m] int64"""
    order = top_k(keys, int(np.count_nonzero(eligible)), eligible)
    reached = int(np.searchsorted(np.cumsum(tokens[order]), budget))  # the first prefix whose total is >= budget
    return order[: reached + 1]


def choose_tokens(keys: np.ndarray, tokens: np.ndarray, budget: int, eligible: np.ndarray, groups: np.ndarray | None = None) -> np.ndarray:
    """take_tokens over the eligible rows; with groups, inside each group for its quota floor(T_d / T * budget)
    of tokens (T_d: its eligible tokens), then all of them in key order. -> [m] int64"""
    if groups is None:
        return take_tokens(keys, tokens, budget, eligible)
    names = np.unique(groups[eligible])
    held = np.array([float(tokens[eligible & (groups == g)].sum()) for g in names])  # [G] T_d
    quotas = np.floor(held / max(held.sum(), 1.0) * budget)  # [G] 9.4.14's per-domain quota
    return in_key_order(keys, [take_tokens(keys, tokens, q, eligible & (groups == g)) for g, q in zip(names, quotas) if q > 0])


def in_key_order(keys: np.ndarray, parts: list[np.ndarray]) -> np.ndarray:
    """The rows of every part, merged by key, best first. -> [m] int64"""
    picked = np.concatenate(parts or [np.zeros(0, np.int64)])
    return top_k(keys, len(picked), np.isin(np.arange(len(keys)), picked))


# ------------------------------------------------------------------------------------------------
# the method
# ------------------------------------------------------------------------------------------------


def ngram_options(options: Any) -> SimpleNamespace:
    """method.quality's n-gram keys as the DSIR featurisers read them."""
    return SimpleNamespace(features=options.ngram_features, num_buckets=options.num_buckets, ngrams=options.ngrams)


@dataclass
class TrainedRater:
    """The fitted head and what the manifest says about it."""

    model: Any  # scoring/logistic.py's LinearModel: weights [1, D], bias [1]
    kind: str  # logistic | ridge
    metrics: dict[str, Any]


class QualityMethod(Declared):
    """`method.name: quality`: a quality rater's scores (a model, or a head trained on embeddings or n-grams)."""
    name = "quality"
    description = ("Quality raters: a sequence-classification model's score (QuRating, FineWeb-Edu), or a linear head trained on "
                   "embeddings or hashed n-grams (DCLM); top-K, threshold or temperature sampling")

    def loads(self, config: Any) -> str | None:
        options = config.method.quality
        if options.rater == "trained" and options.features == "ngrams" and options.balance_by != CLUSTERS:  # clusters embed the pool
            return "tokenizer" if options.ngram_features == "tokens" else None
        return "model"

    def score(self, context: Any) -> dict[str, ScoredSource]:
        config = context.config
        options = self.options = config.method.quality
        self.budgeted = options.token_budget is None  # a token budget, not method.budget, sizes the selection (the manifest's budget line)
        fields = ({LABEL: options.label_field} if options.rater == "trained" and options.labels == "field" else {}) | (
            {GROUP: options.balance_by} if options.balance_by not in (None, CLUSTERS) else {}) | (
            {TOKENS: options.token_field} if options.token_field else {})
        reference = options.rater == "trained" and options.labels == "reference"
        if reference and config.target.path is None:
            raise ConfigError("config error: target.path is required for method.quality.labels: reference (the positives)")
        with context.stats.stage("load_model"):
            stage, renderers = self._stage(config)
        self.render_style = renderers["input"].conversation_style
        counted = options.token_budget is not None and options.token_field is None  # a token budget in whitespace words
        pool_stage = WordCountStage(stage) if counted else stage
        scored = {"pool": context.score_source("pool", config.input, pool_stage, renderers["input"], fields=fields or None)}
        if reference:
            scored["target"] = context.score_source("target", config.target, stage, renderers["target"])
        if options.balance_by == CLUSTERS and not (options.rater == "trained" and options.features == "embeddings"):
            from dataselect.scoring.embed import EmbedStage  # the clusters' vectors: model.name's pooled embeddings, cached as RDS+'s

            with context.stats.stage("load_model"):
                embed = EmbedStage(config.model, config.runtime.device, config.runtime.batch_tokens)
            scored["embeddings"] = context.score_source("embeddings", config.input, embed, TextRenderer(config.input, embed.tokenizer, embed.spec.causal_lm))
        if options.rater == "trained":
            with context.stats.stage("train_rater"):
                self.trained = self.train(context, scored)
        return scored

    def _stage(self, config: Any) -> tuple[Any, dict[str, TextRenderer]]:
        """The pool's score stage and each role's renderer."""
        options = config.method.quality
        runtime = config.runtime
        if options.rater == "trained" and options.features == "ngrams":
            from dataselect.scoring import ngram
            from dataselect.scoring.ngram_store import NgramStage

            self.featurizer = ngram.make_featurizer(ngram_options(options), config.model.name, runtime.device)
            return NgramStage(self.featurizer), {role: TextRenderer(getattr(config, role)) for role in ("input", "target")}
        if options.rater == "model":
            from dataselect.scoring.rater import RaterStage

            stage = RaterStage(config.model, runtime.device, runtime.batch_tokens, options.chunk_tokens)
        else:
            from dataselect.scoring.embed import EmbedStage

            stage = EmbedStage(config.model, runtime.device, runtime.batch_tokens)
        self.spec = stage.spec
        return stage, {role: TextRenderer(getattr(config, role), stage.tokenizer, stage.spec.causal_lm) for role in ("input", "target")}

    # ---- features of store rows ----

    def _features(self, store: Any, rows: np.ndarray) -> Any:
        """The chosen rows' ([n] int64, ascending) features: NgramFeatures, or [n, d] float32 vectors."""
        if self.options.features == "ngrams":
            from dataselect.scoring.ngram import NgramFeatures
            from dataselect.scoring.ngram_store import iter_features
            from dataselect.select.betr import feature_rows

            features = NgramFeatures.concat(list(iter_features(store)), np.dtype(np.int64))
            mask = np.zeros(len(features), bool)
            mask[rows] = True
            return feature_rows(features, mask)
        return self._vectors(store)[rows]

    def _vectors(self, store: Any) -> np.ndarray:
        """[N, d] float32: the store's pooled vectors (float16 on disk)."""
        dim = int(self.spec.hf_config.hidden_size)
        return np.concatenate([np.asarray(e, np.float32) for _, e in store.iter_shards(columns=["id"])] or [np.zeros((0, dim), np.float32)])

    def train(self, context: Any, scored: dict[str, ScoredSource]) -> TrainedRater:
        """Labels -> a seeded held-out split -> the head -> its held-out AUROC / Spearman."""
        from dataselect.scoring.logistic import auroc, fit_logistic, fit_logistic_dense, fit_ridge, spearman
        from dataselect.scoring.sampled import count_limit, fraction_limit, sample_keys

        config = context.config
        options, seed = config.method.quality, config.method.seed
        pool = scored["pool"].store
        pool_ids = pool.column("id").to_pylist()
        if options.labels == "pairs":
            return self.train_pairs(pool, pool_ids, options, seed)
        if options.labels == "field":
            labelled, values = parse_labels(pool.column(LABEL).to_pylist())
            if not labelled.any():
                raise ConfigError(f"config error: method.quality.label_field: no pool record has a field {options.label_field!r}")
            rows = np.flatnonzero(labelled)
            ids, y = [pool_ids[r] for r in rows], values[rows]
            x = self._features(pool, rows)
            label_counts = {"labelled": int(labelled.sum()), "unlabelled": int((~labelled).sum())}
        else:
            target = scored["target"].store
            positives = int(target.rows().sum())
            if positives == 0:
                raise ConfigError("config error: target.path: the reference set has no usable samples")
            keys = sample_keys(seed, pool_ids, salt="negatives")  # [N] the seeded pool sample: the smallest keys
            count = math.ceil(options.negatives * positives)
            negatives = np.arange(len(keys)) if count >= len(keys) else np.flatnonzero(keys < np.uint64(count_limit(keys, count)))
            ids = target.column("id").to_pylist() + [pool_ids[r] for r in negatives]
            y = np.r_[np.ones(positives), np.zeros(len(negatives))]
            x = self._join(self._features(target, np.arange(positives)), self._features(pool, negatives))
            label_counts = {"positives": positives, "negatives": int(len(negatives))}
        kind = head_kind(options.head, y)
        if kind == "logistic":
            classes = np.unique(y)
            if len(classes) != 2:
                raise ConfigError(f"config error: method.quality.label_field: a logistic head needs two label values, found {classes.tolist()}")
            y = (y == classes[1]).astype(np.float64)  # the larger value is the positive class
        elif options.features == "ngrams":
            raise ConfigError("config error: method.quality.features: ngrams trains a classifier; numeric labels need features: embeddings (or head: logistic)")
        held = sample_keys(seed, ids, salt="holdout") < np.uint64(fraction_limit(options.holdout))  # [n]
        train_rows = ~held
        if kind == "logistic" and min(int(y[train_rows].sum()), int((1 - y[train_rows]).sum())) < MIN_PER_CLASS:
            raise ConfigError(f"config error: method.quality: the {int(train_rows.sum())} training rows hold fewer than {MIN_PER_CLASS} "
                              "of a class; label more samples (or lower method.quality.holdout)")
        if options.features == "ngrams":
            from dataselect.select.betr import feature_rows

            model = fit_logistic(feature_rows(x, train_rows), y[train_rows, None] > 0, options.num_buckets, options.l2, options.max_iter)
            held_scores = model.decision(feature_rows(x, held))[:, 0]
        else:
            model = (fit_logistic_dense(x[train_rows], y[train_rows, None] > 0, options.l2, options.max_iter) if kind == "logistic"
                     else fit_ridge(x[train_rows], y[train_rows], options.l2))
            held_scores = model.project(x[held])[:, 0]
        binary = len(np.unique(y)) == 2
        metrics = {"head": kind, "features": options.features, "labels": options.labels, **label_counts,
                   "train": int(train_rows.sum()), "heldout": int(held.sum()),
                   "heldout_auroc": auroc(held_scores, y[held] == y.max()) if binary else None,
                   "heldout_spearman": spearman(held_scores, y[held]), "digest": model.digest()}
        return TrainedRater(model, kind, metrics)

    def train_pairs(self, pool: Any, pool_ids: list[str], options: Any, seed: int) -> TrainedRater:
        """QuRating's rater: a linear scorer whose score differences fit the judged pairs' calibrated labels
        (Bradley-Terry), the confident pairs only; a seeded part of them held out for the pairwise accuracy."""
        from dataselect.scoring.logistic import auroc, fit_pairs, fit_pairs_dense
        from dataselect.scoring.pairs import confident, read_judgements
        from dataselect.scoring.sampled import fraction_limit, sample_keys

        judged = read_judgements(options.pairs_path)
        row_of: dict[str, int] = {}
        for row, sample_id in enumerate(pool_ids):
            row_of.setdefault(sample_id, row)  # an id's first record
        missing = sorted({i for i in judged.first + judged.second if i not in row_of})
        if missing:
            raise ConfigError(f"config error: method.quality.pairs_path: {len(missing)} judged ids are not pool records' ids (the first: "
                              f"{missing[0]!r}); the judged texts must be pool records")
        kept = confident(judged.labels, options.confidence)  # [p]
        if not kept.any():
            raise ConfigError(f"config error: method.quality.confidence: none of the {len(judged.labels)} judged pairs is confident enough "
                              f"(|y - 0.5| >= {options.confidence / 2:g}); lower it")
        pair_rows = np.array([[row_of[a], row_of[b]] for a, b in zip(judged.first, judged.second)], np.int64).reshape(-1, 2)[kept]  # [p, 2]
        y = judged.labels[kept]
        docs = np.unique(pair_rows)  # the judged rows, ascending
        first, second = np.searchsorted(docs, pair_rows[:, 0]), np.searchsorted(docs, pair_rows[:, 1])  # [p] into docs
        names = [f"{pool_ids[a]}\t{pool_ids[b]}" for a, b in pair_rows]
        held = sample_keys(seed, names, salt="holdout") < np.uint64(fraction_limit(options.holdout))  # [p]
        if held.all():
            raise ConfigError(f"config error: method.quality.holdout: all {len(y)} confident pairs were held out; judge more pairs")
        x = self._features(pool, docs)
        train = ~held
        if options.features == "ngrams":
            model = fit_pairs(x, options.num_buckets, first[train], second[train], y[train], options.l2, options.max_iter)
            doc_scores = model.decision(x)[:, 0]
        else:
            model = fit_pairs_dense(x, first[train], second[train], y[train], options.l2, options.max_iter)
            doc_scores = model.project(x)[:, 0]
        delta = doc_scores[second[held]] - doc_scores[first[held]]  # [held] s_b - s_a
        better = y[held] > 0.5
        metrics = {"head": "bradley-terry", "features": options.features, "labels": "pairs", "pairs": len(judged.labels) + judged.too_few_votes,
                   "too_few_votes": judged.too_few_votes, "unconfident": int((~kept).sum()), "judged_records": int(len(docs)),
                   "train": int(train.sum()), "heldout": int(held.sum()),
                   "heldout_accuracy": float(np.mean((delta > 0) == better)) if held.any() else None,
                   "heldout_auroc": auroc(delta, better), "heldout_spearman": None, "digest": model.digest()}
        return TrainedRater(model, "bradley-terry", metrics)

    @staticmethod
    def _join(first: Any, second: Any) -> Any:
        if isinstance(first, np.ndarray):
            return np.concatenate([first, second])
        from dataselect.scoring.ngram import NgramFeatures

        return NgramFeatures.concat([first, second], np.dtype(np.int64))

    # ---- scores and selection ----

    def pool_scores(self, context: Any, store: Any) -> np.ndarray:
        """Every pool row's rater score, in store order. -> [N] float64"""
        options = context.config.method.quality
        if options.rater == "model":
            from dataselect.scoring.rater import rater_scores

            logits = np.concatenate([np.asarray(store.read_array(i, "logits"), np.float32) for i in range(store.num_shards)])  # [N, L] or [N, 2L]
            return rater_scores(logits, self.readout(), self.head_names(), options.label, options.label_values, options.weights)
        model = self.trained.model
        if options.features == "ngrams":
            from dataselect.scoring.ngram_store import read_features

            parts = [model.decision(read_features(store, i))[:, 0] for i in range(store.num_shards)]
            return np.concatenate(parts) if parts else np.zeros(0)
        return model.project(self._vectors(store))[:, 0]

    def cluster_groups(self, context: Any, scored: dict[str, ScoredSource], eligible: np.ndarray) -> np.ndarray:
        """Each pool row's k-means cluster over the embedding store (method.cluster's k-means, trained on the
        eligible rows' vectors); -1 for a row with no vector, which is then kept out. -> [N] int64"""
        from dataselect.select.cluster_method import pool_clusters

        config = context.config
        pool = scored["pool"].store
        vectors = scored.get("embeddings", scored["pool"]).store  # the pool's own store when the rater reads embeddings
        positions = vectors.column("position").to_numpy().astype(np.int64)  # [M] each vector's stream position
        row_of = {int(p): r for r, p in enumerate(positions)}
        rows = np.array([row_of.get(int(p), -1) for p in pool.column("position").to_numpy()], np.int64)  # [N] vector row, -1: none
        usable = eligible & (rows >= 0)
        k = self.options.clusters or max(1, round(math.sqrt(int(usable.sum()))))
        if k > int(usable.sum()):
            raise ConfigError(f"config error: method.quality.clusters: {k:,} clusters for {int(usable.sum()):,} selectable samples; use at most that many")
        self.clusters, self.cluster_cache = pool_clusters(vectors, config, context.cache_root, k, np.unique(rows[usable]))
        context.exclude("no_embedding", Excluded(eligible & (rows < 0), "without a pooled embedding to cluster (balance_by: clusters)"))
        return np.where(rows >= 0, self.clusters.labels[np.maximum(rows, 0)], -1).astype(np.int64)

    def token_counts(self, store: Any) -> np.ndarray:
        """Each pool row's tokens for method.quality.token_budget: token_field's numbers (NaN where a record has
        none), else the rendered text's whitespace words. -> [N] float64"""
        options = self.options
        if options.token_field is None:
            return store.column("words").to_numpy().astype(np.float64)
        labelled, values = parse_labels(store.column(TOKENS).to_pylist(), "token_field")
        if (values[labelled] < 0).any():
            raise ConfigError(f"config error: method.quality.token_field: {options.token_field!r} holds a negative token count")
        return np.where(labelled, values, np.nan)

    def readout(self) -> str:
        from dataselect.scoring.rater import resolve_readout

        return resolve_readout(self.options.readout, self.spec.hf_config)

    def head_names(self) -> list[str]:
        from dataselect.scoring.rater import head_names

        return head_names(self.spec.hf_config)

    def select(self, context: Any, scored: dict[str, ScoredSource]) -> Selection:
        config = context.config
        options = config.method.quality
        pool = scored["pool"]
        store = pool.store
        scores = self.pool_scores(context, store)  # [N]
        excluded = {}
        if options.threshold is not None:
            excluded["below_threshold"] = Excluded(~(scores >= options.threshold), f"scoring below method.quality.threshold ({options.threshold})")
        tokens = self.token_counts(store) if options.token_budget is not None else None  # [N] float64, NaN: no count
        if tokens is not None and options.token_field:
            excluded["no_token_count"] = Excluded(np.isnan(tokens), f"without a token count in method.quality.token_field ({options.token_field!r})")
        eligible = context.eligible(pool, dedup=options.dedup, **excluded)
        keys = selection_keys(scores, eligible, options.temperature, options.normalize, config.method.seed)  # [N]
        groups, names = None, None
        if options.balance_by == CLUSTERS:
            with context.stats.stage("cluster"):
                groups = self.cluster_groups(context, scored, eligible)
            eligible &= groups >= 0
            names = np.arange(self.clusters.k)
        elif options.balance_by:
            values = store.column(GROUP).to_numpy(zero_copy_only=False)
            names, groups = np.unique(np.where(values == None, "", values).astype(str), return_inverse=True)  # noqa: E711
        if tokens is None:
            chosen = choose(keys, context.budget(eligible), eligible, groups)
        else:
            chosen = choose_tokens(keys, tokens, options.token_budget, eligible, groups)
        columns: dict[str, list] = {}
        if options.balance_by == CLUSTERS:
            columns["cluster"] = groups[chosen].tolist()
        elif groups is not None:
            columns[options.balance_by] = [str(names[g]) for g in groups[chosen]]
        metrics = {"rater": options.rater, "temperature": options.temperature, "normalize": options.normalize, "threshold": options.threshold,
                   "selectable": int(eligible.sum()), "mean_score_selected": float(scores[chosen].mean()) if len(chosen) else None,
                   "mean_score_selectable": float(scores[eligible].mean()) if eligible.any() else None}
        if options.rater == "model":
            metrics |= {"readout": self.readout(), "heads": self.head_names(), "weights": options.weights}
        else:
            metrics |= {"trained": self.trained.metrics}
        if tokens is not None:
            metrics |= {"token_budget": options.token_budget, "token_unit": options.token_field or "words", "selected_tokens": float(tokens[chosen].sum())}
        if groups is not None:
            metrics["balance"] = {str(n): int((groups[chosen] == g).sum()) for g, n in enumerate(names)}
        if options.balance_by == CLUSTERS:
            metrics |= {"num_clusters": self.clusters.k, "cluster_sizes": np.bincount(groups[eligible], minlength=self.clusters.k).tolist(),
                        "kmeans": self.clusters.info, "cluster_cache": self.cluster_cache}
        return Selection(**selected_rows(store, chosen), scores=scores[chosen], columns=columns, metrics=metrics,
                         scored=len(scores), unique=int(eligible.sum()), pool_scores=scores,
                         ranking="sampled" if options.temperature > 0 else ("per-group" if groups is not None else "top"))

    def figures(self, selection: Selection) -> list[Figure]:
        metrics = selection.metrics
        out: list[Figure] = [Table(["rater", "temperature", "threshold"], [[metrics.get("rater"), metrics.get("temperature"), metrics.get("threshold")]])]
        trained = metrics.get("trained") or {}
        if trained:
            keys = ["head", "features", "labels", "train", "heldout", "heldout_auroc", "heldout_spearman"]
            keys += ["heldout_accuracy"] if "heldout_accuracy" in trained else []  # pairs: the held-out pairs ordered as judged
            out.append(Table(keys, [[trained.get(k) for k in keys]]))
        balance = metrics.get("balance") or {}
        if balance:
            out.append(Bars(list(balance), list(balance.values()), "selected rows per group (balance_by)", "group", "selected",
                            "The selection's rows in each group of method.quality.balance_by."))
        return out

    def saved_scorer(self, context: Any, folder: Any, selection: Selection) -> None:
        """The rater: the model and read-out (rater: model), or the head and what it reads (trained)."""
        from dataselect.scoring.ngram import featurizer_settings

        config, options = context.config, context.config.method.quality
        described: dict[str, Any] = {"render": render_fields(config.input, self.render_style)}
        rater = {"rater": options.rater, "features": options.features}
        arrays: dict[str, np.ndarray] = {}
        if options.rater == "model":
            described["model"] = portable_model(config.model, self.spec)
            rater |= {"readout": self.readout(), "heads": self.head_names(), "label": options.label, "label_values": options.label_values,
                      "weights": options.weights, "chunk_tokens": options.chunk_tokens}
        else:
            arrays = {"weights": self.trained.model.weights, "bias": self.trained.model.bias}
            if options.features == "ngrams":
                described["model"] = {"name": portable_name(config.model.name)}  # its tokenizer: the featuriser's
                rater["ngrams"] = featurizer_settings(ngram_options(options), config.model.name)
            else:
                described["model"] = portable_model(config.model, self.spec)
        save_scorer(folder, context, selection, ["quality"], described | {"quality": rater}, arrays)


class QualityScorer(EmbeddingScorerBase):
    """A quality rater reloaded: the model's read-out, or the trained head on a record's pooled embedding or hashed n-grams."""

    method = "quality"

    def __init__(self, description: dict, arrays: dict[str, np.ndarray], folder: Any, device: str = "auto", batch_tokens: int = 16384) -> None:
        rater = description["quality"]
        self.rater = rater
        if rater["rater"] == "trained":
            from dataselect.scoring.logistic import LinearModel

            self.head = LinearModel(np.asarray(arrays["weights"], np.float64), np.asarray(arrays["bias"], np.float64), [], [])
        if rater["rater"] == "trained" and rater["features"] == "ngrams":
            from dataselect.scoring.ngram import featurizer_from_settings

            Scorer.__init__(self, description, arrays, folder)
            self.featurizer = featurizer_from_settings(rater["ngrams"], "cpu" if device == "auto" else device)
            self.renderer = scorer_renderer(description)
            self.embedder = None
            return
        if rater["rater"] == "model":
            from dataselect.scoring.rater import Rater

            self.forward_type = Rater
        super().__init__(description, arrays, folder, device, batch_tokens)
        if rater.get("chunk_tokens"):  # the run's chunks (a scorer saved before chunking has none)
            from dataselect.scoring.rater import ChunkEncoder

            self.encoder = ChunkEncoder(self.embedder.loaded.tokenizer, int(rater["chunk_tokens"]))

    def score_texts(self, texts: list[str], records: list[dict]) -> np.ndarray:
        rater = self.rater
        if rater["rater"] == "model":
            from dataselect.scoring.rater import rater_scores

            return rater_scores(self.forward_rows(texts), rater["readout"], rater["heads"], rater["label"], rater["label_values"],
                                rater["weights"])[:, None]  # [n, 1]
        if rater["features"] == "ngrams":
            return self.head.decision(self.featurizer.featurize(texts))  # [n, 1]
        return self.head.project(self.vectors(texts).astype(np.float32))  # [n, 1], from float16 vectors as the run's store

    def close(self) -> None:
        if self.embedder is not None:
            super().close()


QualityMethod.scorer_type = QualityScorer
