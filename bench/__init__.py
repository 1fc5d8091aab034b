"""Benchmarks: `make bench` (python -m bench) and the scripts it runs; docs/performance.md."""
