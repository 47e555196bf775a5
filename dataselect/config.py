"""Typed, validated run configuration: YAML file + `--set dotted.key=value` overrides.

Every error names the dotted key; an unknown key gets the closest valid key suggested.
"""
from __future__ import annotations

import copy
import difflib
import os
import types
import typing
from pathlib import Path
from typing import Any, Literal, Union

import yaml
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, field_validator, model_validator

from dataselect.errors import ConfigError


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    @model_validator(mode="before")
    @classmethod
    def _keys_fill_their_own_defaults(cls, data: Any) -> Any:
        """A mapping given for a sub-section whose default is its own instance (method.color.proxy, method.less.proxy)
        fills the keys it leaves out from that instance, not from the sub-section class's generic defaults."""
        if not isinstance(data, dict):
            return data
        merged = dict(data)
        for name, field in cls.model_fields.items():
            value, default = merged.get(name), field.default
            if isinstance(value, dict) and isinstance(default, BaseModel):
                merged[name] = default.model_dump() | value
        return merged


MIRRORS = "remote"  # under the default local cache: one folder per cache URL


def default_cache_dir() -> Path:
    """The local cache when runtime.cache_dir is unset: $XDG_CACHE_HOME/dataselect or ~/.cache/dataselect."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "dataselect"


def cache_mirror(url: str) -> Path:
    """This machine's local folder for a cache in object storage (runtime.cache_dir: s3://...): the default
    local cache's remote/<digest of the URL>, where its stores are written before they are uploaded and read
    after they are fetched, and where what stays local (locks, proxies, output mirrors) lives."""
    import hashlib

    return default_cache_dir() / MIRRORS / hashlib.blake2b(url.rstrip("/").encode(), digest_size=16).hexdigest()


class SourceConfig(_Section):
    """Where samples come from and how a sample becomes one text."""

    path: Union[str, list[str], None] = None  # file, glob, directory, hf:NAME[:split], or a list of them
    format: Literal["auto", "jsonl", "parquet", "hf"] = "auto"
    id_field: str = "id"  # used when present; otherwise a stable id from file and line
    text_field: str | None = None
    prompt_field: str | None = None
    response_field: str | None = None
    messages_field: str | None = None
    # auto: the tokenizer's chat template when it has one, else the Tulu user/assistant form (METHODS.md 1.5)
    render: Literal["auto", "chat_template", "tulu", "plain"] = "auto"
    on_error: Literal["skip", "fail"] = "skip"
    max_chars: int = Field(100_000, gt=0)  # longer samples are bad input ("over-long"), not silently truncated
    limit: int | None = Field(None, gt=0)  # read at most this many records (for quick looks)
    # the files a run resolved this source to (io/locate.py pins them at the run's start; travels to workers)
    _located: Any = PrivateAttr(default=None)


class InputConfig(SourceConfig):
    """`input`: the pool to select from, where its text is and which of its ids may be selected."""
    # an earlier run's folder (its selection) or a parquet/jsonl file of ids: only those pool samples may be
    # selected; the pool is scored as a whole, so the earlier run's cached store serves this one
    ids_from: str | None = None


class TargetConfig(SourceConfig):
    """`target`: the samples the selection should resemble (RDS+, DSIR, BETR, CoLoR-Filter), optionally in tasks."""
    task_field: str | None = None  # several target tasks: RDS+ round-robins across them


def looks_like_path(name: str) -> bool:
    """A model name meant as a local folder: ./x, ../x, /x, ~/x or a/b/c (a Hub name is one `org/name`)."""
    return name.startswith((".", "/", "~")) or (os.sep != "/" and os.sep in name) or name.count("/") >= 2


class ModelConfig(_Section):
    """`model`: the Hugging Face model that embeds (or scores) the texts, its pooling, length and dtype."""
    name: str = "sentence-transformers/all-MiniLM-L6-v2"
    pooling: Literal["auto", "mean", "weighted_mean", "last", "cls"] = "auto"
    max_length: int | None = Field(None, gt=1)  # None: the model's own (sentence-transformers config or 512)
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = "auto"  # auto: bf16 on CUDA and on a CPU with native bf16, else fp32
    trust_remote_code: bool = False

    @field_validator("name")
    @classmethod
    def _local_model_exists(cls, value: str) -> str:
        # a mistyped local folder would otherwise go to the Hub as a repository name and fail obscurely
        if looks_like_path(value) and not Path(value).expanduser().exists():
            raise ValueError(f"no such model folder {os.path.abspath(os.path.expanduser(value))} (a Hub name is written org/name)")
        return value


class RDSConfig(_Section):
    """`method.rds`: how RDS+ aggregates a pool sample's similarities to a task's target samples."""
    # over a task's target samples (bench/rds_quality.py chose the default; docs/rds.md)
    aggregation: Literal["max", "mean", "topk_mean", "softmax"] = "topk_mean"  # max: the paper's RDS+
    topk: int = Field(4, gt=0)  # topk_mean: the mean of a pool sample's this many highest similarities
    temperature: float = Field(0.05, gt=0)  # softmax: weights softmax(cosine / temperature) over the targets
    dedup: bool = True  # collapse exact-duplicate pool texts before ranking
    tile_size: int = Field(8192, gt=0)  # pool rows per similarity tile


class DSIRConfig(_Section):
    """DSIR (METHODS.md section 2). Lengths count the featuriser's units: WordPunct words (reference)
    or tokenizer tokens (tokens). `render: auto` renders plain text for DSIR (no chat tags)."""

    features: Literal["reference", "tokens"] = "reference"  # reference: the package's sha256 WordPunct n-grams
    num_buckets: int = Field(10_000, gt=0)
    ngrams: int = Field(2, ge=1, le=2)  # 1: unigrams; 2: unigrams + bigrams
    min_words: int = Field(100, ge=0)  # shorter documents are never selected (the package's min_example_length)
    sampling: Literal["gumbel", "topk"] = "gumbel"  # gumbel: sample without replacement in proportion to the weights
    target_laplace_smoothing: float = Field(0.0, ge=0.0)  # alpha added to every target bucket count
    raw_sample_size: int | None = Field(None, gt=0)  # fit the raw distribution on this many docs (None: all)
    chunk_words: int | None = Field(None, gt=0)  # split long docs into chunks of this many words (paper: 128)
    # one target per `target.task_field` value, or per target file with separate_targets
    separate_targets: bool = False
    # per target: a list in sorted target-name order, or {name: proportion}; default: n-gram count proportions
    target_proportions: Union[list[float], dict[str, float], None] = None
    dedup: bool = True  # collapse exact-duplicate pool texts before selecting (the package does not)

    @field_validator("target_proportions")
    @classmethod
    def _proportions_positive(cls, value: Union[list[float], dict[str, float], None]) -> Union[list[float], dict[str, float], None]:
        values = list(value.values()) if isinstance(value, dict) else value
        if values is not None and (not values or any(v < 0 for v in values) or sum(values) <= 0):
            raise ValueError("proportions must be non-negative with a positive sum")
        return value


def _count_or_fraction(value: Union[int, float]) -> Union[int, float]:
    if isinstance(value, bool) or (isinstance(value, int) and value < 1) or (isinstance(value, float) and not 0.0 < value <= 1.0):
        raise ValueError("must be a count >= 1 or a fraction in (0, 1]")
    return value


class ProxyConfig(_Section):
    """The proxy causal LM trained on the pool when model.name is not a causal LM (scoring/proxy.py)."""

    steps: int = Field(2600, gt=0)  # optimiser steps per seed (sized for bench/el2n_noise.py in 15 min on 2 cores)
    epochs: float = Field(12.0, gt=0)  # ... but at most this many passes over the training sample (the noise bench makes 10)
    train_tokens: Literal["all", "scored"] = "all"  # the training loss over every token, or only those a score counts
    seeds: int = Field(1, gt=0)  # proxies trained with seeds method.seed, method.seed + 1, ...; scores averaged
    sample: Union[int, float] = 10_000  # training samples: a count, or a fraction of the pool in (0, 1]
    batch_size: int = Field(32, gt=0)  # packed rows per step
    context: int = Field(128, gt=1)  # tokens per row; also the window each sample is scored on
    vocab: int = Field(4096, gt=1)  # output classes: the sample's most frequent token ids + one "other"
    layers: int = Field(2, gt=0)
    hidden: int = Field(192, gt=0)
    heads: int = Field(4, gt=0)
    lr: float = Field(5e-3, gt=0)
    # the training step's autocast: auto is bf16 where the CPU has native bf16 (1.5x the steps/s, bench/proxy_dtype.py) and on CUDA
    dtype: Literal["auto", "float32", "bfloat16"] = "auto"

    @field_validator("sample")
    @classmethod
    def _sample_is_count_or_fraction(cls, value: Union[int, float]) -> Union[int, float]:
        return _count_or_fraction(value)


class EL2NConfig(_Section):
    """EL2N / loss selection (METHODS.md section 3): score every pool sample with a causal LM (model.name)
    or trained proxies, then keep a window of the sorted scores."""

    score: Literal["el2n", "loss"] = "el2n"  # mean-token EL2N, or mean-token loss (log-perplexity)
    # hardest: the highest scores; easiest: the lowest; middle: a window at `offset` (default: centred)
    keep: Literal["hardest", "easiest", "middle"] = "middle"
    offset: int | None = Field(None, ge=0)  # keep: middle only: skip this many of the lowest scores
    scorer: Literal["auto", "model", "proxy"] = "auto"  # auto: model.name if it is a causal LM, the proxy for the default model
    dedup: bool = True  # collapse exact-duplicate pool texts before selecting
    proxy: ProxyConfig = ProxyConfig()
class ColorConfig(_Section):
    """CoLoR-Filter (METHODS.md section 7): a prior causal LM and the same LM fine-tuned on the target
    (the conditional model) score every pool sample; score = prior mean loss - conditional mean loss."""

    scorer: Literal["auto", "model", "proxy"] = "auto"  # the prior: auto: model.name if it is a causal LM, else the proxy
    finetune_steps: int = Field(100, ge=0)  # optimiser steps fine-tuning the prior on the target (0: conditional = prior)
    finetune_lr: float = Field(1e-3, gt=0)  # peak learning rate of the fine-tune (10% warm-up, cosine decay)
    dedup: bool = True  # collapse exact-duplicate pool texts before selecting
    # the prior proxy, sized for a 2-core CPU (its own settings: EL2N's defaults train far longer)
    proxy: ProxyConfig = ProxyConfig(steps=200, epochs=4.0, sample=5000, context=64, vocab=2048, hidden=128, lr=6e-3)


class BETRConfig(_Section):
    """BETR (METHODS.md section 8): RDS+ scores on a seeded sample of the pool label its top fraction;
    a logistic regression on hashed n-gram features learns them and scores the whole pool."""

    sample: Union[int, float] = 0.1  # pool samples embedded and scored by RDS+: a count, or a fraction of the pool in (0, 1]
    positive_fraction: float = 0.1  # the sample's top fraction by RDS+ score is labelled positive (per task)
    holdout: float = 0.2  # share of the sample held out (seeded) for the manifest's AUROC and Spearman
    features: Literal["reference", "tokens"] = "tokens"  # the DSIR featurisers: sha256 WordPunct n-grams, or tokenizer ids
    num_buckets: int = Field(65_536, gt=0)
    ngrams: int = Field(2, ge=1, le=2)  # 1: unigrams; 2: unigrams + bigrams
    l2: float = Field(1e-4, ge=0.0)  # L2 penalty on the weights (the objective is the class-balanced mean log-loss)
    max_iter: int = Field(200, gt=0)  # L-BFGS iterations per task
    dedup: bool = True  # collapse exact-duplicate pool texts before selecting

    @field_validator("sample")
    @classmethod
    def _sample_is_count_or_fraction(cls, value: Union[int, float]) -> Union[int, float]:
        return _count_or_fraction(value)

    @field_validator("positive_fraction", "holdout")
    @classmethod
    def _fraction_in_open_unit_interval(cls, value: float) -> float:
        if not 0.0 < value < 1.0:
            raise ValueError("must be in (0, 1)")
        return value


class LessConfig(_Section):
    """LESS (METHODS.md section 10): Adam-preconditioned per-sample gradients of a warm-up proxy LM, randomly
    projected, matched by cosine to the target's plain gradients; averaged over the warm-up checkpoints."""

    dim: int = Field(8192, gt=0)  # projected dimensions
    checkpoints: int = Field(4, gt=0)  # warm-up snapshots (LESS: one per epoch), weighted by their mean learning rate
    projection_seed: int = 0  # the random projection's seed (LESS: 0); one projection for pool and target
    # the projection's products: auto is bf16 where model.dtype's auto is (CUDA, a CPU with native bf16: 2x fp32's rate), else fp32
    projection_dtype: Literal["auto", "float32", "bfloat16"] = "auto"
    batch_tokens: int = Field(4096, gt=0)  # padded tokens per per-sample-gradient batch
    batch_samples: int = Field(32, gt=0)  # ... and at most this many samples (a [samples, parameters] block per batch)
    subtask_field: str | None = None  # a target field naming subtasks: a task's score is the max over its subtasks' means
    dedup: bool = True  # collapse exact-duplicate pool texts before selecting
    # the warm-up proxy, trained on a seeded 5% of the pool for 4 passes (LESS's warm-up), sized for a 2-core CPU: hidden 48
    # makes P about 109,000 (hidden 64: 170,000), which keeps the real pool's 4 x 67,903 projections to 8,192 dims under 40 minutes
    proxy: ProxyConfig = ProxyConfig(steps=400, epochs=4.0, sample=0.05, context=64, vocab=1024, hidden=48, heads=4, lr=6e-3)


class QuadConfig(_Section):
    """Quad (METHODS.md 5.2): a UCB bandit over method.cluster's k-means clusters of the pool embeddings draws
    samples from the clusters it picks and computes LESS influence (method.less) only for the drawn rows."""

    probes: int = Field(10, gt=0)  # samples drawn (seeded) from each picked cluster per round
    clusters_per_round: int = Field(50, gt=0)  # clusters picked per round (the top by UCB score)
    alpha: float = Field(1e-4, ge=0.0)  # UCB exploration weight
    threshold: float | None = None  # reward = mean influence of a pull's probes - threshold (None: the mean influence of every row drawn so far)
    neighbour_radius: float = Field(0.2, ge=0.0)  # rewards propagate to clusters whose centroids lie within this cosine distance
    max_fraction: float = Field(0.3, gt=0.0, le=1.0)  # at most this share of the pool gets gradients
    oversample: float = Field(3.0, ge=1.0)  # rounds stop once the rows of accepted pulls reach oversample x budget
    picks_per_pull: int = Field(1, ge=0)  # each accepted pull's best probes that enter the selection first (0: top-K by influence alone)
    dedup: bool = True  # collapse exact-duplicate pool texts before selecting


class QualityConfig(_Section):
    """Quality raters (METHODS.md section 9): a Hugging Face sequence-classification model (rater: model), or a
    linear head the run trains (rater: trained) on pooled embeddings or hashed n-grams, from labels on the pool's
    records (labels: field) or a reference set against a seeded pool sample (labels: reference); then top-K,
    a threshold, or sampling with probability proportional to exp(score / temperature)."""

    rater: Literal["model", "trained"] = "trained"
    # rater: model: how the logits become one score (auto: a regression head's value, else the expected label value)
    readout: Literal["auto", "value", "expected", "probability"] = "auto"
    label: str | None = None  # readout: probability: this label's (a name of the model's id2label, or its index); default the last
    label_values: list[float] | None = None  # readout: expected: each label's value (default 0, 1, ..., L-1)
    weights: dict[str, float] | None = None  # several heads (readout: value): the score is the sum of weight x head, by head name
    chunk_tokens: int | None = Field(None, gt=0)  # None: score a document's first model.max_length tokens; N: chunks of N, token-weighted mean (QuRating: 512)
    # rater: trained
    features: Literal["ngrams", "embeddings"] = "ngrams"  # ngrams: DCLM's recipe; embeddings: FineWeb-Edu's (model.name's pooled vectors)
    # reference: target.path vs a seeded pool sample; field: label_field on pool records; pairs: pairwise judgements (QuRating)
    labels: Literal["reference", "field", "pairs"] = "reference"
    label_field: str | None = None  # labels: field: a numeric or boolean record field; records without it are scored, not trained on
    pairs_path: str | None = None  # labels: pairs: a JSON-lines file of judged pairs of pool records (by id) and the judge's votes
    confidence: float = Field(0.5, ge=0.0, le=1.0)  # labels: pairs: a pair trains only if |y - 0.5| >= confidence / 2 (QuRating: 0.5)
    negatives: float = Field(1.0, gt=0)  # labels: reference: pool samples drawn (seeded) as negatives, per reference sample
    head: Literal["auto", "logistic", "ridge"] = "auto"  # auto: logistic for two-valued labels, ridge regression for numeric ones
    holdout: float = 0.2  # share of the labelled rows held out (seeded) for the manifest's AUROC / Spearman
    ngram_features: Literal["tokens", "reference"] = "tokens"  # the DSIR featurisers: tokenizer ids, or sha256 WordPunct n-grams
    num_buckets: int = Field(65_536, gt=0)
    ngrams: int = Field(2, ge=1, le=2)  # 1: unigrams; 2: unigrams + bigrams
    l2: float = Field(1e-4, ge=0.0)  # L2 penalty of the head
    max_iter: int = Field(200, gt=0)  # L-BFGS iterations (logistic head)
    # selection
    threshold: float | None = None  # keep only samples scoring at least this (still at most method.budget, best first)
    temperature: float = Field(0.0, ge=0.0)  # 0: top-K; > 0: sample without replacement, P proportional to exp(score / temperature)
    normalize: bool = True  # temperature in pool standard deviations: scores z-scored over the selectable pool before dividing
    # a categorical record field: each value gets the budget in proportion to its share of the pool; `clusters`: k-means
    # clusters of model.name's pooled embeddings (method.cluster's k-means) instead
    balance_by: str | None = None
    clusters: int | None = Field(None, gt=0)  # balance_by: clusters: how many (None: round(sqrt(selectable pool samples)))
    token_budget: int | None = Field(None, gt=0)  # select by tokens instead of method.budget: the shortest best-first prefix holding >= this many
    token_field: str | None = None  # token_budget's counts: a numeric record field (QuRating's token-count column); None: whitespace words
    dedup: bool = True  # collapse exact-duplicate pool texts before selecting

    @field_validator("holdout")
    @classmethod
    def _holdout_in_open_unit_interval(cls, value: float) -> float:
        if not 0.0 < value < 1.0:
            raise ValueError("must be in (0, 1)")
        return value

    @model_validator(mode="after")
    def _field_labels_name_their_field(self) -> "QualityConfig":
        if self.rater == "trained" and self.labels == "field" and not self.label_field:
            raise ValueError("labels: field needs method.quality.label_field (the record field holding each label)")
        if self.rater == "trained" and self.labels == "pairs" and not self.pairs_path:
            raise ValueError("labels: pairs needs method.quality.pairs_path (the judged pairs)")
        if self.clusters is not None and self.balance_by != "clusters":
            raise ValueError("clusters: only read with balance_by: clusters")
        if self.chunk_tokens is not None and self.rater != "model":
            raise ValueError("chunk_tokens: only a rater model's forward is chunked (rater: model)")
        return self


def _open_unit_interval(value: float | None) -> float | None:
    if value is not None and not 0.0 < value < 1.0:
        raise ValueError("must be in (0, 1): a sample goes when its cosine to an earlier one exceeds 1 - eps")
    return value


class ClusterConfig(_Section):
    """Cluster-diverse selection (METHODS.md 5.1): spherical k-means on the pool embeddings (the store
    RDS+ uses), per-cluster quotas, a within-cluster pick. The k-means keys also serve `semdedup`."""

    num_clusters: int | None = Field(None, gt=0)  # None: round(sqrt(unique pool samples))
    niter: int = Field(20, gt=0)
    max_points_per_centroid: int | None = Field(256, gt=0)  # training sample cap (None: train on the whole pool)
    init: Literal["random", "kmeans++"] = "random"  # random: k distinct samples, as faiss does
    backend: Literal["auto", "faiss", "faiss-gpu", "torch", "numpy"] = "auto"  # nearest-centroid search
    quota: Literal["equal", "size", "sqrt"] = "equal"  # per-cluster share of the budget
    pick: Literal["random", "nearest", "score"] = "random"  # within a cluster: seeded, nearest the centroid, best score
    score_from: str | None = None  # pick: score: a run folder with scores.parquet (id, score for every pool sample), or that file
    score_order: Literal["highest", "lowest"] = "highest"  # which end of score_from's scores is picked first
    dedup_eps: float | None = None  # SemDeDup before picking (method.semdedup.order); None: no dedup
    dedup: bool = True  # collapse exact-duplicate pool texts first

    @field_validator("dedup_eps")
    @classmethod
    def _eps_in_unit_interval(cls, value: float | None) -> float | None:
        return _open_unit_interval(value)


class SemDedupConfig(_Section):
    """SemDeDup (METHODS.md 5.3) on method.cluster's k-means; a budget below the survivors is picked
    by method.cluster's quota and pick."""

    eps: float = 0.05  # remove a sample whose cosine to an earlier one of its cluster exceeds 1 - eps
    order: Literal["hard", "easy", "random"] = "hard"  # hard: farthest from the centroid first (kept first)
    block_size: int = Field(1024, gt=0)  # similarity block edge (memory block_size^2 per cluster)

    @field_validator("eps")
    @classmethod
    def _eps_in_unit_interval(cls, value: float) -> float:
        return _open_unit_interval(value)


class ApplyConfig(_Section):
    """`dataselect apply`: a saved scorer over an input, keeping what reaches its threshold."""

    scorer: str | None = None  # a saved scorer's folder (a run's output/scorer, or the run folder)
    keep: float | None = Field(None, gt=0, le=1)  # the scorer's threshold(keep): its fitting pool's top fraction
    threshold: Union[float, list[float], None] = None  # or a score to reach (one per task for several)

    @model_validator(mode="after")
    def _one_cut(self) -> "ApplyConfig":
        if self.keep is not None and self.threshold is not None:
            raise ValueError("give keep or threshold, not both")
        return self


# method.name -> the class that scores, selects and declares itself ("module:Class", imported only when
# used). A new method is its module, a line here and, when it has options, its section in MethodConfig.
METHODS = {
    "rds": "dataselect.select.rds:RDSMethod",
    "dsir": "dataselect.select.dsir:DSIRMethod",
    "el2n": "dataselect.select.el2n:EL2NMethod",
    "cluster": "dataselect.select.cluster_method:ClusterMethod",
    "semdedup": "dataselect.select.cluster_method:SemDedupMethod",
    "color": "dataselect.select.color:ColorMethod",
    "betr": "dataselect.select.betr:BETRMethod",
    "quality": "dataselect.select.quality:QualityMethod",
    "less": "dataselect.select.less:LessMethod",
    "quad": "dataselect.select.quad:QuadMethod",
    "random": "dataselect.select.random:RandomMethod",
    "apply": "dataselect.select.apply:ApplyMethod",
}


class MethodConfig(_Section):
    """`method`: which method selects, how many samples, the seed, and each method's own section."""
    name: str = "rds"  # a key of METHODS
    budget: Union[int, float] = 1000  # a count (int >= 1) or a fraction of the pool in (0, 1]
    seed: int = 42
    # pool samples whose text equals a target sample's (whitespace normalised) are never selected
    exclude_target_copies: bool = True
    rds: RDSConfig = RDSConfig()
    dsir: DSIRConfig = DSIRConfig()
    el2n: EL2NConfig = EL2NConfig()
    cluster: ClusterConfig = ClusterConfig()
    semdedup: SemDedupConfig = SemDedupConfig()
    color: ColorConfig = ColorConfig()
    betr: BETRConfig = BETRConfig()
    quality: QualityConfig = QualityConfig()
    less: LessConfig = LessConfig()
    quad: QuadConfig = QuadConfig()
    apply: ApplyConfig = ApplyConfig()

    @field_validator("name")
    @classmethod
    def _known_method(cls, value: str) -> str:
        if value not in METHODS:
            close = difflib.get_close_matches(value, list(METHODS), n=1)
            hint = f" (did you mean '{close[0]}'?)" if close else ""
            raise ValueError(f"'{value}' is not one of {' | '.join(METHODS)}{hint}")
        return value

    @field_validator("budget", mode="before")
    @classmethod
    def _budget_is_not_bool(cls, value: Any) -> Any:
        # before pydantic's coercion, which would read `true` as the count 1
        if isinstance(value, bool):
            raise ValueError("must be a count (an integer >= 1) or a fraction in (0, 1], not true/false")
        return value

    @field_validator("budget")
    @classmethod
    def _budget_is_count_or_fraction(cls, value: Union[int, float]) -> Union[int, float]:
        if isinstance(value, int) and value < 1:
            raise ValueError("a count must be >= 1")
        if isinstance(value, float) and not 0.0 < value <= 1.0:
            raise ValueError("a fraction must be in (0, 1]; write a count as an integer")
        return value

    def budget_for(self, pool_size: int) -> int:
        """The number of samples to select from a pool of `pool_size` candidates."""
        if isinstance(self.budget, float):
            return max(1, min(pool_size, int(round(self.budget * pool_size))))
        return min(pool_size, self.budget)


class OutputConfig(_Section):
    """`output`: where the run writes, whether it also writes the selected rows, what the report breaks down by."""
    dir: str = "runs/latest"
    write: Literal["none", "jsonl", "parquet"] = "none"  # also materialise the selected rows
    show_top: int = Field(5, ge=0)  # print this many of the top selected samples at the end
    report_field: str | None = None  # report.html's composition by this input field (besides the ones found)

    @field_validator("dir")
    @classmethod
    def _expand_and_check_dir(cls, value: str) -> str:
        from dataselect.io.remote import is_url

        if is_url(value):
            return value  # object storage: the run writes a local copy in the cache, then uploads it (manifest.json last)
        # `~` as in input.path and runtime.cache_dir; a file here would only fail after the scoring
        expanded = os.path.expanduser(value)
        if Path(expanded).is_file():
            raise ValueError(f"{expanded} is an existing file, not a folder")
        return expanded


class RuntimeConfig(_Section):
    """`runtime`: device, executor and workers, batch and shard sizes, cache folder, progress bars."""
    device: Literal["auto", "cpu", "cuda"] = "auto"
    executor: Literal["local", "ray"] = "local"
    batch_tokens: int = Field(16384, gt=0)  # padded tokens per forward batch
    shard_size: int = Field(4096, gt=0)  # records per shard; also the window sorted by length for batching
    # worker processes that each score whole shards (0: this process); None: one per GPU on CUDA, else 0
    num_workers: int | None = Field(None, ge=0)
    devices: list[int] | None = None  # CUDA devices to use (default: every visible one)
    ray_address: str | None = None  # runtime.executor: ray: a cluster address (default: a local instance)
    cache_dir: str | None = None  # default: $XDG_CACHE_HOME/dataselect or ~/.cache/dataselect; a URL: stores in object storage
    # a cached store's files against the sizes and checksums its shards recorded: auto = checksums for stores
    # up to io/shards.py's VERIFY_FULL_BYTES (1 GiB), sizes above; full = always checksums; sizes = sizes only
    verify_cache: Literal["auto", "full", "sizes"] = "auto"
    # fsspec options for object-storage URLs (s3://, gs://, ...): credentials, endpoint_url; unset: the store's environment variables
    storage_options: dict[str, Any] = Field(default_factory=dict)
    progress: bool = True

    def cache_url(self) -> str | None:
        """runtime.cache_dir when it is an object-storage URL (the score stores live there), else None."""
        from dataselect.io.remote import is_url

        return self.cache_dir.rstrip("/") if is_url(self.cache_dir) else None

    def resolved_cache_dir(self) -> Path:
        """The local cache folder: runtime.cache_dir, its local mirror when it is a URL, or the default."""
        if url := self.cache_url():
            return cache_mirror(url)
        if self.cache_dir:
            return Path(self.cache_dir).expanduser()
        return default_cache_dir()


class Config(_Section):
    """A whole run's config: every section with its defaults (docs/config.md); build it with load_config."""
    input: InputConfig = InputConfig()
    target: TargetConfig = TargetConfig()
    model: ModelConfig = ModelConfig()
    method: MethodConfig = MethodConfig()
    output: OutputConfig = OutputConfig()
    runtime: RuntimeConfig = RuntimeConfig()


def without_secrets(dumped: dict[str, Any]) -> dict[str, Any]:
    """A dumped config (model_dump) with runtime.storage_options' values replaced: credentials are never printed
    or written into a manifest; the options' names stay."""
    options = dumped.get("runtime", {}).get("storage_options") or {}
    dumped["runtime"]["storage_options"] = {key: "<redacted>" for key in options}
    return dumped


def valid_keys(model: type[BaseModel] = Config, prefix: str = "") -> list[str]:
    """All dotted keys of the config, leaves and sections."""
    keys = []
    for name, field in model.model_fields.items():
        dotted = f"{prefix}{name}"
        keys.append(dotted)
        annotation = field.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            keys.extend(valid_keys(annotation, dotted + "."))
    return keys


def _suggest(key: str) -> str:
    keys = valid_keys()
    parent = key.rsplit(".", 1)[0] + "." if "." in key else ""
    siblings = [k for k in keys if k.startswith(parent) and "." not in k[len(parent):]]
    match = difflib.get_close_matches(key, siblings, n=1, cutoff=0.5) or difflib.get_close_matches(
        key, keys, n=1, cutoff=0.6
    )
    return f" (did you mean '{match[0]}'?)" if match else ""


def _first_error(error: ValidationError) -> str:
    detail = error.errors()[0]
    parts = [str(part) for part in detail["loc"]]
    if detail["type"] != "extra_forbidden":
        # drop pydantic's union-branch markers ('int', 'float', 'list[str]') that trail the real key
        known = set(valid_keys())
        while len(parts) > 1 and ".".join(parts) not in known:
            parts.pop()
    key = ".".join(parts)
    if detail["type"] == "extra_forbidden":
        return f"config error: unknown key '{key}'{_suggest(key)}"
    message = detail["msg"].removeprefix("Value error, ")
    return f"config error: {key}: {message} (got {detail.get('input')!r})"


def _annotation_at(dotted: str) -> Any:
    """The declared type of a dotted key (a section's model class for a section), or None if unknown."""
    annotation: Any = Config
    for part in dotted.split("."):
        if not _is_section(annotation) or part not in annotation.model_fields:
            return None
        annotation = annotation.model_fields[part].annotation
    return annotation


def _is_section(annotation: Any) -> bool:
    return isinstance(annotation, type) and issubclass(annotation, BaseModel)


def _wants_text(annotation: Any) -> bool:
    """A key whose values are only ever text (str, str | None, a Literal of strings, str | list[str]):
    its YAML scalars are kept as written, so `2024-01-01` stays a folder name and `no` a field name."""
    if annotation is str:
        return True
    origin = typing.get_origin(annotation)
    if origin is Literal:
        return all(isinstance(arg, str) for arg in typing.get_args(annotation))
    if origin in (Union, types.UnionType):
        return all(arg is type(None) or _wants_text(arg) for arg in typing.get_args(annotation))
    if origin is list:
        return typing.get_args(annotation) == (str,)
    return False


_NULL_TAG = "tag:yaml.org,2002:null"


def _construct(node: yaml.Node, annotation: Any) -> Any:
    """A YAML node as a Python value, typed by the config key it is for: sections recurse, text keys keep
    the scalar's text (a plain `null`/`~`/empty stays None), everything else is read as YAML."""
    if _is_section(annotation) and isinstance(node, yaml.MappingNode):
        loader = yaml.SafeLoader("")
        loader.flatten_mapping(node)  # YAML merge keys (<<)
        out: dict[Any, Any] = {}
        for key_node, value_node in node.value:
            key = loader.construct_object(key_node, deep=True)
            field = annotation.model_fields.get(key) if isinstance(key, str) else None
            out[key] = _construct(value_node, field.annotation if field is not None else None)
        return out
    if _wants_text(annotation):
        if isinstance(node, yaml.ScalarNode):
            return None if node.tag == _NULL_TAG else node.value
        if isinstance(node, yaml.SequenceNode) and all(isinstance(item, yaml.ScalarNode) for item in node.value):
            return [None if item.tag == _NULL_TAG else item.value for item in node.value]
    return yaml.SafeLoader("").construct_object(node, deep=True)


def _set_dotted(tree: dict[str, Any], dotted: str, value: Any) -> None:
    """Set one key; a mapping given for a section is merged into it key by key, not put in its place."""
    node = tree
    parts = dotted.split(".")
    for part in parts[:-1]:
        child = node.get(part)
        if not isinstance(child, dict):
            child = {}
            node[part] = child
        node = child
    if isinstance(value, dict) and _is_section(_annotation_at(dotted)):
        if not isinstance(node.get(parts[-1]), dict):
            node[parts[-1]] = {}
        for key, item in value.items():
            _set_dotted(tree, f"{dotted}.{key}", item)
        return
    node[parts[-1]] = value


def parse_override(text: str) -> tuple[str, Any]:
    """'method.budget=2000' -> ('method.budget', 2000); values are read as YAML, typed by the key:
    a text key keeps its value as text ('output.dir=2024-01-01' -> '2024-01-01')."""
    if "=" not in text:
        raise ConfigError(f"config error: override {text!r} is not of the form dotted.key=value")
    key, raw = text.split("=", 1)
    key = key.strip()
    if key not in valid_keys():
        raise ConfigError(f"config error: unknown key '{key}'{_suggest(key)}")
    if not raw.strip():
        return key, None
    if raw.strip() == "-" and _wants_text(_annotation_at(key)):
        return key, "-"  # standard input for a path (YAML would read a list of one null)
    try:
        node = yaml.compose(raw, Loader=yaml.SafeLoader)
    except yaml.YAMLError:
        return key, raw
    return key, None if node is None else _construct(node, _annotation_at(key))


def build_config(tree: dict[str, Any] | None, overrides: dict[str, Any] | list[str] | None = None) -> Config:
    """Validate a config tree (as read from YAML) after applying dotted overrides, in order; a mapping
    for a section ({'method': {'budget': 5}}) is merged into that section."""
    tree = copy.deepcopy(dict(tree or {}))
    pairs = [parse_override(item) for item in overrides] if isinstance(overrides, list) else list((overrides or {}).items())
    for key, value in pairs:
        if key not in valid_keys():
            raise ConfigError(f"config error: unknown key '{key}'{_suggest(key)}")
        _set_dotted(tree, key, value)
    try:
        config = Config.model_validate(tree)
    except ValidationError as error:
        raise ConfigError(_first_error(error)) from None
    _check_text_fields(config)
    return config


def _check_text_fields(config: Config) -> None:
    """One of messages_field, prompt_field (+ response_field) and text_field says where a source's text is; with two set,
    one would be ignored without a word (a YAML file's prompt_field under `--set input.text_field=...`)."""
    for role in ("input", "target"):
        source = getattr(config, role)
        # prompt_field and response_field are one choice (render.py reads either as a pair)
        chosen = [key for key in ("messages_field", "prompt_field", "response_field", "text_field") if getattr(source, key)]
        if "prompt_field" in chosen and "response_field" in chosen:
            chosen.remove("response_field")
        if len(chosen) > 1:
            raise ConfigError(
                f"config error: {role}.{chosen[0]} and {role}.{chosen[1]} are both set; only one of messages_field, "
                f"prompt_field (+ response_field) and text_field can say where the text is (set the others to null)"
            )


def _read_yaml(text: str, label: str) -> dict[str, Any]:
    """A config file's mapping, typed by the config's keys; a YAML error names its line and column."""
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(error, "problem", None) or str(error).splitlines()[0]
        context, context_mark = getattr(error, "context", None), getattr(error, "context_mark", None)
        if context and context_mark is not None and (mark is None or context_mark.line != mark.line):
            problem += f" ({context} that starts at line {context_mark.line + 1}, column {context_mark.column + 1})"
        raise ConfigError(f"config error: {label} is not valid YAML{where}: {problem}") from None
    if node is None:
        return {}
    if not isinstance(node, yaml.MappingNode):
        raise ConfigError(f"config error: {label} must hold a mapping of sections (input, model, method, ...)")
    return _construct(node, Config)


def load_config(path: str | os.PathLike | None = None, overrides: dict[str, Any] | list[str] | None = None) -> Config:
    """Read a YAML config file (optional) and apply overrides ({'method.budget': 10} or ['method.budget=10'])."""
    tree: dict[str, Any] = {}
    if path is not None:
        try:
            text = Path(path).read_text(encoding="utf-8")
        except OSError as error:
            raise ConfigError(f"config error: cannot read {path}: {error.strerror}") from None
        tree = _read_yaml(text, str(path))
    return build_config(tree, overrides)


class EvalConfig(_Section):
    """`dataselect eval` (dataselect/evaluate; docs/eval.md): the same small causal LM fine-tuned on each arm
    for the same steps over several seeds, measured in bits per byte on a held-out eval target."""

    seeds: int = Field(3, ge=2)  # training seeds per arm (a confidence interval needs two)
    seed: int = 0  # the first seed; the others follow it
    steps: list[int] = [200]  # optimiser steps per training; the arms train at the first, a keep sweep at each
    lr: float = Field(1e-3, gt=0)  # peak learning rate of each fine-tune (10% warm-up, cosine decay)
    checkpoints: int = Field(1, ge=1)  # bits per byte averaged over this many of the last checkpoints
    keep: list[float] = []  # keep sweep: top fractions of the run's pool scores, each in (0, 1]
    pool_baseline: bool = False  # also train on the whole pool at equal steps
    rs2: bool = False  # also train with RS2 (a fresh random subset of the selection's size every round) at equal steps
    model: str | None = None  # a causal LM (name or folder) to fine-tune instead of the pre-trained proxy
    batch_tokens: int = Field(16384, gt=0)  # token budget of an evaluation batch
    device: Literal["auto", "cpu", "cuda"] = "auto"
    cache_dir: str | None = None  # where the pre-trained proxy is cached (default: the run's runtime.cache_dir)
    threads: int | None = Field(None, gt=0)  # torch intra-op threads while training (default torch's; 1 suits a tiny proxy on a busy CPU)
    # the proxy pre-trained once on a seeded sample of the pool (cached); its batch_size and context serve the fine-tunes too
    proxy: ProxyConfig = ProxyConfig(steps=300, epochs=4.0, sample=5000, context=64, vocab=2048, hidden=128, lr=6e-3)

    @field_validator("steps")
    @classmethod
    def _positive_steps(cls, value: list[int]) -> list[int]:
        if not value or any(step <= 0 for step in value):
            raise ValueError("each step count must be > 0")
        return value

    @field_validator("keep")
    @classmethod
    def _keep_fractions(cls, value: list[float]) -> list[float]:
        if any(not 0 < keep <= 1 for keep in value):
            raise ValueError("each keep fraction must be in (0, 1]")
        return sorted(set(value))


def eval_config(values: dict[str, Any]) -> EvalConfig:
    """An EvalConfig from flag values, or a ConfigError naming the setting (the flag's name with _ for -)."""
    try:
        return EvalConfig.model_validate(values)
    except ValidationError as error:
        detail = error.errors()[0]
        key = ".".join(str(part) for part in detail["loc"] if not isinstance(part, int))
        if detail["type"] == "extra_forbidden":
            raise ConfigError(f"config error: unknown eval setting '{key}' (docs/eval.md lists them)") from None
        raise ConfigError(f"config error: eval setting {key}: {detail['msg'].removeprefix('Value error, ')} (got {detail.get('input')!r})") from None
