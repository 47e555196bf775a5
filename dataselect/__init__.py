"""dataselect: GPU-accelerated data selection for language-model training data.

Library use mirrors the CLI:

    import dataselect
    config = dataselect.load_config("configs/rds.yaml", {"method.budget": 100})
    result = dataselect.run(config)          # writes output.dir, returns the selection
    result.ids[:5], result.table             # ranked ids; selection.parquet as an arrow table

    scorer = dataselect.EmbeddingScorer()   # all-MiniLM-L6-v2, offline
    vectors = scorer.embed(samples)          # [N, d] float32, unit norm, input order
"""
from __future__ import annotations

from typing import Any

from dataselect.config import Config, load_config
from dataselect.errors import ConfigError, DataselectError, InputError

__version__ = "0.1.0"
__all__ = ["Config", "ConfigError", "DataselectError", "EmbeddingScorer", "InputError", "load_config", "run"]


def run(config: Config, quiet: bool = True) -> Any:
    """Run a config (see `load_config`); returns a RunResult with `.ids`, `.table`, `.manifest`."""
    from dataselect.pipeline import run as _run

    return _run(config, quiet=quiet)


def __getattr__(name: str) -> Any:
    # torch and transformers load only when embeddings are asked for
    if name == "EmbeddingScorer":
        from dataselect.scoring.embed import EmbeddingScorer

        return EmbeddingScorer
    raise AttributeError(name)
