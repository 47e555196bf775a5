"""Saved scorers: what a run learned (target embeddings, n-gram log ratios, ...), written beside its
selection as a `scorer/` folder and reloaded anywhere with `load_scorer` to score new records."""
from dataselect.scorer.base import Scorer, load_scorer

__all__ = ["Scorer", "load_scorer"]
