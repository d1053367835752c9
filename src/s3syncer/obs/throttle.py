"""A log line at most once an interval, with a count of what it stood for.

Clients choose how often the server meets a refused connection or a broken
request; the log must not grow with that, or a flood fills the disk. The first
occurrence is logged at once, later ones in the same interval are counted and
the count rides on the next line that is logged.

:class:`KindThrottle` keeps one such count per kind (a refusal's status, say):
"404 ... (3 more since the last report)" must not stand for three 401s.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

INTERVAL = 60.0

MAX_KINDS = 64
"""Kinds a :class:`KindThrottle` tells apart; more fold into one, so memory stays bounded."""

OTHER_KIND = "other"


class Throttle:
    """Decides which occurrences of one kind of trouble are logged."""

    def __init__(
        self, interval: float = INTERVAL, clock: Callable[[], float] | None = None
    ) -> None:
        self.interval = interval
        self._clock = clock if clock is not None else time.monotonic
        self._last = -float("inf")
        self._suppressed = 0

    def admit(self) -> int | None:
        """None to stay quiet; else how many occurrences went unlogged since the last line."""
        now = self._clock()
        if now - self._last < self.interval:
            self._suppressed += 1
            return None
        suppressed, self._last, self._suppressed = self._suppressed, now, 0
        return suppressed

    def log(self, logger: logging.Logger, level: int, message: str, *args: object) -> None:
        """Log ``message % args`` (never a traceback) unless one was logged too recently."""
        suppressed = self.admit()
        if suppressed is None:
            return
        more = f" ({suppressed} more since the last report)" if suppressed else ""
        logger.log(level, message + "%s", *args, more)


class KindThrottle:
    """One :class:`Throttle` per kind: each kind logs once an interval, with its own count."""

    def __init__(
        self, interval: float = INTERVAL, clock: Callable[[], float] | None = None
    ) -> None:
        self.interval = interval
        self._clock = clock if clock is not None else time.monotonic
        self._kinds: dict[str, Throttle] = {}

    def log(
        self, kind: str, logger: logging.Logger, level: int, message: str, *args: object
    ) -> None:
        """Log ``message % args`` unless a line of this ``kind`` was logged too recently;
        the line says how many more of its kind went unlogged."""
        if kind not in self._kinds and len(self._kinds) >= MAX_KINDS:
            kind = OTHER_KIND  # kinds are ours to choose, but a bound costs nothing
        throttle = self._kinds.get(kind)
        if throttle is None:
            throttle = self._kinds[kind] = Throttle(self.interval, self._clock)
        suppressed = throttle.admit()
        if suppressed is None:
            return
        more = f" ({suppressed} more {kind} since the last report)" if suppressed else ""
        logger.log(level, message + "%s", *args, more)
