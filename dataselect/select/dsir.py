"""DSIR (METHODS.md section 2): importance resampling on hashed n-gram features.

score:  pool and target -> hashed unigram/bigram bucket lists per document, cached
        (scoring/ngram.py featurisers, as the score stage of scoring/ngram_store.py)
fit:    raw distribution on the pool (all of it, or a seeded sample), one target distribution per task
        (scoring/importance.py, as the weights and the KL metric)
weight: log w(x) = sum of log(p_tgt + 1e-8) - log(p_raw + 1e-8) over x's n-grams
select: documents of at least `min_words` (and, by default, first of their exact duplicates) ->
        Gumbel top-K (sampling without replacement in proportion to w) or plain top-K; several
        targets take quotas k * proportion in turn, each masking what earlier ones took
report: KL(target || selected) against KL(target || a random selection of the same size)
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from dataselect.config import SourceConfig
from dataselect.errors import ConfigError
from dataselect.io.render import TextRenderer, word_chunks
from dataselect.scorer.base import Scorer, render_fields, save_scorer, scorer_renderer
from dataselect.scoring import importance, ngram, ngram_store
from dataselect.scoring.loop import ScoredSource
from dataselect.select.base import Declared, Excluded, Selection, first_occurrences, selected_rows, target_tasks, task_scores, top_k
from dataselect.select.figures import Figure, PairedBars, Table

logger = logging.getLogger(__name__)

# ------------------------------------------------------------------------------------------------
# pure select functions
# ------------------------------------------------------------------------------------------------


def gumbel_keys(log_weights: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """log w + Gumbel(0, 1) noise, one draw per document in pool order (so a document's key does not
    depend on which others are eligible). The top-k of these keys is a sample of k without
    replacement with probabilities proportional to w (successive sampling). [N] -> [N]"""
    return log_weights + rng.gumbel(size=len(log_weights))


def gumbel_top_k(log_weights: np.ndarray, k: int, rng: np.random.Generator, eligible: np.ndarray | None = None) -> np.ndarray:
    """k eligible indices sampled without replacement in proportion to exp(log_weights), in draw order. -> [k]"""
    return top_k(gumbel_keys(log_weights, rng), k, eligible)


def target_quotas(k: int, proportions: Sequence[float]) -> list[int]:
    """The package's split of k over targets: floor(k * p_t), the remainder to the last target."""
    p = np.asarray(proportions, np.float64)
    p = p / p.sum()
    quotas = [int(k * share) for share in p]
    quotas[-1] += k - sum(quotas)
    return quotas


def sequential_select(
    log_weights: np.ndarray, quotas: Sequence[int], eligible: np.ndarray, sampling: str, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Targets take their quotas in order; what one takes is masked out for the next.

    log_weights: [N, T]; eligible: [N] bool; returns (chosen [K] int64 in rank order, target [K] int64).
    Each target draws its Gumbel noise for all N documents, whatever its quota, so a target's keys do
    not depend on the quotas before it."""
    available = eligible.copy()
    chosen, tasks = [], []
    for t, quota in enumerate(quotas):
        scores = log_weights[:, t]
        keys = gumbel_keys(scores, rng) if sampling == "gumbel" else scores
        picks = top_k(keys, min(int(quota), int(available.sum())), available) if quota > 0 else np.zeros(0, np.int64)
        available[picks] = False
        chosen.append(picks)
        tasks.append(np.full(len(picks), t, np.int64))
    return np.concatenate(chosen).astype(np.int64), np.concatenate(tasks)


def kl_reduction(target_probs: np.ndarray, selected_counts: np.ndarray, random_counts: np.ndarray) -> dict[str, Any]:
    """The paper's metric in the hashed feature space: per target, KL(p_t || q_random) - KL(p_t || q_selected),
    averaged over targets. target_probs [T, B]; counts [B]."""
    q_selected = importance.fit_distribution(selected_counts)
    q_random = importance.fit_distribution(random_counts)
    kl_sel = [importance.kl_divergence(p, q_selected) for p in target_probs]
    kl_rand = [importance.kl_divergence(p, q_random) for p in target_probs]
    return {
        "kl_target_selected": float(np.mean(kl_sel)),
        "kl_target_random": float(np.mean(kl_rand)),
        "kl_reduction": float(np.mean(kl_rand) - np.mean(kl_sel)),
        "per_target": [{"kl_target_selected": s, "kl_target_random": r} for s, r in zip(kl_sel, kl_rand)],
    }


def resolve_proportions(names: Sequence[str], option: list[float] | dict[str, float] | None, ngram_totals: np.ndarray) -> np.ndarray:
    """Target proportions: as configured (a list in `names` order, or by name), else the targets'
    n-gram count proportions (the package's default). -> [T] summing to 1"""
    if option is None:
        values = np.asarray(ngram_totals, np.float64)
    elif isinstance(option, dict):
        if set(option) != set(names):
            raise ConfigError(f"config error: method.dsir.target_proportions: names {sorted(option)} must be the targets {list(names)}")
        values = np.array([option[name] for name in names], np.float64)
    else:
        if len(option) != len(names):
            raise ConfigError(f"config error: method.dsir.target_proportions: {len(option)} values for {len(names)} targets {list(names)}")
        values = np.asarray(option, np.float64)
    return values / values.sum()


# ------------------------------------------------------------------------------------------------
# the method
# ------------------------------------------------------------------------------------------------


def _source_for_dsir(source: SourceConfig) -> SourceConfig:
    """`render: auto` means plain text here: chat tags would only add the same n-grams to every sample."""
    return source.model_copy(update={"render": "plain"}) if source.render == "auto" else source


def _hashing_device(featurizer: Any) -> dict[str, Any]:
    """Where the n-grams were hashed; `reference` runs on the CPU and never imports torch."""
    if featurizer.kind == "reference":
        return {"type": "cpu"}
    from dataselect.scoring.models import describe_device

    return describe_device(featurizer.device)


@dataclass
class RecordChunks:
    """A pool record -> the word chunks DSIR scored (the same rendering), for writing selected rows."""

    renderer: TextRenderer
    chunk_words: int

    def __call__(self, record: dict[str, Any]) -> list[str]:
        return word_chunks(self.renderer.render(record), self.chunk_words)


@dataclass
class Fit:
    names: np.ndarray  # [T] target names, sorted
    target_counts: np.ndarray  # [T, B] int64
    target_probs: np.ndarray  # [T, B] float64 (smoothed)
    raw: importance.RawFit
    delta: np.ndarray  # [T, B] log(p_tgt + 1e-8) - log(p_raw + 1e-8)


def fit(pool: ScoredSource, target: ScoredSource, config: Any) -> Fit:
    """Raw and per-target bag-of-hashed-n-gram distributions, and their log ratios."""
    options, nb = config.method.dsir, config.method.dsir.num_buckets
    column = "task" if config.target.task_field else ("file" if options.separate_targets else None)
    names, task_of_doc = target_tasks(target.store, column, config.target.task_field)
    if len(task_of_doc) == 0:
        raise ConfigError("config error: target.path: the target set has no usable samples")
    target_counts = importance.fit_target(target.store, nb, task_of_doc, len(names))  # [T, B]
    empty = [str(n) for n, total in zip(names, target_counts.sum(axis=1)) if total == 0]
    if empty:
        raise ConfigError(f"config error: target.path: target(s) {empty} have no n-grams (empty texts?)")
    raw = importance.fit_raw(pool.store, nb, options.raw_sample_size, np.random.default_rng([config.method.seed, 2]))
    if raw.counts.sum() == 0:
        raise ConfigError("config error: input.path: the pool has no n-grams to fit the raw distribution on")
    target_probs = np.stack([importance.fit_distribution(c, options.target_laplace_smoothing) for c in target_counts])  # [T, B]
    delta = importance.log_ratio(target_probs, importance.fit_distribution(raw.counts))  # [T, B]
    return Fit(names, target_counts, target_probs, raw, delta)


def eligibility(pool: ScoredSource, options: Any, unit: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(lengths [N], long enough [N] bool, first of its exact duplicates [N] bool); raises if none is kept."""
    lengths = pool.store.column("length").to_numpy()  # [N]
    long_enough = lengths >= options.min_words
    unique = first_occurrences(pool.store.column("text_hash").to_numpy()) if options.dedup else np.ones(len(lengths), bool)
    if not (long_enough & unique).any():
        raise ConfigError(
            f"config error: method.dsir.min_words: no pool sample has {options.min_words} or more {unit} "
            f"(longest: {int(lengths.max(initial=0))}); lower it"
        )
    return lengths, long_enough, unique


def random_baseline_kl(pool: ScoredSource, fitted: Fit, chosen: np.ndarray, eligible: np.ndarray, seed: int) -> dict[str, Any]:
    """KL(target || selected) against KL(target || a seeded uniform draw of as many eligible documents)."""
    n = len(eligible)
    baseline = top_k(np.random.default_rng([seed, 1]).random(n), len(chosen), eligible)
    masks = {"selected": np.zeros(n, bool), "random": np.zeros(n, bool)}
    masks["selected"][chosen] = True
    masks["random"][baseline] = True
    counts = importance.subset_counts(pool.store, fitted.delta.shape[1], masks)
    return kl_reduction(fitted.target_probs, counts["selected"], counts["random"])


class DSIRMethod(Declared):
    """`method.name: dsir`: importance resampling towards the target's hashed n-gram distribution."""
    name = "dsir"
    description = "DSIR: importance-resample the pool towards a target's hashed n-gram distribution (needs target.path; no GPU needed)"
    needs_target = True

    def loads(self, config: Any) -> str | None:
        return "tokenizer" if config.method.dsir.features == "tokens" else None

    def score(self, context) -> dict[str, ScoredSource]:
        config = context.config
        options = config.method.dsir
        if config.target.path is None:
            raise ConfigError("config error: target.path is required for method.name: dsir")
        with context.stats.stage("load_featurizer"):
            featurizer = ngram.make_featurizer(options, config.model.name, config.runtime.device)
        self.featurizer = featurizer
        pool_source, target_source = _source_for_dsir(config.input), _source_for_dsir(config.target)
        task_field = config.target.task_field
        pool = context.score_source("pool", pool_source, ngram_store.NgramStage(featurizer, options.chunk_words), TextRenderer(pool_source))
        target = context.score_source(
            "target", target_source, ngram_store.NgramStage(featurizer, files=options.separate_targets and not task_field),
            TextRenderer(target_source), fields={"task": task_field} if task_field else None,
        )
        return {"pool": pool, "target": target}

    def select(self, context, scored: dict) -> Selection:
        config = context.config
        options = config.method.dsir
        pool, target = scored["pool"], scored["target"]
        kind = self.featurizer.kind
        unit = "words" if kind == "reference" else "tokens"
        with context.stats.stage("fit"):
            fitted = fit(pool, target, config)
        self.fitted = fitted
        with context.stats.stage("weights"):
            weights = importance.pool_log_weights(pool.store, fitted.delta, config.runtime.progress)  # [N, T]
        with context.stats.stage("select"):
            lengths, long_enough, unique = eligibility(pool, options, unit)
            short = Excluded(~long_enough, f"shorter than method.dsir.min_words ({options.min_words} {unit})")
            eligible = context.eligible(pool, dedup=options.dedup, short=short)
            k = context.budget(eligible)
            proportions = resolve_proportions([str(n) for n in fitted.names], options.target_proportions, fitted.target_counts.sum(axis=1))
            quotas = target_quotas(k, proportions)
            chosen, task = sequential_select(weights, quotas, eligible, options.sampling, np.random.default_rng(config.method.seed))
        with context.stats.stage("kl"):
            kl = random_baseline_kl(pool, fitted, chosen, eligible, config.method.seed)

        per_target = {
            str(name): {
                "proportion": round(float(proportions[t]), 6),
                "quota": int(quotas[t]),
                "selected": int((task == t).sum()),
                "target_ngrams": int(fitted.target_counts[t].sum()),
                **kl["per_target"][t],
            }
            for t, name in enumerate(fitted.names)
        }
        kept_weights = weights[eligible]
        metrics = {
            "features": kind,
            "tokenizer": config.model.name if kind == "tokens" else "wordpunct",
            "num_buckets": options.num_buckets,
            "ngrams": options.ngrams,
            "min_words": options.min_words,
            "length_unit": unit,
            "sampling": options.sampling,
            "chunk_words": options.chunk_words,
            "target_laplace_smoothing": options.target_laplace_smoothing,
            "raw_fit_docs": fitted.raw.docs,
            "raw_fit_sampled": fitted.raw.sampled,
            "raw_fit_ngrams": int(fitted.raw.counts.sum()),
            "kept": int(eligible.sum()),
            "dropped_short": int((~long_enough).sum()),
            "duplicates_collapsed": int((~unique).sum()),
            "targets": per_target,
            "kl_target_selected": kl["kl_target_selected"],
            "kl_target_random": kl["kl_target_random"],
            "kl_reduction": kl["kl_reduction"],
            "kl_epsilon": importance.EPS,
            "log_weight_quantiles": {q: float(np.quantile(kept_weights, q / 100)) for q in (0, 50, 90, 99, 100)} if len(kept_weights) else {},
            "device": _hashing_device(self.featurizer),
        }
        columns: dict[str, list] = {"length": lengths[chosen].tolist()}
        if len(fitted.names) > 1:
            columns["task"] = [str(fitted.names[t]) for t in task]
        if options.chunk_words:
            columns["chunk"] = pool.store.take(chosen, ["chunk"])["chunk"]
        return Selection(
            **selected_rows(pool.store, chosen),
            scores=weights[chosen, task].astype(np.float64),
            columns=columns,
            metrics=metrics,
            scored=len(lengths),
            unique=int(unique.sum()),
            chunker=RecordChunks(TextRenderer(_source_for_dsir(context.config.input)), options.chunk_words) if options.chunk_words else None,
            ranking="sampled" if options.sampling == "gumbel" else "top",
            **task_scores(weights, [str(n) for n in fitted.names]),
        )

    def figures(self, selection: Selection) -> list[Figure]:
        metrics = selection.metrics
        out: list[Figure] = [Table(["KL(target || selected)", "KL(target || random selection)", "KL reduction"],
                                   [[metrics["kl_target_selected"], metrics.get("kl_target_random"), metrics["kl_reduction"]]])]
        targets = metrics.get("targets") or {}
        if targets:
            keys = ["proportion", "quota", "selected", "target_ngrams", "kl_target_selected", "kl_target_random"]
            names = list(targets)
            out += [Table(["target", *keys], [[name, *(info.get(k) for k in keys)] for name, info in targets.items()]),
                    PairedBars(names, [targets[n].get("kl_target_random", 0) for n in names], [targets[n].get("kl_target_selected", 0) for n in names],
                               ("random selection", "DSIR selection"), "KL divergence from each target", "KL(target || ...)",
                               "Lower is closer to the target; the gap is the KL reduction.")]
        return out

    def saved_scorer(self, context, folder, selection: Selection) -> None:
        """The log ratios [T, B] and the featuriser that turns a record into n-gram buckets."""
        config, options = context.config, context.config.method.dsir
        if options.chunk_words:
            logger.info("scorer: not written: method.dsir.chunk_words scores word chunks, not records")
            return
        source = _source_for_dsir(config.input)
        save_scorer(folder, context, selection, [str(n) for n in self.fitted.names], {
            "render": render_fields(source, TextRenderer(source).conversation_style),
            "dsir": ngram.featurizer_settings(options, config.model.name),
        }, {"log_ratio": self.fitted.delta})


class DSIRScorer(Scorer):
    """DSIR reloaded: a record's log importance weight per target, sum of the saved log ratios over its
    hashed n-grams (the score before any Gumbel noise)."""

    method = "dsir"

    def __init__(self, description: dict, arrays: dict[str, np.ndarray], folder, device: str = "cpu") -> None:
        super().__init__(description, arrays, folder)
        self.featurizer = ngram.featurizer_from_settings(description["dsir"], device)
        self.renderer = scorer_renderer(description)
        self.delta = np.asarray(arrays["log_ratio"], np.float64)  # [T, B]

    def score_texts(self, texts: list[str], records: list[dict]) -> np.ndarray:
        return importance.log_weights(self.featurizer.featurize(texts), np.atleast_2d(self.delta))  # [n, T]


DSIRMethod.scorer_type = DSIRScorer
