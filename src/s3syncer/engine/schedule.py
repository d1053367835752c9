"""When a command runs without a trigger: ``reconcile`` and the cron ``runAt``.

Both come out as deadlines on the monotonic clock the runner sleeps on (trio's).
``runAt`` is written in wall-clock time, which jumps (NTP, daylight saving)
while the monotonic clock does not, so each tick is found on the wall clock
and converted once, from a reading of both clocks taken together. Nothing here
reads a clock: the caller passes both readings in.
"""

from __future__ import annotations

import math
import os
from datetime import datetime, tzinfo
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import croniter

from ..model.config import CommandConfig


def local_timezone() -> tzinfo:
    """The zone cron schedules use: ``TZ`` if set, else /etc/localtime, else UTC."""
    name = os.environ.get("TZ", "").lstrip(":")
    try:
        if name:
            return ZoneInfo(name)
        with Path("/etc/localtime").open("rb") as file:
            return ZoneInfo.from_file(file, key="localtime")
    except (ZoneInfoNotFoundError, OSError, ValueError):
        return ZoneInfo("UTC")


def system_wall_clock() -> datetime:
    """Now, in the local zone with its daylight-saving rules."""
    return datetime.now(local_timezone())


class Schedule:
    """The next reconcile and the next ``runAt`` tick of one command.

    ``now`` is the monotonic clock and ``wall_now`` the wall clock read at
    the same moment. A disabled command has neither.
    """

    def __init__(self, command: CommandConfig) -> None:
        self.command = command
        self._since = 0.0  # the start, then the end of the last run
        self.tick_at = math.inf  # the next tick on the monotonic clock
        self.tick_wall: datetime | None = None  # the same tick on the wall clock

    def start(self, now: float, wall_now: datetime) -> None:
        """Count reconcile from ``now`` and find the first tick."""
        self._since = now
        self.next_tick(now, wall_now)

    def reconcile_at(self) -> float:
        """When reconcile wants a run; infinity when it is off."""
        if self.command.reconcile is None or self.command.disable:
            return math.inf
        return self._since + self.command.reconcile

    def ran(self, ended_at: float) -> None:
        """A run ended, whatever started it: reconcile counts from here."""
        self._since = ended_at

    def next_tick(self, now: float, wall_now: datetime) -> None:
        """Move on to the first tick after the current one and after ``wall_now``."""
        if self.command.run_at is None or self.command.disable:
            self.tick_at, self.tick_wall = math.inf, None
            return
        # From the tick just fired, so one that fires a little early on the wall clock
        # does not come round again; never from the past, so ticks missed while busy
        # or asleep are skipped, not fired in a burst.
        base = wall_now if self.tick_wall is None else max(self.tick_wall, wall_now)
        self.tick_wall = croniter(self.command.run_at, base).get_next(datetime)
        # Epoch seconds, not datetime subtraction: within one zone that ignores a
        # daylight-saving change in between and lands an hour off.
        self.tick_at = now + (self.tick_wall.timestamp() - wall_now.timestamp())

    def update(self, command: CommandConfig, now: float, wall_now: datetime) -> None:
        """Take new settings; a changed ``runAt`` starts over from now."""
        old, self.command = self.command, command
        if command.run_at != old.run_at:
            self.tick_wall = None
            self.next_tick(now, wall_now)
