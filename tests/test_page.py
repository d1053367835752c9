"""The status page: escaped, complete, and readable at a glance."""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

from s3syncer.web.page import ago, duration, render_status_page

NOW = 1_800_000_000.0


def _status(**last: Any) -> dict[str, Any]:
    run = {
        "runId": 7,
        "reason": "event",
        "start": "2027-01-15T07:57:00+00:00",
        "end": "2027-01-15T07:57:02+00:00",
        "durationSeconds": 2.0,
        "triggers": 3,
        "events": 2,
        "ok": True,
        "outcome": "exit 0",
        "exitCode": 0,
        "signal": None,
        "timedOut": False,
        "error": None,
        "outputTail": "copied 3 objects\n",
    }
    run.update(last)
    return {
        "commands": [
            {
                "name": "push",
                "state": "idle",
                "pendingTriggers": 0,
                "lastRun": run,
                "nextReconcile": "2027-01-15T09:00:00+00:00",
                "nextSchedule": None,
                "runs": 4,
                "failures": 1,
            }
        ]
    }


def test_output_from_a_process_is_escaped() -> None:
    tail = '<script>alert("x")</script> & <img src=x onerror=alert(1)>'
    html = render_status_page(_status(outputTail=tail), "1.0", NOW)
    assert "<script>" not in html and "<img" not in html
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; &amp; &lt;img" in html


def test_an_error_text_is_escaped_and_shown_as_failed() -> None:
    html = render_status_page(
        _status(
            ok=False,
            exitCode=None,
            error="cannot start </dd><b>x",
            outcome="cannot start </dd><b>x",
        ),
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
    html = render_status_page(_status(durationSeconds=3725.2), "1.0", NOW)
    assert "took 1h2m: exit 0" in html


def _history(*results: tuple[int, bool, float]) -> list[dict[str, Any]]:
    """recentRuns, newest first, from (run id, ok, seconds before NOW it started)."""
    return [
        {
            "runId": run_id,
            "reason": "event",
            "start": dt.datetime.fromtimestamp(NOW - before, dt.UTC).isoformat(),
            "durationSeconds": 0.25,
            "ok": ok,
            "result": "exit 0" if ok else "exit 3 <&>",
            "triggers": 2,
            "events": 5,
        }
        for run_id, ok, before in results
    ]


def test_the_history_shows_each_run_in_a_table_and_a_timeline() -> None:
    status = _status()
    status["commands"][0]["recentRuns"] = _history((9, True, 60), (8, False, 600), (7, True, 3600))
    html = render_status_page(status, "1.0", NOW)
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
    status = _status()
    command = status["commands"][0]
    command.update(
        state="running",
        pendingEvents=3,
        pendingEventAgeSeconds=420.0,
        lastSuccess="2027-01-15T07:00:00+00:00",
        nextRun="2027-01-15T08:00:30+00:00",
        currentRun={
            "runId": 8,
            "reason": "retry",
            "start": "2027-01-15T07:59:00+00:00",
            "triggers": 1,
            "events": 3,
            "outputTail": "copying <layer>\n",
        },
    )
    html = render_status_page(status, "1.0", NOW)
    assert "<dt>events waiting</dt><dd>3, oldest accepted 7 min ago</dd>" in html
    assert '<dt>last success</dt><dd title="2027-01-15T07:00:00+00:00">1 h ago</dd>' in html
    assert '<dt>next run</dt><dd title="2027-01-15T08:00:30+00:00">after #8 ends</dd>' in html
    assert "<details open><summary>output of run #8 so far</summary>" in html
    assert "<pre>copying &lt;layer&gt;\n</pre>" in html
    assert '<rect class="bar running"' in html
    command.update(state="backoff", currentRun=None)
    html = render_status_page(status, "1.0", NOW)
    assert '<dt>retry</dt><dd title="2027-01-15T08:00:30+00:00">in 30 s</dd>' in html
    command.update(state="idle", pendingEvents=0, pendingEventAgeSeconds=0.0, nextRun=None)
    html = render_status_page(status, "1.0", NOW)
    assert "<dt>events waiting</dt><dd>none</dd>" in html
    # An unreadable journal: no event is known, yet everything waits for a run.
    command.update(pendingEventAgeSeconds=300.0, pendingFullSync=True)
    html = render_status_page(status, "1.0", NOW)
    assert (
        "<dt>events waiting</dt><dd>0 and a run covering everything, oldest accepted 5 min ago</dd>"
        in html
    )
