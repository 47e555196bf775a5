"""The LossReweighter examples in docs/reweighting.md run as written (in order, in one namespace)."""
from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch

DOC = Path(__file__).resolve().parents[1] / "docs" / "reweighting.md"


def test_the_documented_examples_run_and_reweight(tmp_path, monkeypatch):
    blocks = re.findall(r"```python\n(.*?)```", DOC.read_text(encoding="utf-8"), flags=re.S)
    assert len(blocks) == 2
    monkeypatch.chdir(tmp_path)  # the Trainer example writes under runs/
    namespace: dict = {}
    exec(compile(blocks[0], f"{DOC}:plain-loop", "exec"), namespace)
    weights = namespace["reweighter"].last_weights  # step 4, after the 2 burn-in steps
    assert weights is not None and weights.shape == (8,) and float(weights.sum()) == pytest.approx(1.0, abs=1e-6)
    assert float(weights.max() / weights.min()) > 1.0  # distinct losses: not uniform
    exec(compile(blocks[1], f"{DOC}:trainer", "exec"), namespace)
    trainer = namespace["trainer"]
    assert trainer.state.global_step == 4
    assert trainer.reweighter.last_weights is not None  # steps 2 and 3 were reweighted
    assert all(torch.isfinite(torch.tensor(entry["loss"])) for entry in trainer.state.log_history if "loss" in entry)
