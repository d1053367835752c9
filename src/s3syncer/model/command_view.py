"""A command as ``/status`` and the page show it: one shape, times as Unix seconds."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from .run import PastRun, RunRecord

State = Literal["idle", "waiting", "running", "backoff", "disabled", "stopped"]


@dataclass(frozen=True)
class CommandView:
    """What one command is doing and has done, at one instant."""

    name: str
    state: State
    pending_triggers: int  # accepted, not yet covered by a started run
    pending_events: int  # accepted, not yet covered by a successful run
    pending_event_age: float  # seconds since the oldest of those was accepted; 0: none
    pending_full_sync: bool  # some of those are unknown: the next run covers everything
    current_run: RunRecord | None
    last_run: RunRecord | None
    last_full_pass: RunRecord | None  # the last run whose result file said it was a full pass
    last_success: PastRun | None
    recent_runs: tuple[PastRun, ...]  # newest first
    next_run: float | None  # when the pending run or retry falls due
    next_reconcile: float | None
    next_schedule: float | None
    runs: int  # since start
    failures: int
    listens: bool = True  # some events rule can trigger it (not ``events: []``)
    retry_attempts: int = 0  # retries after a failure, as configured; 0: no retry
