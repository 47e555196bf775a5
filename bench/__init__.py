"""The benchmark scripts: run one as `python -m bench.NAME` from the checkout (bench/common.py holds what they share)."""
