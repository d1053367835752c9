"""The page across its refresh: what a person opened stays open, the live output follows
its newest line, a failed run's output is open, and a command that will not run again
by itself says what will run it."""

from __future__ import annotations

import base64
import hashlib
import re
from dataclasses import replace

from s3syncer.model.run import OutputTail, RunRecord, RunResult
from s3syncer.web import page
from s3syncer.web.page import render_status_page
from test_page import NOW, _last_run, _view, at


def _next_run(html: str) -> str | None:
    found = re.search(r"<dt>next run</dt><dd[^>]*>(.*?)</dd>", html)
    return None if found is None else found.group(1)


def test_a_failed_runs_output_starts_open_and_a_successful_ones_closed() -> None:
    failed = _last_run(ok=False, error="exit 3", output="no route\n")
    html = render_status_page([_view(failed)], "1.0", NOW)
    assert '<div class="out" id="out-push-7"><details open><summary>output of the last run' in html
    html = render_status_page([_view(_last_run())], "1.0", NOW)
    assert '<div class="out" id="out-push-7"><details><summary>output of the last run' in html


def test_the_live_output_and_the_same_runs_last_output_share_one_place() -> None:
    output = OutputTail()
    output.append(b"copying")
    current = RunRecord(8, "event", NOW - 60, None, 1, 1, output=output)
    html = render_status_page([_view(state="running", current_run=current)], "1.0", NOW)
    # One id for run 8 while it runs and once it ended: what a person opened stays open.
    assert '<div class="out" id="out-push-8"><details open>' in html


def test_the_page_script_is_one_constant_whose_hash_the_csp_names() -> None:
    html = render_status_page([_view()], "1.0", NOW)
    assert html.count("<script>") == 1
    assert f"<script>{page.PAGE_SCRIPT}</script>" in html
    digest = base64.b64encode(hashlib.sha256(page.PAGE_SCRIPT.encode()).digest()).decode()
    assert f"sha256-{digest}" == page.PAGE_SCRIPT_HASH
    assert f"<style>{page.PAGE_STYLE}</style>" in html
    style = base64.b64encode(hashlib.sha256(page.PAGE_STYLE.encode()).digest()).decode()
    assert f"sha256-{style}" == page.PAGE_STYLE_HASH
    # It still works without JavaScript: the page refreshes itself.
    assert '<meta http-equiv=refresh content="10">' in html


def test_once_retries_are_used_up_the_card_says_what_will_run_it_next() -> None:
    failed = RunRecord(9, "retry", NOW - 600, NOW - 590, result=RunResult(exit_code=3))
    view = _view(failed, retry_attempts=3, next_reconcile=None)
    assert _next_run(render_status_page([view], "1.0", NOW)) == (
        "none: retries used up (3 of 3); nothing runs until the next event or a manual run"
    )
    view = replace(view, next_reconcile=at("2027-01-15T08:05:00+00:00"))
    assert _next_run(render_status_page([view], "1.0", NOW)) == (
        "none: retries used up (3 of 3); nothing runs until the next event, "
        "the reconcile in 5 min or a manual run"
    )
    view = replace(
        view, retry_attempts=0, next_schedule=at("2027-01-15T11:00:00+00:00"), listens=False
    )
    assert _next_run(render_status_page([view], "1.0", NOW)) == (
        "none: no retry configured; nothing runs until the reconcile in 5 min, "
        "the schedule tick in 3 h or a manual run"
    )


def test_a_failure_from_before_a_restart_says_the_same_and_a_success_nothing() -> None:
    failed = replace(
        RunRecord(4, "event", NOW - 60, NOW - 50, result=RunResult(exit_code=1)),
        before_restart=True,
    )
    view = _view(failed, retry_attempts=2, next_reconcile=None, listens=False)
    assert _next_run(render_status_page([view], "1.0", NOW)) == (
        "none: failed before the restart; nothing runs until a manual run"
    )
    assert _next_run(render_status_page([_view(next_reconcile=None)], "1.0", NOW)) is None
    waiting = _view(failed, state="waiting", next_run=NOW + 30)
    assert _next_run(render_status_page([waiting], "1.0", NOW)) == "in 30 s"
