"""Quad (METHODS.md 5.2) on LESS's influence: a bandit over the pool's k-means clusters decides whose
gradients are computed.

score:  LESS's warm-up and target features (select/less.py); the pool's embeddings and k-means (the
        cluster method's store and clustering, method.cluster.*); then rounds: the bandit
        (select/bandit.py) picks method.quad.clusters_per_round clusters by UCB, draws the next
        method.quad.probes rows of each (a seeded order inside a cluster), and the gradient stage runs
        on those rows only (scoring/sampled.py's ChosenStage: one cached store per round, so a run
        resumes round by round). A pull's reward is the mean influence of its probes (max over tasks)
        minus method.quad.threshold (default: the mean influence of every row drawn so far); rows of a
        pull with a positive reward are kept. Rounds stop once the kept rows reach method.quad.oversample
        times the budget, the drawn rows reach method.quad.max_fraction of the pool, or every cluster is drawn out.
select: every accepted pull's best method.quad.picks_per_pull probes (Quad's unit of selection is the
        accepted pull, which keeps the selection spread over the clusters the bandit accepted), then the
        rest of the budget by influence among the rows whose gradients were computed (round-robin across tasks).
The manifest reports the fraction of the pool featurised and the pulls per cluster.
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np

from dataselect.io.render import TextRenderer
from dataselect.scoring.loop import ScoredSource
from dataselect.select.base import Excluded, Selection, top_k
from dataselect.select.figures import Bars, Figure, Table
from dataselect.select.less import LessMethod, store_features


def best_rows(rows: np.ndarray, signal: np.ndarray, count: int) -> np.ndarray:
    """A pull's `count` rows with the highest finite signal (ties: the lower row). rows [m] -> [<= count]"""
    rows = np.sort(rows)  # top_k breaks ties by position: sorted, that is the lower row
    return rows[top_k(signal[rows], count, np.isfinite(signal[rows]))]


def accepted_picks(picks: np.ndarray, signal: np.ndarray, k: int, eligible: np.ndarray) -> np.ndarray:
    """The accepted pulls' rows that go into a selection of k: the eligible ones, and the best k by signal if
    there are more (ties: the lower row). picks [P], signal [N], eligible [N] -> [<= k]"""
    picked = np.zeros(len(signal), bool)  # [N]
    picked[picks] = True
    return top_k(signal, k, picked & eligible)


class QuadMethod(LessMethod):
    """`method.name: quad`: a UCB bandit over k-means clusters; LESS influence for the samples it draws only."""

    name = "quad"
    description = "Quad: a UCB bandit over k-means clusters of the pool draws samples; LESS influence is computed only for those (needs target.path)"

    def loads(self, config: Any) -> str | None:
        return "model"  # the embedding model of the clusters (its tokenizer also serves the warm-up proxy)

    def options(self, context: Any) -> Any:
        return context.config.method.quad

    def score_pool(self, context: Any, renderer: TextRenderer) -> dict[str, ScoredSource]:
        """The pool's embeddings and clusters, then the bandit's rounds of gradient features."""
        from dataselect.scoring.embed import EmbedStage
        from dataselect.scoring.gradients import gradient_stage
        from dataselect.scoring.sampled import ChosenStage
        from dataselect.select.bandit import ClusterBandit
        from dataselect.select.cluster import random_keys
        from dataselect.select.cluster_method import pool_clusters

        config, options = context.config, context.config.method.quad
        with context.stats.stage("load_model"):
            embed = EmbedStage(config.model, config.runtime.device, config.runtime.batch_tokens)
        pool = context.score_source("pool", config.input, embed, TextRenderer(config.input, embed.tokenizer, embed.spec.causal_lm))
        store = pool.store
        n = int(store.rows().sum())
        eligible = context.eligible(pool, dedup=options.dedup)  # [N] drawable rows
        k = config.method.cluster.num_clusters or max(1, round(math.sqrt(int(eligible.sum()))))
        with context.stats.stage("cluster"):
            self.clusters, _ = pool_clusters(store, config, context.cache_root, k, np.flatnonzero(eligible))
        keys = random_keys(n, config.method.seed)  # [N] the drawing order inside a cluster
        queues = []
        for c in range(self.clusters.k):
            members = self.clusters.members(c)
            members = members[eligible[members]]
            queues.append(members[np.lexsort((members, keys[members]))])
        bandit = ClusterBandit(queues, self.clusters.centroids, options.alpha, options.neighbour_radius)
        positions = store.column("position").to_numpy().astype(np.int64)  # [N]
        row_of = {int(p): r for r, p in enumerate(positions)}
        self.influence = np.full((n, len(self.task_names)), np.nan)  # [N, T] NaN: not featurised (or no gradient)
        featurised, kept = np.zeros(n, bool), np.zeros(n, bool)
        picks: list[np.ndarray] = []  # each accepted pull's best rows, in the order the pulls were accepted
        cap = max(1, int(options.max_fraction * n))
        budget = context.budget(eligible)
        stage = gradient_stage(config, self.warmup, "adam", config.input)
        scored, rounds = {"pool": pool}, 0
        while kept.sum() < options.oversample * budget and featurised.sum() < cap:
            draws = {}
            for c in bandit.pick(options.clusters_per_round):
                room = cap - int(featurised.sum()) - sum(len(d) for d in draws.values())
                if room <= 0:
                    break
                draws[c] = bandit.draw(c, min(options.probes, room))
            if not draws:
                break  # every cluster is drawn out
            drawn = np.concatenate(list(draws.values()))
            name = f"round:{rounds}"
            scored[name] = context.score_source(name, config.input, ChosenStage(stage, positions[drawn].tolist()), renderer)
            self._record(scored[name], row_of)
            featurised[drawn] = True
            signal = np.nanmax(self.influence, axis=1) if self.influence.shape[1] > 1 else self.influence[:, 0]  # [N]
            threshold = options.threshold if options.threshold is not None else float(np.nanmean(signal[featurised]))
            for c, rows in draws.items():
                scores = signal[rows][np.isfinite(signal[rows])]
                reward = float(scores.mean()) - threshold if len(scores) else float("nan")
                bandit.update(c, reward)
                if reward > 0:
                    kept[rows] = True
                    picks.append(best_rows(rows, signal, options.picks_per_pull))
            rounds += 1
        self.quad = {"rounds": rounds, "featurised": int(featurised.sum()), "featurised_fraction": round(float(featurised.sum()) / max(n, 1), 6),
                     "kept": int(kept.sum()), "accepted_pulls": len(picks), "clusters": int(self.clusters.k), "pulls": bandit.pulls.tolist(),
                     "cluster_sizes": [int(len(q)) for q in queues]}
        self.featurised = featurised
        self.pull_picks = np.concatenate([np.zeros(0, np.int64), *picks])  # [P] each row once: a cluster's pulls never overlap
        return scored

    def _record(self, part: ScoredSource, row_of: dict[int, int]) -> None:
        """One round's influence into self.influence, by the rows' stream positions (NaN for rows without a gradient)."""
        store = part.store
        if not int(store.rows().sum()):
            return
        rows = np.array([row_of[int(p)] for p in store.column("position").to_numpy()], np.int64)
        scores = self.matcher.scores(store_features(store))  # [n, T]
        scores[np.array([e is not None for e in store.column("error").to_pylist()], bool)] = np.nan
        self.influence[rows] = scores

    def select(self, context: Any, scored: dict[str, ScoredSource]) -> Selection:
        from dataselect.select.rds import round_robin

        pool = scored["pool"]
        scores = self.influence  # [N, T]
        unscored = ~np.isfinite(scores[:, 0])
        eligible = context.eligible(pool, dedup=self.options(context).dedup,
                                    unscored=Excluded(unscored, "without a gradient (not drawn by the bandit, or nothing to score)"))
        k = context.budget(eligible)
        signal = np.nanmax(scores, axis=1) if scores.shape[1] > 1 else scores[:, 0]  # [N] the best task's influence
        picked = accepted_picks(self.pull_picks, signal, k, eligible)  # [P'] the accepted pulls' rows
        rest = eligible.copy()
        rest[picked] = False
        if scores.shape[1] == 1:
            more, more_task = top_k(scores[:, 0], k - len(picked), rest), np.zeros(k - len(picked), np.int64)
        else:
            more, more_task = round_robin(scores, k - len(picked), rest)
        chosen = np.concatenate([picked, more])
        task = np.concatenate([np.argmax(np.nan_to_num(scores[picked], nan=-np.inf), axis=1), more_task]).astype(np.int64)
        order = np.argsort(-signal[chosen], kind="stable")  # ranked by influence, wherever a row came from
        chosen, task, by_pull = chosen[order], task[order], (np.arange(len(chosen)) < len(picked))[order]
        labels = self.clusters.labels
        metrics = {**self.metrics(scores, unscored & self.featurised),
                   "quad": {**self.quad, "selected_clusters": int(len(np.unique(labels[chosen]))), "selected_by_pull": int(len(picked))}}
        columns = {"cluster": labels[chosen].astype(np.int64).tolist(), "picked_by": ["pull" if b else "influence" for b in by_pull]}
        return self.selection(pool, scores, chosen, task, eligible, metrics, columns)

    def figures(self, selection: Selection) -> list[Figure]:
        out = super().figures(selection)
        quad = selection.metrics.get("quad") or {}
        pulls = quad.get("pulls") or []
        if pulls:
            out.append(Table(["rounds", "featurised", "featurised fraction", "kept", "accepted pulls", "clusters", "clusters in the selection",
                              "selected by pull"],
                             [[quad.get("rounds"), quad.get("featurised"), quad.get("featurised_fraction"), quad.get("kept"), quad.get("accepted_pulls"),
                               quad.get("clusters"), quad.get("selected_clusters"), quad.get("selected_by_pull")]]))
            out.append(Bars(list(range(len(pulls))), pulls, "bandit pulls per cluster", "cluster", "pulls",
                            "How often the bandit drew probes from each k-means cluster (a pull computes the gradients of "
                            "method.quad.probes samples)."))
        return out

