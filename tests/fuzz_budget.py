"""How many examples a property test tries: its own number, or a tenth in the fast loop."""

from __future__ import annotations

from hypothesis import settings

FAST_SHARE = 10  # the fast loop tries one example in this many


def examples(full: int) -> int:
    """``full`` examples, or a tenth of them (at least the fast profile's own number) when
    the fast profile is loaded.

    Read at import, after pytest has loaded ``--hypothesis-profile`` (see conftest.py).
    """
    profile = settings.default
    assert profile is not None, "a hypothesis profile is loaded at import (conftest.py)"
    floor = profile.max_examples
    return full if floor >= full else max(floor, full // FAST_SHARE)
