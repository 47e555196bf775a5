"""Score phase: streaming, per-sample features (embeddings, n-gram weights, losses)."""
