"""Executors run the score phase over shards: local (this process) now; Ray Data later (runtime.executor)."""
