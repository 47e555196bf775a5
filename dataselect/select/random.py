"""Seeded uniform baseline: every unique pool sample gets a key from one seeded generator, in pool
order, and the K largest keys win; the same seed gives the same selection whatever the batching."""
from __future__ import annotations

import numpy as np

from dataselect.io.render import TextRenderer
from dataselect.scoring.store import score_source
from dataselect.select.base import Selection, first_occurrences, require_usable_pool, selected_rows, top_k


class RandomMethod:
    name = "random"

    def run(self, context) -> Selection:
        config = context.config
        renderer = TextRenderer(config.input)
        with context.stats.stage("score_pool"):
            pool = score_source(config.input, "pool", renderer, config.runtime, context.cache_root)
            require_usable_pool(pool.stats)
        with context.stats.stage("select"):
            hashes = pool.store.column("text_hash").to_numpy()
            eligible = first_occurrences(hashes)
            keys = np.random.default_rng(config.method.seed).random(len(hashes))  # [N]
            chosen = top_k(keys, config.method.budget_for(int(eligible.sum())), eligible)
            return Selection(
                **selected_rows(pool.store, chosen),
                scores=keys[chosen],
                pool_stats=pool.stats,
                scored=len(hashes),
                unique=int(eligible.sum()),
                cache={"pool": pool.cached},
            )
