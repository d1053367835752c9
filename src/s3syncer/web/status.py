"""The status document of ``GET /status`` (and of the page at ``GET /``): per command, its
state, pending triggers and events (and the age of the oldest), current and last run, the
recent runs, the last success, and the next run, reconcile and schedule."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from typing import Any

from ..engine.runner import Runner
from ..model.run import PastRun, RunRecord


def _iso(timestamp: float | None) -> str | None:
    if timestamp is None:
        return None
    return dt.datetime.fromtimestamp(timestamp, dt.UTC).isoformat(timespec="milliseconds")


def run_status(record: RunRecord | None) -> dict[str, Any] | None:
    """The status API's view of one run."""
    if record is None:
        return None
    result = record.result
    return {
        "runId": record.run_id,
        "reason": record.reason,
        "start": _iso(record.started_at),
        "end": _iso(record.ended_at),
        "durationSeconds": None if record.duration is None else round(record.duration, 3),
        "triggers": record.triggers,
        "events": record.events,
        "ok": None if result is None else result.ok,
        "outcome": None if result is None else result.describe(),
        "exitCode": None if result is None else result.exit_code,
        "signal": None if result is None else result.signal,
        "timedOut": None if result is None else result.timed_out,
        "error": None if result is None else result.error,
        "outputTail": None if result is None else result.output_tail,
    }


def _current_run(record: RunRecord | None) -> dict[str, Any] | None:
    if record is None:
        return None
    return {
        "runId": record.run_id,
        "reason": record.reason,
        "start": _iso(record.started_at),
        "triggers": record.triggers,
        "events": record.events,
        "outputTail": "" if record.output is None else record.output.text,
    }


def past_run_status(run: PastRun) -> dict[str, Any]:
    """The status API's view of a run in the history."""
    return {
        "runId": run.run_id,
        "reason": run.reason,
        "start": _iso(run.started_at),
        "durationSeconds": round(run.duration, 3),
        "ok": run.ok,
        "result": run.outcome,
        "triggers": run.triggers,
        "events": run.events,
    }


def command_status(runner: Runner) -> dict[str, Any]:
    """The status API's view of one command."""
    last_success = runner.history.last_success
    return {
        "name": runner.command.name,
        "state": runner.state,
        "pendingTriggers": runner.pending_triggers,
        "pendingEvents": runner.waiting_events(),
        "pendingEventAgeSeconds": round(runner.pending_event_age(), 3),
        "pendingFullSync": runner.full_sync_owed(),
        "currentRun": _current_run(runner.current_run),
        "lastRun": run_status(runner.last_run),
        "lastSuccess": _iso(last_success.ended_at if last_success is not None else None),
        "recentRuns": [past_run_status(run) for run in reversed(list(runner.history))],
        "nextRun": _iso(runner.next_run()),
        "nextReconcile": _iso(runner.next_reconcile()),
        "nextSchedule": _iso(runner.next_schedule()),
        "runs": runner.runs,
        "failures": runner.failures,
    }


def status_document(runners: Iterable[Runner]) -> dict[str, Any]:
    """The whole ``/status`` document."""
    return {"commands": [command_status(runner) for runner in runners]}
