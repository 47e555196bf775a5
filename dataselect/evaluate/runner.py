"""The whole `dataselect eval`: read the runs, build the base model and the arms, fine-tune and measure
every (arm, seed) pair (each pair's result is filed in OUTPUT/pairs/ under its identity, so a rerun
resumes after the last finished pair), then summarise: eval.json, the printed table, report.html."""
from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np
from tqdm import tqdm

from dataselect.config import EvalConfig
from dataselect.errors import InputError
from dataselect.evaluate.arms import Arm, RunInfo, eval_source, load_run, overlap, top_fraction
from dataselect.evaluate.statistics import mean_ci95, paired_gap, snr
from dataselect.evaluate.trainer import BaseModel, TargetLoss, arm_rows, causal_lm_base, pretrained_proxy, train_and_measure
from dataselect.evaluate.utility import fit_keep_sweep
from dataselect.io.shards import atomic_write_text
from dataselect.scoring.finetune import MASK_FIELDS

logger = logging.getLogger(__name__)

EVAL_FORMAT = 1  # bump when the same settings would measure something else
EVAL_FILE = "eval.json"
PAIRS_FOLDER = "pairs"


@dataclass
class Group:
    """Runs over one pool (and tokenizer): they share the pool, the base model and the eval target's measure."""

    runs: list[RunInfo]
    pool: list[Any]
    base: BaseModel
    measure: TargetLoss
    eval_identity: dict[str, Any]  # the eval target's and the pool's digests: with the base and the arm, what decides a result
    overlaps: list[dict[str, Any]]


def _read(source: Any, renderer: Any, role: str, progress: bool) -> list[Any]:
    from dataselect.io.plan import iter_samples
    from dataselect.stats import SourceStats

    return list(tqdm(iter_samples(source, renderer, SourceStats(role)), desc=f"read {role}", unit=" samples", disable=not progress, leave=False))


def check_overlap(runs: list[RunInfo], eval_texts: list[str], tokenizer: Any, progress: bool) -> list[dict[str, Any]]:
    """Each run's target against the eval target by text hash: one line stops the eval at the first shared text."""
    from dataselect.io.render import TextRenderer

    overlaps = []
    for run in runs:
        target = run.config.target
        if target.path is None:
            overlaps.append({"run": str(run.folder), "target": None, "shared": 0})
            continue
        texts = [s.text for s in _read(target, TextRenderer(target, tokenizer, causal_lm=True), "run target", progress)]
        shared = overlap(eval_texts, texts)
        if shared:
            raise InputError(f"input error: --eval-target: {shared} of its {len(eval_texts)} samples share a text with the target "
                             f"{run.folder} selected for; hold out an eval target that the selection never saw")
        logger.info("overlap check: none of the %d eval target samples shares a text (by hash) with the %d samples of %s's target",
                    len(eval_texts), len(texts), run.folder)
        overlaps.append({"run": str(run.folder), "target": target.path, "shared": 0, "target_samples": len(texts)})
    return overlaps


def build_group(runs: list[RunInfo], eval_target: str, settings: EvalConfig, progress: bool) -> Group:
    """The eval target checked for overlap with each run's target (first: it is cheap), the pool read once, and the
    base model (the pre-trained proxy, or a causal LM)."""
    from dataselect.io.render import TextRenderer
    from dataselect.scoring.models import load_tokenizer, resolve_device, resolve_model_path
    from dataselect.scoring.proxy import sample_digest

    config = runs[0].config
    tokenizer_path = resolve_model_path(settings.model or config.model.name)
    tokenizer = load_tokenizer(tokenizer_path, config.model.trust_remote_code and settings.model is None)
    source = eval_source(runs[0], eval_target)
    eval_samples = _read(source, TextRenderer(source, tokenizer, causal_lm=True), "eval target", progress)
    if not eval_samples:
        raise InputError(f"input error: --eval-target: {eval_target}: no usable sample")
    overlaps = check_overlap(runs, [s.text for s in eval_samples], tokenizer, progress)
    pool = _read(config.input, TextRenderer(config.input, tokenizer, causal_lm=True), "pool", progress)
    if not pool:
        raise InputError(f"input error: {runs[0].folder}: the run's pool has no usable sample")
    device = resolve_device(settings.device)
    if settings.model is not None:
        base = causal_lm_base(settings.model, settings, device)
    else:
        cache = Path(settings.cache_dir).expanduser() if settings.cache_dir else config.runtime.resolved_cache_dir()
        base = pretrained_proxy(pool, tokenizer, tokenizer_path, config.input, settings, cache, device, progress)
    measure = TargetLoss(base, eval_samples, source, settings.batch_tokens)
    identity = {"samples": sample_digest(eval_samples), "bytes": measure.bytes, "fields": source.model_dump(exclude={"path"}),
                "pool": sample_digest(pool), "pool_fields": config.input.model_dump(include=set(MASK_FIELDS))}  # the pool decides random arms
    return Group(runs, pool, base, measure, identity, overlaps)


def _unique_names(runs: Sequence[RunInfo]) -> dict[Path, str]:
    """Each run's arm name: its method, with the folder's name when two runs share a method."""
    methods = [run.method for run in runs]
    return {run.folder: run.method if methods.count(run.method) == 1 else f"{run.method} ({run.folder.name})" for run in runs}


def build_arms(group: Group, names: dict[Path, str], settings: EvalConfig) -> list[Arm]:
    """The selection arms, a random arm per selection size, the optional pool and RS2 arms, and the keep sweep."""
    steps = settings.steps[0]
    arms: list[Arm] = []
    sizes = sorted({len(run.selected) for run in group.runs})
    random_name = {size: "random" if len(sizes) == 1 else f"random {size}" for size in sizes}
    for run in group.runs:
        arms.append(Arm(names[run.folder], "selection", len(run.selected), steps, str(run.folder), run.selected,
                        random=random_name[len(run.selected)]))
    for size in sizes:
        arms.append(Arm(random_name[size], "random", size, steps))
        if settings.rs2:
            arms.append(Arm("rs2" if len(sizes) == 1 else f"rs2 {size}", "rs2", size, steps, random=random_name[size]))
    if settings.pool_baseline:
        arms.append(Arm("pool", "pool", len(group.pool), steps, random=random_name[sizes[0]] if len(sizes) == 1 else None))
    for run in group.runs if settings.keep else []:
        ids, scores = run.pool_scores()
        for keep in settings.keep:
            kept = top_fraction(ids, scores, keep)
            for keep_steps in settings.steps:
                arms.append(Arm(f"{names[run.folder]} keep {keep:g} @ {keep_steps} steps", "keep", len(kept), keep_steps, str(run.folder),
                                kept, keep=keep))
    return arms


def _pair_key(group: Group, arm: Arm, seed: int, settings: EvalConfig) -> str:
    identity = {"format": EVAL_FORMAT, "base": group.base.identity, "arm": arm.identity(seed), "eval": group.eval_identity,
                "lr": settings.lr, "checkpoints": settings.checkpoints, "batch_size": group.base.config.batch_size,
                "train_tokens": group.base.config.train_tokens}
    return hashlib.sha256(json.dumps(identity, sort_keys=True, default=str).encode()).hexdigest()[:24]


def run_pair(group: Group, arm: Arm, seed: int, settings: EvalConfig, rows_cache: dict[str, Any], progress: bool) -> dict[str, Any]:
    """Fine-tune and measure one (arm, seed): {"bpb_checkpoints", "losses", "rows"}."""
    from dataselect.reweight import RS2Sampler

    source = group.runs[0].config.input
    if arm.kind == "random" or arm.name not in rows_cache:
        rows_cache[arm.name] = arm_rows(group.base, arm.samples(group.pool, seed), source)
    rows, targets = rows_cache[arm.name]
    sampler = None
    if arm.kind == "rs2":  # a round is the selection's share of the pool's rows; enough rounds for every step
        round_size = max(1, round(len(rows) * arm.size / len(group.pool)))
        rounds = math.ceil(arm.steps * group.base.config.batch_size / round_size) + 1
        sampler = RS2Sampler(len(rows), round_size=round_size, rounds=rounds, seed=seed)
    measured, losses = train_and_measure(group.base, rows, targets, arm.steps, settings.lr, seed, group.measure, settings.checkpoints,
                                         sampler, progress, arm.name)
    return {"bpb_checkpoints": measured, "losses": losses, "rows": int(len(rows))}


def _summary(arm: Arm, seeds: list[int], pairs: list[dict[str, Any]], random: dict[str, Any] | None) -> dict[str, Any]:
    """An arm's eval.json entry; `random` is its paired random arm's entry (gap and SNR by seed; None: no gap)."""
    bpb = [float(np.mean(p["bpb_checkpoints"])) for p in pairs]
    interval = mean_ci95(bpb)
    entry: dict[str, Any] = {"name": arm.name, "run": arm.run, "kind": arm.kind, "size": arm.size, "steps": arm.steps, "seeds": seeds,
                             "bpb": bpb, "mean": interval.mean, "std": interval.std, "ci95": [interval.low, interval.high],
                             "bpb_checkpoints": [p["bpb_checkpoints"] for p in pairs], "rows": pairs[0]["rows"]}
    if arm.keep is not None:
        entry["keep"] = arm.keep
    random = entry if arm.kind == "random" else random  # random against itself: a gap of exactly 0
    if random is not None:
        gap = paired_gap(bpb, random["bpb"])
        scores = [x for p in entry["bpb_checkpoints"] + random["bpb_checkpoints"] for x in p]
        entry.update({"gap_to_random": gap.mean, "gap_ci95": [gap.low, gap.high], "snr": snr([interval.mean, random["mean"]], scores),
                      "better_than_random": bool(gap.low > 0), "worse_than_random": bool(gap.high < 0)})
    return entry


def keep_sweep(entries: list[dict[str, Any]], batch_size: int) -> list[dict[str, Any]]:
    """Per run: the keep sweep's points, the best keep fraction at each step count, and the repetition-utility fit."""
    out = []
    for run in dict.fromkeys(e["run"] for e in entries):
        points = [e for e in entries if e["run"] == run]
        best = []
        for steps in sorted({e["steps"] for e in points}):
            at = min((e for e in points if e["steps"] == steps), key=lambda e: e["mean"])
            best.append({"steps": steps, "keep": at["keep"], "mean": at["mean"]})
        fit = fit_keep_sweep([(e["keep"], e["rows"], e["steps"] * batch_size, e["mean"]) for e in points])
        fitted = None
        if fit is not None:
            pools = {e["keep"]: e["rows"] for e in points}
            fitted = {"a": fit.a, "c": fit.c, "d": fit.d, "b": {str(k): v for k, v in fit.b.items()}, "sse": fit.sse,
                      "best_keep": [{"steps": b["steps"], "keep": fit.best_keep(pools, b["steps"] * batch_size)} for b in best]}
        out.append({"run": run, "points": [{k: e[k] for k in ("keep", "steps", "size", "rows", "bpb", "mean", "ci95")} for e in points],
                    "best": best, "fit": fitted})
    return out


def evaluate(run_folders: Sequence[str | Path], eval_target: str, settings: EvalConfig, output: str | Path,
             progress: bool = True) -> dict[str, Any]:
    """The comparison end to end; writes eval.json and report.html in `output` and returns eval.json's content."""
    with torch_threads(settings.threads):
        return _evaluate(run_folders, eval_target, settings, Path(output).expanduser(), progress)


@contextlib.contextmanager
def torch_threads(threads: int | None) -> Iterator[None]:
    """torch's intra-op thread count set for the block (None: left as it is), then restored."""
    import torch

    before = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _evaluate(run_folders: Sequence[str | Path], eval_target: str, settings: EvalConfig, output: Path, progress: bool) -> dict[str, Any]:
    runs = [load_run(folder) for folder in run_folders]
    by_pool: dict[str, list[RunInfo]] = {}
    for run in runs:
        key = json.dumps([run.config.input.model_dump(mode="json", exclude={"ids_from"}), run.config.model.name], sort_keys=True)
        by_pool.setdefault(key, []).append(run)
    names = _unique_names(runs)
    seeds = [settings.seed + i for i in range(settings.seeds)]
    entries: list[dict[str, Any]] = []
    groups = []
    for group_runs in by_pool.values():
        group = build_group(group_runs, eval_target, settings, progress)
        arms = build_arms(group, names, settings)
        results: dict[str, list[dict[str, Any]]] = {}
        rows_cache: dict[str, Any] = {}
        bar = tqdm(total=len(arms) * len(seeds), desc="eval (arm, seed) pairs", unit=" pairs", disable=not progress)
        for arm in arms:
            for seed in seeds:
                path = output / PAIRS_FOLDER / f"{_pair_key(group, arm, seed, settings)}.json"
                if path.exists():  # finished before: resume after it
                    pair = json.loads(path.read_text(encoding="utf-8"))
                else:
                    pair = run_pair(group, arm, seed, settings, rows_cache, progress)
                    atomic_write_text(path, json.dumps({"arm": arm.name, "seed": seed, **pair}))
                results.setdefault(arm.name, []).append(pair)
                bar.update(1)
            rows_cache.pop(arm.name, None)
        bar.close()
        summaries: dict[str, dict[str, Any]] = {}
        for arm in sorted(arms, key=lambda a: a.kind != "random"):  # random first: the others pair with it
            summaries[arm.name] = _summary(arm, seeds, results[arm.name], summaries.get(arm.random) if arm.random else None)
        entries.extend(summaries[arm.name] for arm in arms)
        groups.append(group)
    result = {
        "format": EVAL_FORMAT,
        "arms": [e for e in entries if e["kind"] != "keep"],
        "keep_sweep": keep_sweep([e for e in entries if e["kind"] == "keep"], settings.proxy.batch_size),
        "eval_target": {"path": eval_target, "samples": len(groups[0].measure.prepared), "bytes": groups[0].measure.bytes,
                        "overlap": [o for g in groups for o in g.overlaps]},
        "base": [g.base.identity for g in groups],
        "settings": settings.model_dump(mode="json"),
    }
    atomic_write_text(output / EVAL_FILE, json.dumps(result, indent=2))
    from dataselect.io.report import write_eval_report_safely

    write_eval_report_safely(output, result)
    return result


def table_text(result: dict[str, Any]) -> str:
    """The printed table: one line per arm, then each keep sweep's best fraction per step count."""
    lines = [f"{'arm':<28} {'size':>7} {'steps':>6} {'bpb mean':>9} {'95% CI':>19} {'seed std':>9} {'gap to random (95% CI)':>30} {'SNR':>7}"]
    for e in result["arms"]:
        gap = "" if "gap_to_random" not in e else f"{e['gap_to_random']:+.4f} [{e['gap_ci95'][0]:+.4f}, {e['gap_ci95'][1]:+.4f}]"
        verdict = " better" if e.get("better_than_random") else " worse" if e.get("worse_than_random") else ""
        ratio = "-" if e.get("snr") is None else f"{e['snr']:.2f}"
        lines.append(f"{e['name'][:28]:<28} {e['size']:>7,} {e['steps']:>6} {e['mean']:>9.4f} [{e['ci95'][0]:.4f}, {e['ci95'][1]:.4f}] "
                     f"{e['std']:>9.4f} {gap:>30} {ratio:>7}{verdict}")
    for sweep in result["keep_sweep"]:
        best = ", ".join(f"{b['keep']:g} at {b['steps']} steps ({b['mean']:.4f})" for b in sweep["best"])
        lines.append(f"keep sweep of {sweep['run']}: best keep {best}" + ("" if sweep["fit"] else "; too few points to fit the repetition model"))
    return "\n".join(lines)
