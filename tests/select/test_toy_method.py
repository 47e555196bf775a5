"""A new method is its own module plus a line in config.METHODS: this test-only method (it ranks samples
by the length of their text) registers itself in METHODS and runs end to end, through preflight,
`--dry-run`, `dataselect methods`, the manifest, scores.parquet and the report, with no other module
told about it."""
from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow.parquet as pq
import pytest
from support import MATH, OTHER, write_jsonl

import dataselect
from dataselect import config as config_module
from dataselect.cli import main
from dataselect.io.render import TextRenderer
from dataselect.scoring.samples import SampleStage
from dataselect.select.base import Declared, Excluded, Selection, selected_rows, top_k
from dataselect.select.figures import Bars, Figure, Table


class ToyMethod(Declared):
    name = "toy"
    description = "toy: the longest texts first (a test-only method)"

    def loads(self, config: Any) -> str | None:
        return None

    def score(self, context: Any) -> dict:
        config = context.config
        return {"pool": context.score_source("pool", config.input, SampleStage(), TextRenderer(config.input))}

    def select(self, context: Any, scored: dict) -> Selection:
        store = scored["pool"].store
        lengths = np.array([len(p) for p in store.column("preview").to_pylist()], np.float64)  # [N]
        eligible = context.eligible(scored["pool"], tiny=Excluded(lengths < 30, "shorter than 30 characters"))
        chosen = top_k(lengths, context.budget(eligible), eligible)
        return Selection(**selected_rows(store, chosen), scores=lengths[chosen], scored=len(lengths), unique=int(eligible.sum()), pool_scores=lengths,
                         metrics={"longest": float(lengths.max())})

    def figures(self, selection: Selection) -> list[Figure]:
        return [Table(["longest text", "selected"], [[selection.metrics["longest"], len(selection.ids)]]),
                Bars(["chosen"], [len(selection.ids)], "toy bars", "x", "y", "the toy method's caption")]


@pytest.fixture
def toy(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(config_module.METHODS, "toy", f"{__name__}:ToyMethod")


def test_a_method_in_one_module_runs_end_to_end(tmp_path, toy, capsys) -> None:
    pool = write_jsonl(tmp_path / "pool.jsonl", [{"id": f"p{i}", "text": t} for i, t in enumerate(MATH + OTHER)])
    overrides = {"input.path": str(pool), "method.name": "toy", "method.budget": 100, "output.dir": str(tmp_path / "out"),
                 "runtime.cache_dir": str(tmp_path / "cache"), "runtime.progress": False}
    config = dataselect.load_config(None, overrides)
    assert main(["run", *[f"--set={k}={v}" for k, v in overrides.items()], "--dry-run"]) == 0
    result = dataselect.run(config, quiet=False)
    out = capsys.readouterr().out
    long_enough = [t for t in MATH + OTHER if len(t) >= 30]
    assert sorted(result.scores[result.scores >= 30]) == sorted(len(t) for t in long_enough) and len(result.ids) == len(long_enough)
    assert result.manifest["budget"]["not_eligible"] == {"tiny": len(MATH + OTHER) - len(long_enough)}
    assert f"{len(MATH + OTHER) - len(long_enough)} shorter than 30 characters" in out
    scores = pq.read_table(tmp_path / "out" / "scores.parquet").to_pylist()
    assert {row["excluded"] for row in scores} == {None, "tiny"}
    page = (tmp_path / "out" / "report.html").read_text()
    longest = max(len(t) for t in MATH + OTHER)
    assert f"<th>longest text</th><th>selected</th></tr></thead><tbody><tr><td class=\"num\">{longest}</td>" in page
    assert "the toy method&#x27;s caption" in page
    assert main(["methods"]) == 0 and "toy: the longest texts first" in capsys.readouterr().out
