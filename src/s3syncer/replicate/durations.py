"""Durations on the command line: ``--keep-deleted 7d``."""

from __future__ import annotations

import re
from datetime import timedelta

DEFAULT_KEEP = timedelta(days=7)
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(text: str) -> timedelta:
    """``7d``, ``36h``, ``1h30m``, ``90s`` or a bare number of seconds; ValueError."""
    if re.fullmatch(r"\d+(\.\d+)?", text):
        return timedelta(seconds=float(text))
    parts = re.findall(r"(\d+(?:\.\d+)?)([smhd])", text)
    if not parts or "".join(n + u for n, u in parts) != text:
        raise ValueError(f"{text!r} is not a duration (e.g. 7d, 36h, 1h30m, 0)")
    return timedelta(seconds=sum(float(n) * _UNITS[u] for n, u in parts))
