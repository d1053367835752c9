"""Catch the daemon's signals from its first moments, before the event loop can.

Importing the daemon's stack (trio, Quart, Hypercorn) takes 0.5 s, more under load, and
``systemctl start && systemctl reload`` sends SIGHUP inside that window. Left to its
default, SIGHUP kills the process, and systemd counts a death by SIGHUP as clean, so it
does not restart it. This module imports nothing but ``signal``, so the command line can
install these handlers before it imports anything else of ours.
"""

from __future__ import annotations

import signal

# SIGHUP first: a daemon seen handling SIGTERM already handles SIGHUP
EARLY_SIGNALS = (signal.SIGHUP, signal.SIGTERM, signal.SIGINT)


class EarlySignals:
    """Remembers SIGHUP, SIGTERM and SIGINT that arrive before the event loop listens."""

    def __init__(self) -> None:
        self.received: list[int] = []

    def install(self) -> None:
        """Catch the three from now on, instead of dying mid-start."""
        for signum in EARLY_SIGNALS:
            signal.signal(signum, self._note)

    @property
    def stop_requested(self) -> bool:
        """Whether SIGTERM or SIGINT came: the daemon must shut down once it can."""
        return any(signum != signal.SIGHUP for signum in self.received)

    @property
    def reload_requested(self) -> bool:
        """Whether SIGHUP came: the file may have changed since it was read."""
        return signal.SIGHUP in self.received

    def _note(self, signum: int, _frame: object) -> None:
        if len(self.received) < len(EARLY_SIGNALS) and signum not in self.received:
            self.received.append(signum)  # what came, not how often: bounded
