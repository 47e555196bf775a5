"""dataselect: GPU-accelerated data selection for language-model training data.

Library use mirrors the CLI:

    import dataselect
    config = dataselect.load_config("configs/rds.yaml", {"method.budget": 100})
    result = dataselect.run(config)          # writes output.dir, returns the selection
    result.ids[:5], result.table             # ranked ids; selection.parquet as an arrow table

    scorer = dataselect.EmbeddingScorer()   # all-MiniLM-L6-v2, offline
    vectors = scorer.embed(samples)          # [N, d] float32, unit norm, input order

    scorer = dataselect.load_scorer("runs/x/scorer")   # what a run learned, to score any records
    scores = scorer.score(records)           # the run's numbers; scorer.keep(records, keep=0.1) filters
"""
from __future__ import annotations

from typing import Any

from dataselect.config import Config, load_config
from dataselect.errors import ConfigError, DataselectError, InputError, ScorerError

__version__ = "0.1.0"
__all__ = ["Config", "ConfigError", "DataselectError", "EmbeddingScorer", "InputError", "ScorerError", "load_config", "load_scorer", "run"]


def run(config: Config, quiet: bool = True) -> Any:
    """Run a config (see `load_config`); returns a RunResult with `.ids`, `.table`, `.manifest`. Quiet by default:
    no summary and no progress bars (`quiet=False` shows both, as the command does)."""
    from dataselect.pipeline import run as _run

    return _run(config, quiet=quiet)


def load_scorer(path: str, **options: Any) -> Any:
    """The saved scorer in a run's `scorer/` folder (or its output folder): `.score(records)`, `.threshold(keep)`,
    `.keep(records, keep=...)`, `.describe()`. `options` reach the method's scorer (device=, batch_tokens=)."""
    from dataselect.scorer import load_scorer as _load

    return _load(path, **options)


def __getattr__(name: str) -> Any:
    # torch and transformers load only when embeddings are asked for
    if name == "EmbeddingScorer":
        from dataselect.scoring.embed import EmbeddingScorer

        return EmbeddingScorer
    raise AttributeError(name)
