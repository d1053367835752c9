"""Benchmarks of s3syncer against a bare Hypercorn-Trio app; run ``python benchmarks/run.py``."""
