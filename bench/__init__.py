"""Reachable's benchmarks: `uv run python -m bench [NAME ...] [--json FILE]` (bench/README.md)."""
