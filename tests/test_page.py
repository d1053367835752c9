"""The status page: escaped, complete, and readable at a glance."""

from __future__ import annotations

from typing import Any

from s3syncer.page import ago, duration, render_status_page

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
    assert "<dt>took</dt><dd>1h2m</dd>" in html
