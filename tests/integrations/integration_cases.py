"""The integration tests' shared case: an RDS+ and a DSIR scorer saved by tiny runs on one generated pool,
with what the library call gives for the pool's records (every host must give the same)."""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from support import executor_config, executor_pool

import dataselect

KEEP = 0.3  # a fraction of the fitting run's pool: some records pass, some do not
FITS = {"rds": {}, "dsir": {"method.name": "dsir", "method.dsir.features": "reference", "method.dsir.min_words": 3}}


@dataclass
class SavedCase:
    """A saved scorer, the pool it was fitted on, and the library call's answers for that pool."""

    scorer: Path
    pool: Path
    records: list[dict]
    scores: np.ndarray  # [n] scorer.score(records)
    kept: list[str]  # ids of scorer.keep(records, keep=KEEP), in pool order


def fit_cases(root: Path, model: Path) -> dict[str, SavedCase]:
    """Each method of FITS run on one generated pool under `root`, its scorer saved, the library call's answers."""
    pool, target = executor_pool(root)
    records = [json.loads(line) for line in pool.read_text().splitlines()]
    cases = {}
    for method, extra in FITS.items():
        result = dataselect.run(executor_config(root, method, model, pool, target, extra))
        folder = Path(result.output_dir) / "scorer"
        with dataselect.load_scorer(folder) as scorer:
            scores, mask = scorer.score(records), scorer.keep(records, keep=KEEP)
        cases[method] = SavedCase(folder, pool, records, scores, [r["id"] for r, passed in zip(records, mask) if passed])
        assert 0 < len(cases[method].kept) < len(records)  # the cut separates something
    return cases


def assert_same_scores(case: SavedCase, got: dict[str, float]) -> None:
    """Every pool record's score, within 1e-6 of the library call's."""
    expected = dict(zip([r["id"] for r in case.records], case.scores))
    assert set(got) == set(expected)
    np.testing.assert_allclose([got[i] for i in expected], list(expected.values()), rtol=0, atol=1e-6)
