"""The per-command runner: debounce, coalesce, schedule and retry.

One runner drives one command. It owns a memory channel of triggers; the web
handler drops triggers into it with ``send_nowait`` and never waits. The
runner drains the channel into a single :class:`Pending` record, so any
number of triggers costs O(1) memory, and it runs the command when that
record falls due, never twice at the same time. Launching the process is
injected (``launch``), so all of this is testable under trio's MockClock
without a process or a socket.
"""

from __future__ import annotations

import logging
import math
import os
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, tzinfo
from pathlib import Path
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import trio
from croniter import croniter

from .config import CommandConfig
from .events import Event, EventLog
from .metrics import Metrics
from .reasons import Reason

log = logging.getLogger("s3syncer.runner")

State = Literal["idle", "waiting", "running", "backoff", "disabled", "stopped"]

TRIGGER_BUFFER = 4096


@dataclass(frozen=True)
class Trigger:
    """A request for a run. ``immediate`` skips the quiet period (startup, ticks when idle)."""

    reason: Reason
    events: tuple[Event, ...] = ()
    immediate: bool = False
    seq: int = 0  # the journal batch that recorded these events (durable state), if any
    truncated: bool = False  # some events of this trigger are unknown: sync everything


@dataclass(frozen=True)
class RunRequest:
    """What one run is for: handed to the launcher."""

    run_id: int
    reason: Reason
    events: EventLog
    triggers: int
    seq: int = 0


@dataclass(frozen=True)
class RunResult:
    """How a run ended. A run fails on a non-zero exit, a signal, a timeout or no start."""

    exit_code: int | None = None
    signal: int | None = None
    timed_out: bool = False
    error: str | None = None
    output_tail: str = ""

    @property
    def ok(self) -> bool:
        """Whether the run succeeded."""
        return self.exit_code == 0 and not self.timed_out and self.error is None

    def describe(self) -> str:
        """A few words for a log line: ``exit 0``, ``killed by signal 9``, ``timed out``."""
        if self.error is not None:
            return self.error
        if self.timed_out:
            return "timed out"
        if self.signal is not None:
            return f"killed by signal {self.signal}"
        return f"exit {self.exit_code}"


Launch = Callable[[CommandConfig, RunRequest], Awaitable[RunResult]]
Settle = Callable[[int], Awaitable[None]]


@dataclass
class RunRecord:
    """The last run, as the status API shows it."""

    run_id: int
    reason: Reason
    started_at: float
    ended_at: float | None = None
    triggers: int = 0
    events: int = 0
    result: RunResult | None = None

    @property
    def duration(self) -> float | None:
        """Seconds the run took, once it ended."""
        return None if self.ended_at is None else self.ended_at - self.started_at


class Pending:
    """Everything accepted for the next run, folded into constant space."""

    def __init__(self, reason: Reason, now: float, events: EventLog | None = None) -> None:
        self.reason: Reason = reason
        self.first_at = now
        self.quiet_until: float | None = None
        self.forced_at: float | None = None
        self.triggers = 0
        self.events = events if events is not None else EventLog()
        self.seq = 0

    def due(self, max_delay: float) -> float:
        """When the run should start: the quiet period or maxDelay, or a forced time."""
        candidates = [math.inf]
        if self.forced_at is not None:
            candidates.append(self.forced_at)
        if self.quiet_until is not None:
            candidates.append(min(self.quiet_until, self.first_at + max_delay))
        return min(candidates)

    def force(self, reason: Reason, at: float) -> None:
        """Run no later than ``at``; ``reason`` names the run if this makes it earlier."""
        if self.forced_at is None or at < self.forced_at:
            self.forced_at = at
            self.reason = reason


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


class Runner:
    """Drives one command. Start it with ``nursery.start(runner.run)``."""

    def __init__(
        self,
        command: CommandConfig,
        launch: Launch,
        *,
        metrics: Metrics | None = None,
        wall_clock: Callable[[], datetime] = system_wall_clock,
        buffer: int = TRIGGER_BUFFER,
        settle: Settle | None = None,
        recovered: Trigger | None = None,
    ) -> None:
        self.command = command
        self._launch = launch
        self._settle = settle
        self._recovered = recovered
        self._metrics = metrics or Metrics()
        self._wall_clock = wall_clock
        self.send_channel, self._receive = trio.open_memory_channel[Trigger](buffer)
        self._pending: Pending | None = None
        self._carry: EventLog | None = None
        self._carry_seq = 0
        self._attempt = 0
        self._run_count = 0
        self._started_at = 0.0
        self._last_end: float | None = None
        self._tick_dt: datetime | None = None
        self._tick_at = math.inf
        self._running: RunRecord | None = None
        self._stopping = False
        self._idle_scope: trio.CancelScope | None = None
        self._rescheduled = False
        self.last_run: RunRecord | None = None
        self.runs = 0
        self.failures = 0
        self.stopped = trio.Event()

    # --- the public face -------------------------------------------------------------

    def stop(self) -> None:
        """Stop after the current run, if any; pending triggers are dropped."""
        self._stopping = True
        if self._idle_scope is not None:
            self._idle_scope.cancel()

    def update(self, command: CommandConfig) -> None:
        """Take new settings (a reload): pending triggers stay, deadlines are recomputed.

        A running run finishes as it started; ``disable`` cannot change here (the
        service replaces the runner for that).
        """
        old, self.command = self.command, command
        pending = self._pending
        if pending is not None and pending.quiet_until is not None:
            # The quiet period counts from the last trigger, with the new delay.
            pending.quiet_until += command.delay - old.delay
        if command.run_at != old.run_at:
            self._tick_dt, self._tick_at = None, math.inf
            if command.run_at is not None:
                self._advance_tick(self._wall_clock())
        if self._idle_scope is not None:
            self._rescheduled = True
            self._idle_scope.cancel()

    @property
    def state(self) -> State:
        """What the runner is doing now."""
        if self.command.disable:
            return "disabled"
        if self.stopped.is_set():
            return "stopped"
        if self._running is not None:
            return "running"
        if self._pending is not None:
            return "backoff" if self._pending.reason == "retry" else "waiting"
        return "idle"

    @property
    def current_run(self) -> RunRecord | None:
        """The run in progress, if any."""
        return self._running

    @property
    def pending_triggers(self) -> int:
        """Triggers accepted and not yet covered by a started run."""
        return self._pending.triggers if self._pending is not None else 0

    def next_reconcile(self) -> float | None:
        """Wall-clock time (epoch seconds) of the next reconcile run, if reconcile is on."""
        at = self._reconcile_at()
        return None if math.isinf(at) else self._to_wall(at)

    def next_schedule(self) -> float | None:
        """Wall-clock time (epoch seconds) of the next ``runAt`` tick, if any."""
        return None if self._tick_dt is None else self._tick_dt.timestamp()

    def _to_wall(self, at: float) -> float:
        return time.time() + (at - trio.current_time())

    # --- the loop --------------------------------------------------------------------

    async def run(self, *, task_status: trio.TaskStatus[Runner] = trio.TASK_STATUS_IGNORED) -> None:
        """Serve triggers until ``stop()``; a disabled command only drains its channel."""
        self._started_at = trio.current_time()
        try:
            if self.command.disable:
                task_status.started(self)
                with trio.CancelScope() as self._idle_scope:
                    await self._drain_forever()
                return
            if self.command.run_at is not None:
                self._advance_tick(self._wall_clock())
            if self._recovered is not None:
                # Accepted before a restart and never run: first, and it names the run.
                self._absorb(self._recovered)
                self._recovered = None
            if self.command.run_on_start:
                self._absorb(Trigger("startup", immediate=True))
            task_status.started(self)
            await self._loop()
        finally:
            self._report_dropped()
            self.stopped.set()

    async def _loop(self) -> None:
        while not self._stopping:
            # One scope for a whole idle spell: each trigger moves its deadline in place,
            # which is cheaper on the hot path than a new scope per trigger.
            with trio.CancelScope() as scope:
                self._idle_scope = scope
                while True:
                    self._drain_ready()
                    scope.deadline = self._next_wakeup()[0]
                    self._absorb(await self._receive.receive())
            self._idle_scope = None
            if self._rescheduled:
                self._rescheduled = False  # woken by update(): recompute the deadlines
            elif not self._stopping:
                await self._wake(self._next_wakeup()[1])

    def _next_wakeup(self) -> tuple[float, str]:
        options = [(self._reconcile_at(), "reconcile"), (self._tick_at, "schedule")]
        if self._pending is not None:
            options.append((self._pending.due(self.command.max_delay), "pending"))
        return min(options)

    def _reconcile_at(self) -> float:
        if self.command.reconcile is None or self.command.disable:
            return math.inf
        since = self._last_end if self._last_end is not None else self._started_at
        return since + self.command.reconcile

    async def _wake(self, why: str) -> None:
        if why == "reconcile":
            self._absorb(Trigger("reconcile", immediate=True))
        elif why == "schedule":
            self._advance_tick(self._tick_dt or self._wall_clock())
            self._absorb(Trigger("schedule", immediate=True))
        pending, self._pending = self._pending, None
        if pending is not None:
            await self._run(pending)

    def _advance_tick(self, after: datetime) -> None:
        assert self.command.run_at is not None
        now = self._wall_clock()
        # Never fire ticks that passed while we were busy or asleep: start from now.
        base = max(after, now)
        self._tick_dt = croniter(self.command.run_at, base).get_next(datetime)
        self._tick_at = trio.current_time() + (self._tick_dt - now).total_seconds()

    # --- folding triggers ------------------------------------------------------------

    def _drain_ready(self) -> None:
        while True:
            try:
                trigger = self._receive.receive_nowait()
            except trio.WouldBlock:
                return
            self._absorb(trigger)

    async def _drain_forever(self) -> None:
        async for _ in self._receive:
            pass  # a disabled command accepts triggers and never runs them

    def _absorb(self, trigger: Trigger) -> None:
        now = trio.current_time()
        pending = self._ensure_pending(trigger.reason, now)
        pending.triggers += 1
        pending.events.extend(trigger.events)
        pending.events.truncated = pending.events.truncated or trigger.truncated
        pending.seq = max(pending.seq, trigger.seq)
        if trigger.immediate:
            pending.force(trigger.reason, now)
        elif pending.reason != "retry":
            # A retry's backoff is not restarted by new triggers: they ride along.
            pending.quiet_until = now + self.command.delay
        self._metrics.pending(self.command.name, pending.triggers)

    def _ensure_pending(self, reason: Reason, now: float) -> Pending:
        if self._pending is None:
            self._pending = Pending(reason, now, self._carry)
            self._pending.seq = self._carry_seq
            self._carry, self._carry_seq = None, 0
        return self._pending

    def _report_dropped(self) -> None:
        if self._pending is not None and self._pending.triggers:
            log.warning(
                "%s: stopped with %d pending triggers not run",
                self.command.name,
                self._pending.triggers,
                extra={"command": self.command.name, "pending": self._pending.triggers},
            )

    # --- running ---------------------------------------------------------------------

    async def _run(self, pending: Pending) -> None:
        if pending.reason != "retry":
            self._attempt = 0
        self._run_count += 1
        request = RunRequest(
            self._run_count, pending.reason, pending.events, pending.triggers, pending.seq
        )
        record = RunRecord(
            run_id=request.run_id,
            reason=request.reason,
            started_at=time.time(),
            triggers=request.triggers,
            events=len(request.events),
        )
        self._running = record
        self._metrics.pending(self.command.name, 0)
        self._metrics.running(self.command.name, True)
        _log_start(self.command.name, request)
        started = trio.current_time()
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._collect_during_run)
                result = await self._launch(self.command, request)
                nursery.cancel_scope.cancel()
        finally:
            self._running = None
            self._metrics.running(self.command.name, False)
        self._last_end = trio.current_time()
        record.ended_at = record.started_at + (self._last_end - started)
        record.result = result
        self.last_run = record
        self._finish(request, result, self._last_end - started)
        if result.ok and self._settle is not None:
            await self._settle(request.seq)

    async def _collect_during_run(self) -> None:
        while True:
            with trio.CancelScope(deadline=self._tick_at) as scope:
                self._absorb(await self._receive.receive())
                # receive() yields after every item; under a burst, take all that is
                # ready at once, or parsed bodies pile up in the channel.
                self._drain_ready()
            if scope.cancelled_caught:
                # A tick during a run folds into the follow-up, like a trigger.
                self._advance_tick(self._tick_dt or self._wall_clock())
                self._absorb(Trigger("schedule"))

    def _finish(self, request: RunRequest, result: RunResult, duration: float) -> None:
        name = self.command.name
        self.runs += 1
        self._metrics.run_finished(name, request.reason, result.ok, duration)
        extra: dict[str, Any] = {
            "command": name,
            "run_id": request.run_id,
            "reason": request.reason,
            "duration": round(duration, 3),
            "exit_code": result.exit_code,
            "signal": result.signal,
            "timed_out": result.timed_out,
        }
        if result.ok:
            self._attempt = 0
            log.info("%s: run %d succeeded in %.2fs", name, request.run_id, duration, extra=extra)
            return
        self.failures += 1
        retry = self.command.retry
        if retry is not None and self._attempt < retry.attempts and not self._stopping:
            self._attempt += 1
            wait = retry.delay_before(self._attempt)
            self._schedule_retry(request, wait)
            log.warning(
                "%s: run %d failed (%s) after %.2fs; retry %d of %d in %gs",
                *(name, request.run_id, result.describe(), duration),
                *(self._attempt, retry.attempts, wait),
                extra=extra,
            )
            return
        self._attempt = 0
        # Nothing accepted is lost: the next run, whatever starts it, covers these events.
        self._carry_forward(request)
        log.error(
            "%s: run %d failed (%s) after %.2fs",
            *(name, request.run_id, result.describe(), duration),
            extra=extra,
        )

    def _schedule_retry(self, failed: RunRequest, wait: float) -> None:
        now = trio.current_time()
        self._carry_forward(failed)
        pending = self._ensure_pending("retry", now)
        pending.reason = "retry"
        pending.quiet_until = None
        pending.forced_at = now + wait

    def _carry_forward(self, failed: RunRequest) -> None:
        events = failed.events
        if not len(events) and not events.truncated:
            return
        carried = EventLog()
        if self._carry is not None:
            carried.merge(self._carry)
        carried.merge(events)
        if self._pending is not None:
            carried.merge(self._pending.events)
            self._pending.events = carried
            self._pending.seq = max(self._pending.seq, failed.seq, self._carry_seq)
            self._carry, self._carry_seq = None, 0
        else:
            self._carry = carried
            self._carry_seq = max(self._carry_seq, failed.seq)


def _log_start(name: str, request: RunRequest) -> None:
    extra = {
        "command": name,
        "run_id": request.run_id,
        "reason": request.reason,
        "triggers": request.triggers,
        "events": len(request.events),
    }
    events = _count(len(request.events), "event")
    if request.triggers > 1:
        log.info(
            "%s: %d triggers coalesced into run %d (reason %s, %s)",
            *(name, request.triggers, request.run_id, request.reason, events),
            extra=extra,
        )
    else:
        log.info(
            "%s: run %d started (reason %s, %s)",
            *(name, request.run_id, request.reason, events),
            extra=extra,
        )


def _count(number: int, noun: str) -> str:
    return f"{number} {noun}{'' if number == 1 else 's'}"
