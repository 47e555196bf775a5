"""Loss reweighting in practice: train the proxy model (scoring/proxy.py, the default proxy with
configs/el2n.yaml's input settings unless overridden) on the real instruction pool with the plain mean loss and with
each LossReweighter strategy (linupper, quadratic, extremes), the same steps, data order and seed, and
compare held-out loss curves. Writes a PNG and prints a markdown table.

Rows are packed windows of `context` tokens, as in pretraining (the setting of Sow et al.), so a
"sample" of the reweighting is one row. The held-out rows come from pool samples the training never
sees. The held-out loss is the plain mean token loss for every run: what is compared is what each
objective teaches, measured the same way.

    python -m bench.reweight_proxy [--pool ../shared/data/instruct_pool.jsonl.gz] [--steps 150]
"""
from __future__ import annotations

import argparse
import gzip
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

from bench.common import ROOT, SHARED_DATA, config_with_default_proxy, record

DEFAULT_POOL = SHARED_DATA / "instruct_pool.jsonl.gz"
STRATEGIES = ["plain", "linupper", "quadratic", "extremes"]


def main() -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pool", default=str(DEFAULT_POOL))
    parser.add_argument("--train", type=int, default=4000, help="training samples")
    parser.add_argument("--heldout", type=int, default=500, help="held-out samples")
    parser.add_argument("--steps", type=int, default=150)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--context", type=int, default=None, help="tokens per row (default: the config's proxy.context)")
    parser.add_argument("--r", type=float, default=0.4, help="reweighting temperature")
    parser.add_argument("--burn-in", type=int, default=30, help="steps of plain loss before reweighting")
    parser.add_argument("--eval-every", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--config", default=str(ROOT / "configs" / "el2n.yaml"))
    parser.add_argument("--png", default=str(ROOT / "bench" / "reweight_proxy.png"))
    args = parser.parse_args()
    pool = Path(args.pool)
    if not pool.exists():
        sys.exit(f"pool not found: {pool} (the instruction pool lives in ../shared/data beside the repository; pass --pool)")

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from dataselect.io.render import TextRenderer
    from dataselect.reweight import LossReweighter
    from dataselect.scoring.causal import SampleEncoder
    from dataselect.scoring.models import load_tokenizer, resolve_model_path
    from dataselect.scoring.proxy import packed_rows, reduced_vocabulary, train_one

    config = config_with_default_proxy(args.config)
    proxy = config.method.el2n.proxy.model_copy(update={"steps": args.steps, "batch_size": args.batch_size, "epochs": 1000.0,
                                                        "context": args.context or config.method.el2n.proxy.context})
    with gzip.open(pool, "rt", encoding="utf-8") as handle:
        records = [json.loads(line) for line in handle]
    rng = np.random.default_rng(args.seed)
    picked = rng.choice(len(records), size=args.train + args.heldout, replace=False)
    tokenizer = load_tokenizer(resolve_model_path(config.model.name))
    renderer = TextRenderer(config.input, tokenizer, causal_lm=True)  # as EL2N renders for its proxy LM
    encoder = SampleEncoder(tokenizer, config.input, proxy.context)

    def windows(indices: np.ndarray) -> list[np.ndarray]:
        rows = [records[i] for i in indices]
        return [p.ids for p in encoder.encode([renderer.render(r) for r in rows], rows) if p.error is None]

    train_windows, heldout_windows = windows(picked[: args.train]), windows(picked[args.train :])
    id_map = reduced_vocabulary(np.concatenate(train_windows), len(tokenizer), proxy.vocab)
    train_rows = packed_rows([id_map[w] for w in train_windows], proxy.context)  # [R, T]
    heldout = torch.from_numpy(packed_rows([id_map[w] for w in heldout_windows], proxy.context))  # [H, T]
    vocab = int(id_map.max()) + 1
    print(f"{len(train_rows)} training rows, {len(heldout)} held-out rows of {proxy.context} tokens; "
          f"{args.steps} steps of {args.batch_size}; r={args.r}, burn-in {args.burn_in}")

    def per_row_loss(model: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
        logits = model(input_ids=x).logits[:, :-1]  # [b, T-1, V]
        ce = torch.nn.functional.cross_entropy(logits.transpose(1, 2), x[:, 1:], reduction="none")  # [b, T-1]
        return ce.mean(dim=1)  # [b]: every row has T-1 targets

    curves: dict[str, list[tuple[int, float]]] = {}
    seconds: dict[str, float] = {}
    for name in STRATEGIES:
        reweighter = None if name == "plain" else LossReweighter(name, r=args.r, burn_in_steps=args.burn_in)
        curve: list[tuple[int, float]] = []

        def objective(model, x, step, reweighter=reweighter):
            losses = per_row_loss(model, x)
            return losses.mean() if reweighter is None else reweighter(losses, step)

        def evaluate(step, model, optimizer, curve=curve):
            if (step + 1) % args.eval_every and step + 1 != args.steps:
                return
            with torch.no_grad():
                curve.append((step + 1, float(torch.cat([per_row_loss(model, b) for b in heldout.split(64)]).mean())))

        started = time.perf_counter()
        train_one(train_rows, vocab, proxy, args.seed, progress=config.runtime.progress, label=name, objective=objective, callback=evaluate)
        seconds[name] = time.perf_counter() - started
        curves[name] = curve
        print(f"{name}: held-out loss {curve[-1][1]:.4f} after {args.steps} steps ({seconds[name]:.0f}s)", flush=True)

    figure, axis = plt.subplots(figsize=(7, 4.5))
    for name, curve in curves.items():
        axis.plot([s for s, _ in curve], [v for _, v in curve], label=name, marker="o", markersize=3)
    axis.axvline(args.burn_in, color="grey", linestyle=":", label="end of burn-in")
    axis.set_xlabel("step")
    axis.set_ylabel("held-out mean token loss")
    axis.set_title(f"proxy on the instruction pool: plain vs reweighted (r={args.r})")
    axis.legend()
    figure.tight_layout()
    figure.savefig(args.png, dpi=120)

    marks = [s for s, _ in curves["plain"] if s in (args.burn_in, args.steps // 2, args.steps) or s == curves["plain"][-1][0]]
    print(f"\nwrote {args.png}\n")
    print("| objective | " + " | ".join(f"held-out loss @ {s}" for s in marks) + " | best | train s |")
    print("|---|" + "---|" * (len(marks) + 2))
    for name, curve in curves.items():
        at = dict(curve)
        print(f"| {name} | " + " | ".join(f"{at[s]:.4f}" for s in marks) + f" | {min(v for _, v in curve):.4f} | {seconds[name]:.0f} |")
    row: dict = {f"heldout_loss.{name}": round(curve[-1][1], 4) for name, curve in curves.items()}  # after the last step
    row |= {f"best_heldout_loss.{name}": round(min(v for _, v in curve), 4) for name, curve in curves.items()}
    row |= {f"train_s.{name}": round(seconds[name], 1) for name in curves}
    return row | {"steps": args.steps, "batch_size": args.batch_size, "context": proxy.context, "r": args.r, "burn_in": args.burn_in,
                  "training_rows": len(train_rows), "heldout_rows": len(heldout),
                  "curves": {name: [[s, round(v, 4)] for s, v in curve] for name, curve in curves.items()}}


if __name__ == "__main__":
    sys.exit(record("reweight_proxy", main))
