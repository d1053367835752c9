"""A log line at most once an interval, with a count of what it stood for.

Clients choose how often the server meets a refused connection or a broken
request; the log must not grow with that, or a flood fills the disk. The first
occurrence is logged at once, later ones in the same interval are counted and
the count rides on the next line that is logged.
"""

from __future__ import annotations

import logging
import time

INTERVAL = 60.0


class Throttle:
    """Decides which occurrences of one kind of trouble are logged."""

    def __init__(self, interval: float = INTERVAL) -> None:
        self.interval = interval
        self._last = -float("inf")
        self._suppressed = 0

    def admit(self) -> int | None:
        """None to stay quiet; else how many occurrences went unlogged since the last line."""
        now = time.monotonic()
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
