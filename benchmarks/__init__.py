"""Benchmarks of s3syncer: ``benchmarks/run`` (the webhook) and ``benchmarks/replicate.py``."""
