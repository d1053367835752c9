"""``reconcile`` and ``runAt`` deadlines from a pair of clock readings: spec 3.3 and 3.4."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from s3syncer.engine.schedule import Schedule
from test_runner import command

WALL = datetime(2026, 11, 29, 2, 59, 0, tzinfo=UTC)


def started(now: float = 1000.0, wall: datetime = WALL, **overrides: object) -> Schedule:
    """A schedule for a command with ``overrides``, started at ``now`` / ``wall``."""
    schedule = Schedule(command(**overrides))
    schedule.start(now, wall)
    return schedule


def test_reconcile_counts_from_the_start_then_from_the_end_of_each_run() -> None:
    schedule = started(now=1000.0, reconcile=60.0)
    assert schedule.reconcile_at() == 1060.0
    schedule.ran(ended_at=1030.0)
    assert schedule.reconcile_at() == 1090.0


def test_no_reconcile_and_no_run_at_means_no_deadline() -> None:
    schedule = started()
    assert schedule.reconcile_at() == math.inf
    assert (schedule.tick_at, schedule.tick_wall) == (math.inf, None)


def test_a_disabled_command_has_neither_reconcile_nor_ticks() -> None:
    schedule = started(disable=True, reconcile=60.0, run_at="* * * * *")
    assert schedule.reconcile_at() == math.inf
    assert (schedule.tick_at, schedule.tick_wall) == (math.inf, None)


def test_the_first_tick_is_converted_onto_the_monotonic_clock() -> None:
    schedule = started(now=1000.0, run_at="*/5 * * * *")
    assert schedule.tick_wall == datetime(2026, 11, 29, 3, 0, tzinfo=UTC)
    assert schedule.tick_at == 1060.0


def test_each_tick_moves_on_to_the_next() -> None:
    schedule = started(now=1000.0, run_at="*/5 * * * *")
    ticks = []
    for _ in range(3):
        now = schedule.tick_at
        schedule.next_tick(now, WALL + timedelta(seconds=now - 1000.0))
        ticks.append((schedule.tick_wall, schedule.tick_at))
    minutes = [datetime(2026, 11, 29, 3, m, tzinfo=UTC) for m in (5, 10, 15)]
    assert ticks == list(zip(minutes, [1360.0, 1660.0, 1960.0], strict=True))


def test_a_tick_that_fires_early_by_the_wall_clock_does_not_come_round_again() -> None:
    schedule = started(now=1000.0, run_at="0 3 * * *")
    # The monotonic clock says 03:00; the wall clock, stepped back by NTP, says 02:59:58.
    schedule.next_tick(1060.0, datetime(2026, 11, 29, 2, 59, 58, tzinfo=UTC))
    assert schedule.tick_wall == datetime(2026, 11, 30, 3, 0, tzinfo=UTC)


def test_ticks_missed_while_busy_are_skipped_not_fired_in_a_burst() -> None:
    schedule = started(now=1000.0, run_at="*/5 * * * *")
    # The 03:00 tick is handled at 03:17 (a long run): the next is 03:20, not 03:05.
    schedule.next_tick(2080.0, datetime(2026, 11, 29, 3, 17, tzinfo=UTC))
    assert schedule.tick_wall == datetime(2026, 11, 29, 3, 20, tzinfo=UTC)
    assert schedule.tick_at == 2260.0


def test_a_tick_across_a_daylight_saving_change_falls_at_the_right_moment() -> None:
    berlin = ZoneInfo("Europe/Berlin")
    # 01:00 CET on the night clocks go forward at 02:00: 04:00 CEST is two hours on.
    schedule = started(now=0.0, wall=datetime(2026, 3, 29, 1, 0, tzinfo=berlin), run_at="0 4 * * *")
    assert schedule.tick_wall == datetime(2026, 3, 29, 4, 0, tzinfo=berlin)
    assert schedule.tick_at == 2 * 3600.0
    # And back: 01:00 CEST on the night clocks go back at 03:00; 04:00 CET is four hours on.
    schedule = started(
        now=0.0, wall=datetime(2026, 10, 25, 1, 0, tzinfo=berlin), run_at="0 4 * * *"
    )
    assert schedule.tick_at == 4 * 3600.0


def test_update_starts_the_ticks_over_only_when_run_at_changes() -> None:
    schedule = started(now=1000.0, run_at="0 3 * * *")
    later = WALL + timedelta(seconds=30)
    schedule.update(command(run_at="0 3 * * *", reconcile=100.0), 1030.0, later)
    assert schedule.tick_at == 1060.0
    assert schedule.reconcile_at() == 1100.0
    schedule.update(command(run_at="30 3 * * *"), 1030.0, later)
    assert schedule.tick_at == 1030.0 + 30.5 * 60
    schedule.update(command(), 1030.0, later)
    assert (schedule.tick_at, schedule.tick_wall) == (math.inf, None)
