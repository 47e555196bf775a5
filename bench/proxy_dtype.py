"""The proxy trainer's step rate on the CPU: fp32, fp32 with fused AdamW, and bf16 autocast, side by side.

The default proxy's shape (method.el2n.proxy: hidden 192, 2 layers, context 128, vocab 4,096, batch 32), random
token rows, the trainer's step (forward, loss, backward, clipping, AdamW) as scoring/proxy.py's train_one takes
it; --steps timed steps after 5 warm-up steps, each variant --repeats times, interleaved. It answers whether bf16
could bring the EL2N noise bench (2,600 steps) under its time target; it does not measure what bf16 does to the
scores.

    python -m bench.proxy_dtype [--steps 40] [--repeats 2]
"""
from __future__ import annotations

import argparse
import sys
import time

import numpy as np
import torch

from bench.common import record
from dataselect.config import ProxyConfig
from dataselect.scoring.proxy import proxy_model

VARIANTS = ("fp32", "fp32-fused-adamw", "bf16-autocast")


def steps_per_second(variant: str, config: ProxyConfig, rows: np.ndarray, steps: int) -> float:
    torch.manual_seed(0)
    model = proxy_model(config, config.vocab).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, betas=(0.9, 0.95), weight_decay=0.01, fused=variant == "fp32-fused-adamw")
    start = 0.0
    for step in range(steps + 5):
        if step == 5:
            start = time.perf_counter()
        x = torch.from_numpy(rows[np.random.default_rng(step).integers(0, len(rows), config.batch_size)])  # [b, T]
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=variant == "bf16-autocast"):
            loss = model(input_ids=x, labels=x).loss
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
    return steps / (time.perf_counter() - start)


def main() -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    config = ProxyConfig()
    rows = np.random.default_rng(0).integers(0, config.vocab, (2000, config.context))  # [R, T]
    rates: dict[str, list[float]] = {variant: [] for variant in VARIANTS}
    for _ in range(args.repeats):
        for variant in VARIANTS:
            rates[variant].append(round(steps_per_second(variant, config, rows, args.steps), 2))
    best = {variant: max(values) for variant, values in rates.items()}
    for variant in VARIANTS:
        print(f"{variant:17s} {best[variant]:.2f} steps/s (runs {rates[variant]}); {best[variant] / best['fp32']:.2f}x fp32; "
              f"2,600 steps in {2600 / best[variant]:.0f} s")
    print(f"torch threads {torch.get_num_threads()}")
    return {"steps_per_s": best, "runs": rates, "bf16_over_fp32": best["bf16-autocast"] / best["fp32"]}


if __name__ == "__main__":
    sys.exit(record("proxy_dtype", main))
