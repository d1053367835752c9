"""The per-command engine: coalescing, the schedule, and the runner that drives them on trio's
clock.
"""
