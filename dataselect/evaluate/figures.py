"""The eval section of report.html, declared as data (select/figures.py) and drawn by io/report.py: the
arms' table, their bits per byte with 95% intervals, the gap to random, and each keep sweep's curve."""
from __future__ import annotations

from typing import Any

import numpy as np

from dataselect.evaluate.utility import effective_utility
from dataselect.select.figures import Figure, Intervals, Lines, Note, Table


def arm_figures(result: dict[str, Any]) -> list[Figure]:
    """The comparison: a table, the per-arm intervals, and the paired gap to random."""
    arms = result["arms"]
    if not arms:
        return [Note("No arm was trained.")]
    rows = [[a["name"], a["size"], a["steps"], len(a["seeds"]), a["mean"], f"[{a['ci95'][0]:.4f}, {a['ci95'][1]:.4f}]", a["std"],
             a.get("gap_to_random"), "-" if "gap_ci95" not in a else f"[{a['gap_ci95'][0]:+.4f}, {a['gap_ci95'][1]:+.4f}]",
             a.get("snr"), "better" if a.get("better_than_random") else "worse" if a.get("worse_than_random") else "-"]
            for a in arms]
    figures: list[Figure] = [
        Table(["arm", "size", "steps", "seeds", "bpb mean", "95% CI", "seed std", "gap to random", "gap 95% CI", "SNR", "vs random"], rows),
        Intervals([a["name"] for a in arms], [a["mean"] for a in arms], [a["ci95"][0] for a in arms], [a["ci95"][1] for a in arms],
                  "held-out bits per byte (lower is better)", "bits per byte on the eval target",
                  "Each arm's mean over seeds with its 95% confidence interval (Student's t)."),
    ]
    paired = [a for a in arms if "gap_to_random" in a and a["kind"] != "random"]
    if paired:
        figures.append(Intervals([a["name"] for a in paired], [a["gap_to_random"] for a in paired], [a["gap_ci95"][0] for a in paired],
                                 [a["gap_ci95"][1] for a in paired], "gap to random, paired by seed",
                                 "random's bits per byte minus the arm's (positive: better)",
                                 "An arm beats random only where its interval lies right of 0.",
                                 reference=0.0))
    return figures


def sweep_figures(sweep: dict[str, Any], batch_size: int) -> list[Figure]:
    """One keep sweep: bits per byte against the keep fraction, a line per step count (and the fit, dashed)."""
    series: dict[str, tuple[list[float], list[float]]] = {}
    for steps in sorted({p["steps"] for p in sweep["points"]}):
        at = sorted((p for p in sweep["points"] if p["steps"] == steps), key=lambda p: p["keep"])
        series[f"{steps} steps"] = ([p["keep"] for p in at], [p["mean"] for p in at])
    fit, dashed = sweep["fit"], []
    if fit is not None:
        rows_of = {p["keep"]: p["rows"] for p in sweep["points"]}
        keeps = sorted(rows_of)
        for steps in sorted({p["steps"] for p in sweep["points"]}):
            predicted = [effective_utility(steps * batch_size, rows_of[k], fit["a"], fit["b"][str(k)], fit["c"], fit["d"]) for k in keeps]
            series[f"fit, {steps} steps"] = (keeps, predicted)
            dashed.append(f"fit, {steps} steps")
    best = "; ".join(f"{b['steps']} steps: keep {b['keep']:g} ({b['mean']:.4f} bpb)" for b in sweep["best"])
    figures: list[Figure] = [Lines(series, f"keep sweep of {sweep['run']}", "keep fraction of the pool (top scores)", "bits per byte",
                                   f"Best measured keep fraction per compute level: {best}.", logx=True, dashed=dashed)]
    if fit is None:
        figures.append(Note("Too few points to fit the repetition-utility model (each keep fraction needs two step counts)."))
    else:
        half_life = "no decay" if not np.isfinite(fit["c"]) else f"{fit['c']:.3g} epochs"
        figures.append(Table(["fit", "value"], [["half-life of a repeat (c)", half_life], ["a", fit["a"]], ["d", fit["d"]],
                                                ["squared error", fit["sse"]]]
                             + [[f"b at keep {k}", v] for k, v in fit["b"].items()]
                             + [[f"predicted best keep at {b['steps']} steps", b["keep"]] for b in fit["best_keep"]]))
    return figures


def eval_sections(result: dict[str, Any]) -> list[tuple[str, list[Figure]]]:
    """report.html's sections for an eval: (title, figures)."""
    target = result["eval_target"]
    shared = sum(o["shared"] for o in target["overlap"])
    intro = Note(f"Eval target {target['path']}: {target['samples']:,} samples, {target['bytes']:,} scored bytes; "
                 f"{shared} share a text with a run's selection target (checked by text hash). A small proxy's loss ranks data "
                 "recipes; it does not promise a large model's benchmark scores.")
    sections = [("Eval: did the selection help?", [intro, *arm_figures(result)])]
    for sweep in result["keep_sweep"]:
        sections.append((f"Compute-aware budgets: {sweep['run']}", sweep_figures(sweep, result["settings"]["proxy"]["batch_size"])))
    return sections
