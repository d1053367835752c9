"""The status page: escaped, complete, and readable at a glance."""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import replace
from typing import Any

from s3syncer.model.command_view import CommandView
from s3syncer.model.run import OutputTail, PastRun, RunRecord, RunResult
from s3syncer.web.page import PAGE_SCRIPT, ago, duration, render_status_page

NOW = 1_800_000_000.0  # 2027-01-15T08:00:00Z


def at(iso: str) -> float:
    """Unix time of an ISO 8601 instant."""
    return dt.datetime.fromisoformat(iso).timestamp()


def _last_run(
    *,
    ok: bool = True,
    duration: float = 2.0,
    output: str = "copied 3 objects\n",
    error: str | None = None,
) -> RunRecord:
    start = at("2027-01-15T07:57:00+00:00")
    result = RunResult(exit_code=0 if ok else None, error=error, output_tail=output)
    return RunRecord(7, "event", start, start + duration, triggers=3, events=2, result=result)


def _view(last: RunRecord | None = None, **changes: Any) -> CommandView:
    view = CommandView(
        name="push",
        state="idle",
        pending_triggers=0,
        pending_events=0,
        pending_event_age=0.0,
        pending_full_sync=False,
        current_run=None,
        last_run=_last_run() if last is None else last,
        last_full_pass=None,
        last_success=None,
        recent_runs=(),
        next_run=None,
        next_reconcile=at("2027-01-15T09:00:00+00:00"),
        next_schedule=None,
        runs=4,
        failures=1,
    )
    return replace(view, **changes)


def _status(**last: Any) -> list[CommandView]:
    return [_view(_last_run(**last))]


def test_output_from_a_process_is_escaped() -> None:
    tail = '<script>alert("x")</script> & <img src=x onerror=alert(1)>'
    html = render_status_page(_status(output=tail), "1.0", NOW)
    html = html.replace(f"<script>{PAGE_SCRIPT}</script>", "", 1)  # the page's own, alone
    assert "<script" not in html and "<img" not in html
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; &amp; &lt;img" in html


def test_an_error_text_is_escaped_and_shown_as_failed() -> None:
    html = render_status_page(
        _status(ok=False, error="cannot start </dd><b>x"),
        "1.0",
        NOW,
    )
    assert 'class="cmd failed"' in html
    assert "cannot start &lt;/dd&gt;&lt;b&gt;x" in html


def test_the_page_shows_each_command_with_its_mark_and_relative_times() -> None:
    html = render_status_page(_status(), "1.0", NOW)
    assert 'class="cmd ok"' in html and ">ok<" in html
    assert "3 min ago" in html  # 07:57 against 08:00
    assert "in 1 h" in html  # the next reconcile at 09:00
    assert "<details><summary>output of the last run</summary>" in html
    assert 'http-equiv=refresh content="10"' in html
    assert 'name=viewport content="width=device-width' in html


def test_relative_times() -> None:
    assert ago(None, NOW) == "never"
    assert ago(NOW - 2, NOW) == "just now"
    assert ago(NOW - 42, NOW) == "42 s ago"
    assert ago(NOW - 3 * 60 - 5, NOW) == "3 min ago"
    assert ago(NOW + 7200, NOW) == "in 2 h"
    assert ago(NOW - 3 * 86400, NOW) == "3 d ago"


def test_durations_read_well_from_seconds_to_hours() -> None:
    assert duration(0.04) == "40ms"  # "0.0 s" told an operator nothing
    assert duration(0.0004) == "0ms"
    assert duration(2.5) == "2.5s"
    assert duration(42.7) == "42s"
    assert duration(185) == "3m5s"
    assert duration(2 * 3600 + 5 * 60 + 30) == "2h5m"
    html = render_status_page(_status(duration=3725.2), "1.0", NOW)
    assert "took 1h2m: exit 0" in html


def _history(*results: tuple[int, bool, float]) -> tuple[PastRun, ...]:
    """The recent runs, newest first, from (run id, ok, seconds before NOW it started)."""
    return tuple(
        PastRun(
            run_id=run_id,
            reason="event",
            started_at=NOW - before,
            ended_at=NOW - before + 0.25,
            triggers=2,
            events=5,
            ok=ok,
            outcome="exit 0" if ok else "exit 3 <&>",
        )
        for run_id, ok, before in results
    )


def test_the_history_shows_each_run_in_a_table_and_a_timeline() -> None:
    runs = _history((9, True, 60), (8, False, 600), (7, True, 3600))
    html = render_status_page([_view(recent_runs=runs)], "1.0", NOW)
    rows = re.findall(r"<tr><td>#(\d+)</td><td>event</td>.*?</tr>", html)
    assert rows == ["9", "8", "7"]
    assert "<td>250ms</td>" in html
    assert '<td class="result failed">exit 3 &lt;&amp;&gt;</td>' in html
    assert "<td>2</td><td>5</td>" in html
    svg = re.search(r"<svg class=\"timeline\".*?</svg>", html)
    assert svg is not None
    bars = re.findall(r'<rect class="bar (\w+)" x="([\d.]+)"', svg.group())
    # Oldest run at the left edge, the newest near "now" at the right.
    assert [css for css, _ in bars] == ["ok", "failed", "ok"]
    assert [float(x) for _, x in bars] == [590.0, 500.0, 0.0]
    assert "#8 event: exit 3 &lt;&amp;&gt;" in svg.group()


def test_waiting_events_last_success_next_run_and_live_output() -> None:
    output = OutputTail()
    output.append(b"copying <layer>")
    current = RunRecord(8, "retry", at("2027-01-15T07:59:00+00:00"), None, 1, 3, output=output)
    success = _history((6, True, 3600 + 0.25))[0]
    command = _view(
        state="running",
        pending_events=3,
        pending_event_age=420.0,
        last_success=success,
        next_run=at("2027-01-15T08:00:30+00:00"),
        current_run=current,
    )
    html = render_status_page([command], "1.0", NOW)
    assert "<dt>events waiting</dt><dd>3, oldest accepted 7 min ago</dd>" in html
    assert '<dt>last success</dt><dd title="2027-01-15T07:00:00.000+00:00">1 h ago</dd>' in html
    assert '<dt>next run</dt><dd title="2027-01-15T08:00:30.000+00:00">after #8 ends</dd>' in html
    assert "<details open><summary>output of run #8 so far</summary>" in html
    assert "<pre>copying &lt;layer&gt;\n</pre>" in html
    assert '<rect class="bar running"' in html
    command = replace(command, state="backoff", current_run=None)
    html = render_status_page([command], "1.0", NOW)
    assert '<dt>retry</dt><dd title="2027-01-15T08:00:30.000+00:00">in 30 s</dd>' in html
    command = replace(command, state="idle", pending_events=0, pending_event_age=0.0, next_run=None)
    html = render_status_page([command], "1.0", NOW)
    assert "<dt>events waiting</dt><dd>none</dd>" in html
    # An unreadable journal: no event is known, yet everything waits for a run.
    command = replace(command, pending_event_age=300.0, pending_full_sync=True)
    html = render_status_page([command], "1.0", NOW)
    assert (
        "<dt>events waiting</dt><dd>0 and a run covering everything, oldest accepted 5 min ago</dd>"
        in html
    )
