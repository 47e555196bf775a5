"""Seeded uniform baseline: every unique pool sample gets a key from one seeded generator, in pool
order, and the K largest keys win; the same seed gives the same selection whatever the batching."""
from __future__ import annotations

from typing import Any

import numpy as np

from dataselect.io.render import TextRenderer
from dataselect.scoring.loop import ScoredSource
from dataselect.scoring.samples import SampleStage
from dataselect.select.base import Declared, Selection, selected_rows, top_k


class RandomMethod(Declared):
    """`method.name: random`: a seeded uniform sample of the eligible pool, the baseline."""
    name = "random"
    description = "a seeded uniform sample of the unique pool samples (a baseline; needs no model or target)"

    def loads(self, config: Any) -> str | None:
        return None

    def score(self, context) -> dict[str, ScoredSource]:
        config = context.config
        return {"pool": context.score_source("pool", config.input, SampleStage(), TextRenderer(config.input))}

    def select(self, context, scored: dict[str, ScoredSource]) -> Selection:
        pool = scored["pool"]
        eligible = context.eligible(pool)
        keys = np.random.default_rng(context.config.method.seed).random(len(eligible))  # [N]
        chosen = top_k(keys, context.budget(eligible), eligible)
        return Selection(**selected_rows(pool.store, chosen), scores=keys[chosen], scored=len(eligible), unique=int(eligible.sum()), pool_scores=keys,
                         ranking="random")
