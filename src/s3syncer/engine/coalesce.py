"""Folding triggers into the next run: the runner's core, without trio.

Any number of triggers for one command fold into one pending run in constant
space: a count, a bounded event log and a few times. This module decides when
that run falls due (the quiet period ``delay``, capped by ``maxDelay``, or at
once), what it covers, and what a failure leaves behind (a retry after its
backoff, and the failed run's events carried into whatever run comes next).
The caller passes the current time in, so every rule is a plain function of
its inputs; :mod:`s3syncer.engine.runner` drives it on trio's clock.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from ..model.config import CommandConfig
from ..model.event_log import EventLog
from ..model.run import Reason, RunRequest, Trigger


@dataclass(frozen=True)
class Retrying:
    """A failed run will run again: retry ``attempt`` of ``attempts``, ``wait`` seconds on."""

    attempt: int
    attempts: int
    wait: float


class _Pending:
    """Everything accepted for the next run."""

    def __init__(self, reason: Reason, now: float, events: EventLog, seq: int) -> None:
        self.reason: Reason = reason
        self.first_at = now
        self.quiet_until: float | None = None
        self.forced_at: float | None = None
        self.triggers = 0
        self.events = events
        self.seq = seq

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


class Coalescer:
    """The next run of one command: what it covers and when it falls due.

    ``add`` folds a trigger in, ``due`` says when to start, ``take`` starts
    the run and ``finish`` records how it ended. Times are the caller's clock.
    """

    def __init__(self, command: CommandConfig, *, last_run_id: int = 0) -> None:
        self.command = command
        self._pending: _Pending | None = None
        # A failed run's events when nothing is pending yet: the next run takes them.
        self._carry: EventLog | None = None
        self._carry_seq = 0
        self._attempt = 0
        self._runs = last_run_id  # run ids go on from the history's

    @property
    def pending_triggers(self) -> int:
        """Triggers accepted and not yet covered by a started run."""
        return 0 if self._pending is None else self._pending.triggers

    @property
    def pending_reason(self) -> Reason | None:
        """The reason the next run will have, or None when no run is pending."""
        return None if self._pending is None else self._pending.reason

    def unsettled(self) -> list[EventLog]:
        """The events waiting for the next run, or left by failed runs (not the running one)."""
        pending = [] if self._pending is None else [self._pending.events]
        carried = [] if self._carry is None else [self._carry]
        return [*pending, *carried]

    def add(self, trigger: Trigger, now: float) -> None:
        """Fold ``trigger`` into the pending run, which it starts or joins."""
        pending = self._ensure_pending(trigger.reason, now)
        pending.triggers += 1
        pending.events.extend(trigger.events)
        if trigger.events or trigger.truncated:
            # The lag counts from here (or from before a restart) until a run succeeds.
            accepted = now if trigger.accepted_at is None else min(now, trigger.accepted_at)
            pending.events.accepted_at(accepted)
        pending.events.truncated = pending.events.truncated or trigger.truncated
        pending.seq = max(pending.seq, trigger.seq)
        if trigger.immediate:
            pending.force(trigger.reason, now)
        elif pending.reason != "retry":
            # A retry's backoff is not restarted by new triggers: they ride along.
            pending.quiet_until = now + self.command.delay

    def due(self) -> float:
        """When the pending run should start; infinity when none is pending."""
        return math.inf if self._pending is None else self._pending.due(self.command.max_delay)

    def take(self) -> RunRequest | None:
        """Start the pending run: what it covers, numbered; None when none is pending."""
        pending, self._pending = self._pending, None
        if pending is None:
            return None
        if pending.reason != "retry":
            self._attempt = 0
        self._runs += 1
        return RunRequest(self._runs, pending.reason, pending.events, pending.triggers, pending.seq)

    def finish(
        self, request: RunRequest, ok: bool, now: float, *, may_retry: bool = True
    ) -> Retrying | None:
        """Record how ``request`` ended; say so if a failure is to be retried.

        Nothing accepted is lost on a failure: the retry, or the next run
        whatever starts it, covers the failed run's events too.
        """
        if ok:
            self._attempt = 0
            return None
        self._carry_forward(request)
        retry = self.command.retry
        if retry is None or self._attempt >= retry.attempts or not may_retry:
            self._attempt = 0
            return None
        self._attempt += 1
        wait = retry.delay_before(self._attempt)
        pending = self._ensure_pending("retry", now)
        pending.reason = "retry"
        pending.quiet_until = None
        pending.forced_at = now + wait
        return Retrying(self._attempt, retry.attempts, wait)

    def update(self, command: CommandConfig) -> None:
        """Take new settings: what is pending stays, its quiet period uses the new delay."""
        old, self.command = self.command, command
        if self._pending is not None and self._pending.quiet_until is not None:
            # The quiet period counts from the last trigger, with the new delay.
            self._pending.quiet_until += command.delay - old.delay

    def _ensure_pending(self, reason: Reason, now: float) -> _Pending:
        if self._pending is None:
            events = self._carry if self._carry is not None else EventLog()
            self._pending = _Pending(reason, now, events, self._carry_seq)
            self._carry, self._carry_seq = None, 0
        return self._pending

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
