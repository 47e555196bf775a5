"""EL2N / loss selection (METHODS.md section 3): score every pool sample with a causal LM or the
trained proxies (scoring/loss.py), then keep a window of the scores sorted ascending:

    hardest   the `size` highest scores (Data Diet's keep_max_scores)
    easiest   the `size` lowest (keep_min_scores)
    middle    the window [offset, offset + size); offset defaults to the centre, (N - size) // 2.
              offset = N - size is keep-hardest and offset = 0 keep-easiest.

Ranks: easiest lists the lowest score first; hardest and middle the highest first. Ties in the
ascending sort go to the earlier pool row, so the selection is a function of the scores alone.
"""
from __future__ import annotations

from typing import Any, Callable

import numpy as np

from dataselect.errors import ConfigError, InputError
from dataselect.io.render import TextRenderer
from dataselect.scorer.base import Scorer, render_fields, save_scorer, scorer_renderer
from dataselect.scoring.loop import ScoredSource
from dataselect.select.base import Declared, Excluded, Selection, first_occurrences, selected_rows
from dataselect.select.figures import Curves, Figure, Table, seed_curves


def window_start(n: int, size: int, keep: str, offset: int | None = None) -> int:
    """Where the kept window starts in the ascending order of n scores."""
    if size > n:
        raise ConfigError(f"config error: method.budget: {size} is more than the {n} pool samples that can be selected (scored and unique)")
    if offset is not None and keep != "middle":
        raise ConfigError(f"config error: method.el2n.offset: only used with keep: middle (keep is {keep!r})")
    if keep == "hardest":
        return n - size
    if keep == "easiest":
        return 0
    if keep != "middle":
        raise ConfigError(f"config error: method.el2n.keep: {keep!r} is not one of hardest, easiest, middle")
    if offset is None:
        return (n - size) // 2
    if offset + size > n:
        raise ConfigError(
            f"config error: method.el2n.offset: {offset} + budget {size} is more than the {n} selectable pool samples "
            f"(at most {n - size})"
        )
    return offset


def select_window(scores: np.ndarray, size: int, keep: str, offset: int | None = None, eligible: np.ndarray | None = None) -> np.ndarray:
    """Indices of the kept window in rank order. scores [N] (NaN: no score, never kept), eligible [N]
    bool or None -> [size] int64"""
    scores = np.asarray(scores, np.float64)
    ok = np.isfinite(scores) if eligible is None else (np.asarray(eligible, bool) & np.isfinite(scores))
    candidates = np.flatnonzero(ok)  # [M]
    ascending = candidates[np.lexsort((candidates, scores[candidates]))]  # [M] ties: earlier row first
    start = window_start(len(candidates), size, keep, offset)
    window = ascending[start : start + size]
    return (window if keep == "easiest" else window[::-1]).astype(np.int64)


def bad_scores(errors: list[str | None], id_of: Callable[[int], str], on_error: str) -> np.ndarray:
    """[N] bool: samples the loss stage could not score (id_of(row) names one in the message). Under
    on_error: fail the first one stops the run; when no sample can be scored the run stops either way."""
    bad = np.array([e is not None for e in errors], bool)
    first = int(np.argmax(bad)) if bad.any() else -1
    if first >= 0 and on_error == "fail":
        raise InputError(f"input error: {id_of(first)}: {errors[first]}")
    if len(bad) and bad.all():
        raise InputError(f"input error: input.path: no pool sample can be scored (the first, {id_of(first)}: {errors[first]})")
    return bad


def window_metrics(scores: np.ndarray, chosen: np.ndarray, keep: str, score_name: str, n_bad: int) -> dict[str, Any]:
    """The manifest's method metrics: which window, its score range, and the pool's."""
    valid = scores[np.isfinite(scores)]
    picked = scores[chosen]
    return {
        "score": score_name,
        "keep": keep,
        "window_min": float(picked.min()) if len(picked) else None,
        "window_max": float(picked.max()) if len(picked) else None,
        "pool_mean": float(valid.mean()) if len(valid) else None,
        "pool_min": float(valid.min()) if len(valid) else None,
        "pool_max": float(valid.max()) if len(valid) else None,
        "unscored_bad": n_bad,
    }


class EL2NMethod(Declared):
    """Score phase: the loss stage over the pool (after training the proxies, when they are used).
    Select phase: a window of the sorted scores."""

    name = "el2n"
    description = "EL2N: rank by a causal LM's per-sample error and keep a window (hardest, middle or easiest)"

    def score(self, context: Any) -> dict[str, ScoredSource]:
        from dataselect.io.plan import iter_samples
        from dataselect.scoring.loss import loss_stage_for
        from dataselect.scoring.models import load_tokenizer, resolve_model_path
        from dataselect.stats import SourceStats

        config = context.config
        # the scorer is a causal LM (model.name or the proxy): `render: auto` is its chat template or the Tulu form
        tokenizer = load_tokenizer(resolve_model_path(config.model.name), config.model.trust_remote_code)
        renderer = TextRenderer(config.input, tokenizer, causal_lm=True)
        with context.stats.stage("train_proxy"):
            stage = loss_stage_for(config, context.cache_root, lambda: iter_samples(config.input, renderer, SourceStats("pool")))
        self.proxies, self.stage, self.render_style = stage.proxies, stage, renderer.conversation_style
        return {"pool": context.score_source("pool", config.input, stage, renderer)}

    def select(self, context: Any, scored: dict[str, ScoredSource]) -> Selection:
        config = context.config
        options = config.method.el2n
        store = scored["pool"].store
        scores = store.column(options.score).to_numpy(zero_copy_only=False).astype(np.float64)  # [N] NaN: unscored
        errors = store.column("error").to_pylist()
        bad = bad_scores(errors, lambda row: store.take(np.array([row]), ["id"])["id"][0], config.input.on_error)
        hashes = store.column("text_hash").to_numpy()
        unique = first_occurrences(hashes) if options.dedup else np.ones(len(hashes), bool)
        eligible = context.eligible(scored["pool"], dedup=options.dedup, unscored=Excluded(bad, "without a score (the model could not score them)"))
        n = int(eligible.sum())
        size = context.budget(eligible)
        chosen = select_window(scores, size, options.keep, options.offset, eligible)
        other = "loss" if options.score == "el2n" else "el2n"
        columns = {other: store.column(other).to_numpy(zero_copy_only=False)[chosen].astype(np.float64).tolist(),
                   "n_tokens": store.column("n_tokens").to_numpy()[chosen].astype(np.int64).tolist()}
        metrics = window_metrics(scores, chosen, options.keep, options.score, int(bad.sum()))
        metrics.update({
            "scorer": "proxy" if self.proxies is not None else "model",
            "truncated": int(store.column("truncated").to_numpy(zero_copy_only=False).sum()),
            "duplicates_collapsed": int(len(hashes) - unique.sum()),
        })
        if self.proxies is not None:
            from dataselect.scoring.proxy import training_losses

            identity = self.proxies.identity
            metrics["proxy"] = {**identity["proxy"], "training_seeds": identity["seeds"], "sample_size": identity["sample_size"],
                                "losses": training_losses(self.proxies.path)}
        return Selection(**selected_rows(store, chosen), scores=scores[chosen], columns=columns, metrics=metrics,
                         scored=int(np.isfinite(scores).sum()), unique=n, pool_scores=scores)

    def figures(self, selection: Selection) -> list[Figure]:
        metrics = selection.metrics
        keys = ["score", "keep", "window_min", "window_max", "pool_min", "pool_mean", "pool_max", "unscored_bad"]
        out: list[Figure] = [Table(keys, [[metrics.get(k) for k in keys]])]
        series = seed_curves((metrics.get("proxy") or {}).get("losses") or [], "losses")
        if series:
            out.append(Curves(series, "proxy training loss", "step", "loss", "The proxy model's training loss per step."))
        return out

    def saved_scorer(self, context: Any, folder: Any, selection: Selection) -> None:
        """The causal LM that scored (the proxies' weights, one safetensors file per seed; or model.name by name)
        and how a record becomes its scored tokens."""
        from dataselect.scoring.loss import saved_loss_model

        config = context.config
        part, arrays, weights = saved_loss_model(self.stage, "proxy")
        description = {"render": render_fields(config.input, self.render_style), "score": config.method.el2n.score,
                       "batch_tokens": self.stage.batch_tokens, "scorer": part}
        save_scorer(folder, context, selection, [config.method.el2n.score], description, arrays, weights)


class EL2NScorer(Scorer):
    """EL2N reloaded: a record's mean-token EL2N (or loss) under the run's causal LM, or under its proxies
    averaged over their seeds, rounded to float32 as the run's store keeps it."""

    method = "el2n"
    gpu = True

    def __init__(self, description: dict, arrays: dict[str, Any], folder: Any, device: str = "auto", batch_tokens: int | None = None) -> None:
        super().__init__(description, arrays, folder)
        from dataselect.config import SourceConfig
        from dataselect.scoring.loss import loaded_loss_model

        batch = batch_tokens or int(description["batch_tokens"])
        self.encoder, self.scorers = loaded_loss_model(description["scorer"], arrays, "proxy", SourceConfig(**description["render"]), device, batch)
        part = description["scorer"]
        self.renderer = scorer_renderer(description, part.get("tokenizer") or part["model"]["name"])
        self.column = 0 if description["score"] == "el2n" else 1

    def score_texts(self, texts: list[str], records: list[dict]) -> np.ndarray:
        from dataselect.scoring.loss import average_over_seeds, score_samples

        _, el2n, loss, _ = score_samples(self.encoder, self.scorers, texts, records)  # [S, n] each
        return average_over_seeds((el2n, loss)[self.column]).astype(np.float64)[:, None]  # [n, 1] float32 values, as stored


EL2NMethod.scorer_type = EL2NScorer
