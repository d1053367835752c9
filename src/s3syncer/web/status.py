"""The ``GET /status`` document: each command's :class:`CommandView` as JSON.

Times stay Unix seconds in the view and become ISO 8601 text only here, and on the page.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from typing import Any

from ..model.command_view import CommandView
from ..model.run import PastRun, RunRecord


def iso(timestamp: float | None) -> str | None:
    """``timestamp`` (Unix seconds) as ISO 8601 UTC with milliseconds; None stays None."""
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
        "start": iso(record.started_at),
        "end": iso(record.ended_at),
        "durationSeconds": None if record.duration is None else round(record.duration, 3),
        "triggers": record.triggers,
        "events": record.events,
        "ok": None if result is None else result.ok,
        "outcome": None if result is None else result.describe(),
        "exitCode": None if result is None else result.exit_code,
        "signal": None if result is None else result.signal,
        "timedOut": None if result is None else result.timed_out,
        "error": None if result is None else result.error,
        # Not kept across a restart: null, never "" (which says the run wrote nothing).
        "outputTail": None if result is None or record.before_restart else result.output_tail,
        "beforeRestart": record.before_restart,
    }


def _current_run(record: RunRecord | None) -> dict[str, Any] | None:
    if record is None:
        return None
    return {
        "runId": record.run_id,
        "reason": record.reason,
        "start": iso(record.started_at),
        "triggers": record.triggers,
        "events": record.events,
        "outputTail": "" if record.output is None else record.output.text,
    }


def full_pass_status(record: RunRecord | None) -> dict[str, Any] | None:
    """The status API's view of the last full pass: the run, when it ended, its counts."""
    if record is None or record.result is None or record.result.report is None:
        return None
    return {
        "runId": record.run_id,
        "end": iso(record.ended_at),
        "ok": record.result.ok,
        "tags": dict(record.result.report.tags),
    }


def past_run_status(run: PastRun) -> dict[str, Any]:
    """The status API's view of a run in the history."""
    return {
        "runId": run.run_id,
        "reason": run.reason,
        "start": iso(run.started_at),
        "durationSeconds": round(run.duration, 3),
        "ok": run.ok,
        "result": run.outcome,
        "triggers": run.triggers,
        "events": run.events,
    }


def command_status(view: CommandView) -> dict[str, Any]:
    """The status API's view of one command."""
    last_success = view.last_success
    return {
        "name": view.name,
        "state": view.state,
        "pendingTriggers": view.pending_triggers,
        "pendingEvents": view.pending_events,
        "pendingEventAgeSeconds": round(view.pending_event_age, 3),
        "pendingFullSync": view.pending_full_sync,
        "currentRun": _current_run(view.current_run),
        "lastRun": run_status(view.last_run),
        "lastFullPass": full_pass_status(view.last_full_pass),
        "lastSuccess": iso(last_success.ended_at if last_success is not None else None),
        "recentRuns": [past_run_status(run) for run in view.recent_runs],
        "nextRun": iso(view.next_run),
        "nextReconcile": iso(view.next_reconcile),
        "nextSchedule": iso(view.next_schedule),
        "runs": view.runs,
        "failures": view.failures,
    }


def status_document(views: Iterable[CommandView]) -> dict[str, Any]:
    """The whole ``/status`` document."""
    return {"commands": [command_status(view) for view in views]}
