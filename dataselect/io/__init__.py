"""Input sources, text rendering, shard storage and output files."""
