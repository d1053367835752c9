"""Observability: Prometheus metrics, logging, and the throttle that keeps a flood out of
the log.
"""
