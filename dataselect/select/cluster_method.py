"""Methods `cluster` (METHODS.md 5.1: k-means quotas, optional SemDeDup first) and `semdedup`
(5.3: SemDeDup, then every survivor or a budget of them).

score:  the pool's embeddings, the same store RDS+ uses (a run over the same pool and model is a
        cache hit)
select: spherical k-means over the store (cached beside it: a later run with the same k-means
        settings reuses the clustering) -> [SemDeDup per cluster] -> per-cluster quotas -> the
        within-cluster pick (random, nearest the centroid, or a score from an earlier run).
"""
from __future__ import annotations

import hashlib
import json
import logging
import math
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from dataselect.config import Config
from dataselect.errors import ConfigError
from dataselect.index import Clusters, StoreVectors, cluster_pool
from dataselect.index.backends import resolve_backend
from dataselect.io.outputs import SCORES_FILE
from dataselect.io.render import TextRenderer
from dataselect.io.shards import ShardStore
from dataselect.scoring.loop import ScoredSource
from dataselect.select.base import Declared, Excluded, Selection, selected_rows
from dataselect.select.cluster import pick_by_quota, quotas, random_keys
from dataselect.select.figures import Figure, Note, SizedBars, Table
from dataselect.select.rds import EmbeddingScorerBase
from dataselect.select.semdedup import semdedup

logger = logging.getLogger(__name__)

CLUSTER_FORMAT = 1  # bump when the k-means would give other clusters for the same settings (the cache key)


EXAMPLES = 8  # removed near-duplicates the report shows beside their kept twins


def removed_examples(store: ShardStore, dedup: Any, removed: np.ndarray, kept: np.ndarray) -> list[dict[str, Any]]:
    """The removed samples whose twin was kept, least similar first (those closest to the threshold tell
    most about eps), as {removed, kept: "id: preview", cosine}."""
    rows = np.flatnonzero(removed & (dedup.twin >= 0))
    rows = rows[kept[dedup.twin[rows]]]
    rows = rows[np.lexsort((rows, dedup.max_earlier[rows]))][:EXAMPLES]
    if not len(rows):
        return []
    gone, twins = store.take(rows, ["id", "preview"]), store.take(dedup.twin[rows], ["id", "preview"])
    shown = lambda table, i: f"{table['id'][i]}: {' '.join(str(table['preview'][i]).split())[:160]}"  # noqa: E731
    return [{"removed": shown(gone, i), "kept": shown(twins, i), "cosine": round(float(dedup.max_earlier[row]), 4)} for i, row in enumerate(rows)]


def read_pool_scores(path: str, store: ShardStore) -> np.ndarray:
    """Scores from an earlier run over the same pool, in this store's row order. `path`: a run folder
    holding scores.parquet, or such a file (columns id, score: every pool sample exactly once). -> [N]"""
    key = "method.cluster.score_from"
    file = Path(path) / SCORES_FILE if Path(path).is_dir() else Path(path)
    if not file.is_file():
        raise ConfigError(f"config error: {key}: {file} does not exist (a run folder over the same pool with {SCORES_FILE}, or such a file)")
    try:
        table = pq.read_table(file, columns=["id", "score"])
    except (pa.ArrowException, OSError) as error:
        raise ConfigError(f"config error: {key}: cannot read id and score from {file}: {str(error).splitlines()[0]}") from None
    ids = table.column("id").cast(pa.string())
    if pc.count_distinct(ids).as_py() != len(ids):
        raise ConfigError(f"config error: {key}: {file} holds some ids more than once; it is not one score per pool sample")
    pool_ids = store.column("id")
    where = pc.index_in(pool_ids, value_set=ids.combine_chunks())  # [N] row in the score file, null when missing
    missing = where.null_count
    if missing or len(ids) != len(pool_ids):
        raise ConfigError(
            f"config error: {key}: {file} does not match the pool: {missing:,} of {len(pool_ids):,} pool samples have no score "
            f"and it holds {len(ids) - (len(pool_ids) - missing):,} ids the pool does not (is it a run over another pool?)"
        )
    scores = table.column("score").cast(pa.float64()).to_numpy(zero_copy_only=False)  # [rows in file]
    return scores[where.to_numpy(zero_copy_only=False).astype(np.int64)]


def cluster_key(store: ShardStore, config: Config, k: int, backend: str) -> dict[str, Any]:
    """What decides a pool's clustering: its embedding store and the k-means settings."""
    options = config.method.cluster
    return {"format": CLUSTER_FORMAT, "store": str(store.root.resolve()), "k": k, "niter": options.niter, "seed": config.method.seed,
            "max_points_per_centroid": options.max_points_per_centroid, "init": options.init, "backend": backend,
            "exact_dedup": options.dedup}


def pool_clusters(store: ShardStore, config: Config, cache_root: Path, k: int, train_rows: np.ndarray) -> tuple[Clusters, str]:
    """The pool's k-means, from the cache when an earlier run made it with the same settings. -> (clusters, "hit" | "miss")"""
    options = config.method.cluster
    try:
        backend = resolve_backend(options.backend, config.runtime.device)
    except ValueError as error:
        raise ConfigError(f"config error: method.cluster.backend: {error}") from None
    key = cluster_key(store, config, k, backend)
    folder = Path(cache_root) / "clusters" / hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:20]
    cached = Clusters.load(folder)
    if cached is not None:
        return cached, "hit"
    clusters = cluster_pool(StoreVectors(store), k, options.niter, config.method.seed, options.max_points_per_centroid, options.backend,
                            config.runtime.device, progress=config.runtime.progress, init=options.init, train_rows=train_rows)
    clusters.save(folder)
    return clusters, "miss"


def _torch_device(device: str) -> str:
    import torch

    return "cuda" if device != "cpu" and torch.cuda.is_available() else "cpu"


class ClusterMethod(Declared):
    """`method.name: cluster`: k-means quotas with a pick inside each cluster, optionally after semantic dedup."""
    name = "cluster"
    description = "cluster-diverse: spherical k-means on pooled embeddings, per-cluster quotas, a pick inside each (random, nearest, score), optional SemDeDup"
    always_dedup = False  # semdedup: SemDeDup at method.semdedup.eps whatever method.cluster.dedup_eps says

    def score(self, context) -> dict[str, ScoredSource]:
        """The pool's embeddings: the same stage, rendering and store as RDS+'s pool (a cache hit after it)."""
        from dataselect.scoring.embed import EmbedStage

        config = context.config
        with context.stats.stage("load_model"):
            stage = EmbedStage(config.model, config.runtime.device, config.runtime.batch_tokens)
        renderer = TextRenderer(config.input, stage.tokenizer, stage.spec.causal_lm)
        self.spec, self.render_style = stage.spec, renderer.conversation_style
        return {"pool": context.score_source("pool", config.input, stage, renderer)}

    def select(self, context, scored: dict[str, ScoredSource]) -> Selection:
        config = context.config
        options = config.method.cluster
        pool = scored["pool"]
        store = pool.store
        hashes = store.column("text_hash").to_numpy()
        eligible = context.eligible(pool, dedup=options.dedup)  # [N]
        unique = int(eligible.sum())
        budget = context.budget(eligible)  # of the unique samples, before semantic dedup
        self._check(config, unique)
        k = options.num_clusters or max(1, round(math.sqrt(unique)))
        given = self._given_scores(config, store)  # [N] or None; read before any heavy work, so a bad score_from fails fast

        clusters, cluster_cache = pool_clusters(store, config, context.cache_root, k, np.flatnonzero(eligible))
        self.clusters = clusters
        priority = {"random": lambda: random_keys(len(hashes), config.method.seed), "nearest": lambda: clusters.sims.astype(np.float64),
                    "score": lambda: given if options.score_order == "highest" else -given}[options.pick]()  # [N] higher first
        unique_sizes = np.bincount(clusters.labels[eligible], minlength=k)  # [k] before semantic dedup
        eps = config.method.semdedup.eps if self.always_dedup else options.dedup_eps
        dedup_metrics: dict[str, Any] = {}
        extra_columns: dict[str, Any] = {}
        if eps is not None:
            dedup = semdedup(clusters, StoreVectors(store), config.method.semdedup.order, config.method.seed, eligible,
                             config.method.semdedup.block_size, _torch_device(config.runtime.device))
            removed = dedup.removed(eps)
            eligible &= ~removed
            context.exclude("near_duplicate", Excluded(removed, f"near-duplicates removed by semantic dedup (cosine > {1 - eps:g})"))
            dedup_metrics = {"eps": eps, "order": config.method.semdedup.order, "removed": int(removed.sum()),
                             "removed_per_cluster": dedup.removed_per_cluster(eps, k).tolist(),
                             "examples": removed_examples(store, dedup, removed, eligible)}
            twins = store.column("id").cast(pa.string()).take(pa.array(np.maximum(dedup.twin, 0)))  # [N]
            extra_columns = {"near_duplicate_of": pc.if_else(pa.array(removed), twins, pa.scalar(None, pa.string())),
                             "near_duplicate_cosine": pa.array(dedup.max_earlier.astype(np.float64), mask=~removed)}

        sizes = np.bincount(clusters.labels[eligible], minlength=k)  # [k] candidates per cluster
        if eps is not None:
            logger.info("semantic dedup at eps %g removed %d of %d unique samples", eps, dedup_metrics["removed"], unique)
        if budget > sizes.sum():
            if not self.always_dedup:  # semdedup's budget is "at most": 1.0 asks for every survivor
                logger.warning("semantic dedup left %d samples, fewer than the budget of %d: all of them are selected", sizes.sum(), budget)
            budget = int(sizes.sum())
        quota = quotas(sizes, budget, options.quota)
        chosen, within = pick_by_quota(clusters.labels, priority, quota, eligible)
        scores = priority[chosen] if options.pick != "score" or options.score_order == "highest" else -priority[chosen]
        labels = clusters.labels[chosen]
        return Selection(
            **selected_rows(store, chosen),
            scores=scores.astype(np.float64),
            columns={"cluster": labels.astype(np.int64).tolist(), "cluster_rank": within.tolist()},
            metrics={
                "num_clusters": k,
                "quota": options.quota,
                "pick": options.pick,
                "score_from": options.score_from,
                "kmeans": clusters.info,
                "cluster_cache": cluster_cache,
                "cluster_sizes": unique_sizes.tolist(),  # unique samples per cluster
                "candidates_per_cluster": sizes.tolist(),  # ... left after semantic dedup
                "selected_per_cluster": np.bincount(labels, minlength=k).tolist(),
                "dedup": dedup_metrics or None,
                "duplicates_collapsed": int(len(hashes) - unique),
            },
            scored=len(hashes),
            unique=unique,
            pool_scores=priority,
            ranking="random" if options.pick == "random" else "per-group",
            pool_columns=extra_columns,
        )

    def figures(self, selection: Selection) -> list[Figure]:
        metrics = selection.metrics
        sizes = np.asarray(metrics.get("cluster_sizes") or [], np.int64)
        if not len(sizes):
            return []
        dedup = metrics.get("dedup") or {}
        overlays = {"selected": metrics.get("selected_per_cluster"), "removed by semantic dedup": dedup.get("removed_per_cluster")}
        out: list[Figure] = [
            Table(["clusters", "smallest", "median", "largest", "removed by semantic dedup"],
                  [[len(sizes), int(sizes.min()), float(np.median(sizes)), int(sizes.max()), dedup.get("removed")]]),
            SizedBars(sizes.tolist(), {name: counts for name, counts in overlays.items() if counts}, "cluster sizes",
                      "Unique samples per cluster (grey), largest first, with the rows selected from each and those semantic dedup removed.")]
        examples = dedup.get("examples") or []
        if examples:
            out += [Note(f"The {len(examples)} removed near-duplicates closest to the threshold (cosine {1 - dedup['eps']:g}), beside the "
                         "sample each was removed for, which was kept: if these pairs are not duplicates to you, lower method.semdedup.eps. "
                         "scores.parquet names every removed sample's twin (near_duplicate_of)."),
                    Table(["removed", "kept twin", "cosine"], [[e["removed"], e["kept"], e["cosine"]] for e in examples])]
        return out

    def saved_scorer(self, context: Any, folder: Any, selection: Selection) -> None:
        """The centroids and the model and rendering that embed a record: a record's cluster and cosine to its centroid."""
        from dataselect.scorer.base import portable_model, render_fields, save_scorer

        config = context.config
        centroids = self.clusters.centroids
        # the thresholds' reference: the pool's cosines by the scorer's own formula, so that apply over this pool
        # keeps exactly the fraction asked (the k-means backend's cosines differ from it in the last bits)
        sims = np.concatenate([nearest_centroid(vectors, centroids)[1] for _, vectors in context.scored["pool"].store.iter_shards(columns=["id"])])
        save_scorer(folder, context, selection, ["cluster"], {
            "model": portable_model(config.model, self.spec), "render": render_fields(config.input, self.render_style),
        }, {"centroids": centroids}, scores=sims)

    def _check(self, config: Config, unique: int) -> None:
        """The config errors that need the pool's size."""
        options = config.method.cluster
        if options.num_clusters is not None and options.num_clusters > unique:
            raise ConfigError(f"config error: method.cluster.num_clusters: {options.num_clusters:,} clusters for {unique:,} unique samples; "
                              f"use at most {unique:,}")

    def _given_scores(self, config: Config, store: ShardStore) -> np.ndarray | None:
        """pick: score's scores from method.cluster.score_from, in store row order. -> [N] float64 or None"""
        options = config.method.cluster
        if options.pick != "score":
            if options.score_from is not None:
                raise ConfigError(f"config error: method.cluster.score_from: only read with method.cluster.pick: score (got pick: {options.pick})")
            return None
        if options.score_from is None:
            raise ConfigError("config error: method.cluster.score_from: pick: score needs an earlier run over the same pool (its folder)")
        return read_pool_scores(options.score_from, store)


class SemDedupMethod(ClusterMethod):
    """`method.name: semdedup`: SemDeDup inside k-means clusters; every survivor, or a budget of them."""
    name = "semdedup"
    description = "SemDeDup: drop near-duplicates inside each k-means cluster of pooled embeddings; keep every survivor or a budget"
    saved_scorer = None
    no_scorer = ("SemDeDup is global by nature: whether a sample survives depends on the others in its cluster, so no scorer can "
                 "judge a record alone (restrict a later run to the survivors with input.ids_from instead)")
    always_dedup = True


def nearest_centroid(vectors: np.ndarray, centroids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(nearest centroid [n] int64, cosine to it [n] float64) of unit vectors [n, d] (any float dtype) and
    unit centroids [k, d]: the cluster scorer's one formula."""
    cosines = np.asarray(vectors, np.float32) @ np.asarray(centroids, np.float32).T  # [n, k]
    labels = cosines.argmax(axis=1)
    return labels, cosines[np.arange(len(labels)), labels].astype(np.float64)


class ClusterScorer(EmbeddingScorerBase):
    """cluster reloaded: a record's cluster (its nearest centroid) and cosine to it. `score` gives the
    cosine ([n]); `assign` gives both."""

    method = "cluster"

    def assign(self, records: Any) -> tuple[np.ndarray, np.ndarray]:
        """(cluster [n] int64, -1 for bad input; cosine to it [n] float64, NaN for bad input)."""
        from dataselect.scorer.base import as_records, rendered

        records = as_records(records)
        texts, rows = rendered(self.renderer, records)
        labels, sims = np.full(len(records), -1, np.int64), np.full(len(records), np.nan)
        if texts:
            labels[rows], sims[rows] = self._nearest(self.vectors(texts))
        return labels, sims

    def _nearest(self, vectors: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return nearest_centroid(vectors, self.arrays["centroids"])

    def score_texts(self, texts: list[str], records: list[dict]) -> np.ndarray:
        return self._nearest(self.vectors(texts))[1][:, None]  # [n, 1]


ClusterMethod.scorer_type = ClusterScorer
