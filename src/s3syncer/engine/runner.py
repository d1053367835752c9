"""The per-command runner: the trio loop that drives coalescing and the schedule.

One runner drives one command. It owns a memory channel of triggers; the daemon's
admission drops triggers into it with ``send_nowait`` and never waits. The
runner drains the channel into its :class:`~s3syncer.engine.coalesce.Coalescer`, so
any number of triggers costs O(1) memory, sleeps until the next deadline (the
pending run, reconcile, a ``runAt`` tick) and runs the command, never twice at
the same time. What falls due when is decided in :mod:`s3syncer.engine.coalesce` and
:mod:`s3syncer.engine.schedule`, without trio; launching the process is injected
(``launch``) and so is the log its runs go to (``history``), so this loop is testable
under trio's MockClock without a process, a file or a socket. What the runner is doing,
as ``/status`` shows it, is read by :mod:`s3syncer.engine.view`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from datetime import datetime
from typing import Any

import trio

from ..model.config import CommandConfig
from ..model.event_log import EventLog
from ..model.run import PastRun, RecentRuns, RunRecord, RunRequest, RunResult, Trigger
from ..obs.metrics import Metrics
from .coalesce import Coalescer, Retrying
from .ports import Launch, RunLog, Settle
from .schedule import Schedule, system_wall_clock

log = logging.getLogger("s3syncer.runner")

TRIGGER_BUFFER = 4096
# The outcome of a run the shutdown grace cut short, in the log and the history.
KILLED_AT_SHUTDOWN = "killed at shutdown"


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
        history: RunLog | None = None,
    ) -> None:
        self.command = command
        self.history: RunLog = history if history is not None else RecentRuns()
        self._launch = launch
        self._settle = settle
        self._recovered = recovered
        self._metrics = metrics or Metrics()
        self._wall_clock = wall_clock
        self.send_channel, self._receive = trio.open_memory_channel[Trigger](buffer)
        self.coalescer = Coalescer(command, last_run_id=self.history.last_run_id)
        self.schedule = Schedule(command)
        self._scope: trio.CancelScope | None = None  # the wait for triggers, if one is on
        self.current_run: RunRecord | None = None
        self.in_flight: EventLog | None = None  # the events of the run in progress
        self._stopping = False
        # After a restart, the last run is the history's newest: a command whose last run
        # failed still looks failed, never "no run yet" above its own failed row.
        self.last_run: RunRecord | None = _newest(self.history)
        self.last_full_pass: RunRecord | None = None  # the last run that reported one
        self.runs = 0
        self.failures = 0
        self.stopped = trio.Event()

    # --- the public face -------------------------------------------------------------

    def stop(self) -> None:
        """Stop after the current run, if any; pending triggers are dropped."""
        self._stopping = True
        if self._scope is not None and self.current_run is None:
            self._scope.cancel()

    def update(self, command: CommandConfig) -> None:
        """Take new settings (a reload): pending triggers stay, deadlines are recomputed.

        A running run finishes as it started; ``disable`` cannot change here (the
        supervisor replaces the runner for that).
        """
        self.command = command
        self.coalescer.update(command)
        self.schedule.update(command, trio.current_time(), self._wall_clock())
        if self._scope is not None:
            self._scope.deadline = self._deadline()

    # --- the loop --------------------------------------------------------------------

    async def run(self, *, task_status: trio.TaskStatus[Runner] = trio.TASK_STATUS_IGNORED) -> None:
        """Serve triggers until ``stop()``; a disabled command only drains its channel."""
        try:
            if self.command.disable:
                with trio.CancelScope() as self._scope:  # for stop()
                    task_status.started(self)
                    async for _ in self._receive:
                        pass  # a disabled command accepts triggers and never runs them
                return
            self.schedule.start(trio.current_time(), self._wall_clock())
            if self._recovered is not None:
                # Accepted before a restart and never run: first, and it names the run.
                self._add(self._recovered)
            if self.command.run_on_start:
                self._add(Trigger("startup", immediate=True))
            task_status.started(self)
            while not self._stopping:
                await self._collect()
                if not self._stopping:
                    await self._wake()
        finally:
            _log_dropped(self.command.name, self.coalescer.pending_triggers)
            self.history.close()
            self.stopped.set()

    async def _collect(self) -> None:
        """Fold triggers in until the next deadline, or until ``stop()``.

        One cancel scope spans the whole wait and each trigger moves its deadline
        in place. The design once said ``move_on_after``, which fixes the deadline
        when the scope opens: every trigger that restarts the quiet period would
        open a new scope, which costs on the hot path, and only a scope kept on the
        runner can be moved by ``update()`` and cancelled by ``stop()`` from outside.
        """
        with trio.CancelScope() as scope:
            self._scope = scope
            try:
                while True:
                    # receive() yields after every item; under a burst, take all that is
                    # ready at once, or parsed bodies pile up in the channel.
                    self._drain_ready()
                    scope.deadline = self._deadline()
                    self._add(await self._receive.receive())
            finally:
                self._scope = None

    def _deadline(self) -> float:
        if self.current_run is not None:
            return self.schedule.tick_at  # triggers wait for the run to end; ticks do not
        return self._next_wakeup()[0]

    def _next_wakeup(self) -> tuple[float, str]:
        # On a tie the pending run goes first: it covers what reconcile would.
        return min(
            (self.coalescer.due(), "pending"),
            (self.schedule.reconcile_at(), "reconcile"),
            (self.schedule.tick_at, "schedule"),
        )

    async def _wake(self) -> None:
        at, why = self._next_wakeup()
        now = trio.current_time()
        if at > now:
            return  # an update() moved the deadline on after it passed
        if why == "reconcile":
            self._add(Trigger("reconcile", immediate=True))
        elif why == "schedule":
            self.schedule.next_tick(now, self._wall_clock())
            self._add(Trigger("schedule", immediate=True))
        request = self.coalescer.take()
        if request is not None:
            await self._run(request)

    def _drain_ready(self) -> None:
        while True:
            try:
                trigger = self._receive.receive_nowait()
            except trio.WouldBlock:
                return
            self._add(trigger)

    def _add(self, trigger: Trigger) -> None:
        self.coalescer.add(trigger, trio.current_time())
        self._metrics.pending(self.command.name, self.coalescer.pending_triggers)

    # --- running ---------------------------------------------------------------------

    async def _run(self, request: RunRequest) -> None:
        record = RunRecord(
            run_id=request.run_id,
            reason=request.reason,
            started_at=time.time(),
            triggers=request.triggers,
            events=len(request.events),
            output=request.output,
        )
        self.current_run = record
        self.in_flight = request.events
        self.history.started(request.run_id)  # saved at once: the id is taken, whatever happens
        self._metrics.pending(self.command.name, 0)
        self._metrics.running(self.command.name, True)
        _log_start(self.command.name, request)
        started = trio.current_time()
        result: RunResult | None = None
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._collect_during_run)
                result = await self._launch(self.command, request)
                nursery.cancel_scope.cancel()
        finally:
            self.current_run = None
            self.in_flight = None
            self._metrics.running(self.command.name, False)
            if result is None:
                # Cancelled (the shutdown grace is over) or broken: the run still gets an
                # outcome line and keeps its place in the history, or its id would vanish.
                self._interrupted(record, request, trio.current_time() - started)
        ended = trio.current_time()
        self.schedule.ran(ended)
        self._ended(record, result, ended - started)
        self._finish(request, result, ended - started)
        if result.ok and self._settle is not None:
            await self._settle(request.seq)

    def _ended(self, record: RunRecord, result: RunResult, duration: float) -> None:
        record.ended_at = record.started_at + duration
        record.result = result
        self.last_run = record
        self.history.add(PastRun.of(record))
        if result.report is not None and result.report.full_pass:
            self.last_full_pass = record
            self._metrics.full_pass(self.command.name, result.report)

    def _interrupted(self, record: RunRecord, request: RunRequest, duration: float) -> None:
        why = KILLED_AT_SHUTDOWN if self._stopping else "ended without a result"
        self._ended(record, RunResult(error=why), duration)
        self.runs += 1
        self.failures += 1
        self._metrics.run_finished(self.command.name, request.reason, False, duration)
        log.error(
            "%s: run %d %s after %.2fs",
            *(self.command.name, request.run_id, why, duration),
            extra={
                "command": self.command.name,
                "run_id": request.run_id,
                "reason": request.reason,
                "duration": round(duration, 3),
                # A finish line always has these (JSON logs): no exit code is known here.
                "exit_code": None,
                "signal": None,
                "timed_out": False,
            },
        )

    async def _collect_during_run(self) -> None:
        while True:
            await self._collect()
            now = trio.current_time()
            if self.schedule.tick_at <= now:
                # A tick during a run folds into the follow-up, like a trigger.
                self.schedule.next_tick(now, self._wall_clock())
                self._add(Trigger("schedule"))

    def _finish(self, request: RunRequest, result: RunResult, duration: float) -> None:
        self.runs += 1
        self._metrics.run_finished(self.command.name, request.reason, result.ok, duration)
        if not result.ok:
            self.failures += 1
        now = trio.current_time()
        retrying = self.coalescer.finish(request, result.ok, now, may_retry=not self._stopping)
        _log_end(self.command.name, request, result, duration, retrying)


def _newest(history: RunLog) -> RunRecord | None:
    runs = list(history)  # oldest first; at most KEEP_RUNS, once at start
    return runs[-1].as_record() if runs else None


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


def _log_end(
    name: str, request: RunRequest, result: RunResult, duration: float, retrying: Retrying | None
) -> None:
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
        log.info("%s: run %d succeeded in %.2fs", name, request.run_id, duration, extra=extra)
    elif retrying is not None:
        log.warning(
            "%s: run %d failed (%s) after %.2fs; retry %d of %d in %gs",
            *(name, request.run_id, result.describe(), duration),
            *(retrying.attempt, retrying.attempts, retrying.wait),
            extra=extra,
        )
    else:
        log.error(
            "%s: run %d failed (%s) after %.2fs",
            *(name, request.run_id, result.describe(), duration),
            extra=extra,
        )


def _log_dropped(name: str, pending: int) -> None:
    if pending:
        log.warning(
            "%s: stopped with %d pending triggers not run",
            *(name, pending),
            extra={"command": name, "pending": pending},
        )


def _count(number: int, noun: str) -> str:
    return f"{number} {noun}{'' if number == 1 else 's'}"
