"""Benchmarks for nim-pathway: `make bench` (or `python -m bench [--quick] [--only NAME]`)."""
