"""Reading a runner: its state, its lag and its deadlines, as one :class:`CommandView`.

The runner only runs; what an operator asks of it (``/status``, the page, the lag metric,
how many commands are running at shutdown) is answered here from what it holds, with the
clocks passed in.
"""

from __future__ import annotations

import math

from ..model.command_view import CommandView, State
from ..model.event_log import EventLog
from .runner import Runner


def state(runner: Runner) -> State:
    """What the runner is doing now."""
    if runner.command.disable:
        return "disabled"
    if runner.stopped.is_set():
        return "stopped"
    if runner.current_run is not None:
        return "running"
    reason = runner.coalescer.pending_reason
    if reason is not None:
        return "backoff" if reason == "retry" else "waiting"
    return "idle"


def _unsettled(runner: Runner) -> list[EventLog]:
    in_flight = [] if runner.in_flight is None else [runner.in_flight]
    return [*in_flight, *runner.coalescer.unsettled()]


def pending_event_age(runner: Runner, now: float) -> float:
    """Seconds (``now`` on trio's clock) since the oldest event no successful run covered."""
    accepted = [log.oldest_at for log in _unsettled(runner) if log.oldest_at is not None]
    return max(0.0, now - min(accepted)) if accepted else 0.0


def _wall(at: float, now: float, wall_now: float) -> float | None:
    """A deadline on trio's clock as Unix time, or None for never."""
    return None if math.isinf(at) else wall_now + (at - now)


def command_view(runner: Runner, now: float, wall_now: float) -> CommandView:
    """The runner as status shows it; ``now`` on trio's clock, ``wall_now`` Unix time."""
    unsettled = _unsettled(runner)
    tick = runner.schedule.tick_wall
    return CommandView(
        name=runner.command.name,
        state=state(runner),
        pending_triggers=runner.coalescer.pending_triggers,
        pending_events=sum(len(log) for log in unsettled),
        pending_event_age=pending_event_age(runner, now),
        pending_full_sync=any(log.truncated for log in unsettled),
        current_run=runner.current_run,
        last_run=runner.last_run,
        last_full_pass=runner.last_full_pass,
        last_success=runner.history.last_success,
        recent_runs=tuple(reversed(list(runner.history))),
        next_run=_wall(runner.coalescer.due(), now, wall_now),
        next_reconcile=_wall(runner.schedule.reconcile_at(), now, wall_now),
        next_schedule=None if tick is None else tick.timestamp(),
        runs=runner.runs,
        failures=runner.failures,
        listens=bool(runner.command.events),
        retry_attempts=0 if runner.command.retry is None else runner.command.retry.attempts,
    )
