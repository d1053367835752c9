"""The runner's core without trio: spec section 3 as plain functions of time.

Times here are bare numbers, the monotonic clock the runner passes in;
tests/test_runner.py checks that the trio loop keeps to them.
"""

from __future__ import annotations

import math

import pytest

from s3syncer.engine.coalesce import Coalescer, Retrying
from s3syncer.model.config import Retry
from s3syncer.model.event import Event
from s3syncer.model.run import RunRequest, Trigger
from test_runner import command, event


def triggered(*events: Event, seq: int = 0) -> Trigger:
    """A webhook trigger carrying ``events``, recorded in journal batch ``seq``."""
    return Trigger("event", tuple(events), seq=seq)


def ids(request: RunRequest | None) -> list[str | None]:
    """The event ids a run covers, in order."""
    assert request is not None
    return [e.id for e in request.events]


def test_nothing_pending_is_never_due() -> None:
    core = Coalescer(command())
    assert core.due() == math.inf
    assert core.take() is None
    assert (core.pending_triggers, core.pending_reason) == (0, None)


def test_each_trigger_restarts_the_quiet_period() -> None:
    core = Coalescer(command(delay=3.0))
    core.add(triggered(event("a")), now=10.0)
    assert core.due() == 13.0
    core.add(triggered(event("b")), now=12.0)
    assert core.due() == 15.0
    assert (core.pending_triggers, core.pending_reason) == (2, "event")


def test_max_delay_caps_the_wait_from_the_first_pending_trigger() -> None:
    core = Coalescer(command(delay=2.0, max_delay=10.0))
    for second in range(20):
        core.add(triggered(), now=float(second))
    assert core.due() == 10.0


def test_an_immediate_trigger_is_due_at_once_and_names_the_run() -> None:
    core = Coalescer(command(delay=30.0))
    core.add(triggered(event("a")), now=0.0)
    core.add(Trigger("schedule", immediate=True), now=5.0)
    core.add(triggered(event("b")), now=6.0)  # rides along; no quiet period can delay it
    assert core.due() == 5.0
    request = core.take()
    assert request is not None
    assert (request.reason, request.triggers) == ("schedule", 3)
    assert ids(request) == ["a", "b"]


def test_take_starts_the_run_with_all_it_covers_and_leaves_nothing_pending() -> None:
    core = Coalescer(command())
    core.add(triggered(event("a"), seq=1), now=0.0)
    core.add(triggered(event("b"), event("a"), seq=2), now=1.0)  # "a" resent
    first = core.take()
    assert first is not None
    assert (first.run_id, first.reason, first.triggers, first.seq) == (1, "event", 2, 2)
    assert ids(first) == ["a", "b"]
    assert (core.due(), core.pending_triggers) == (math.inf, 0)
    core.add(triggered(event("c")), now=2.0)
    second = core.take()
    assert second is not None and second.run_id == 2
    assert ids(second) == ["c"]


def test_a_truncated_trigger_marks_the_run_truncated() -> None:
    core = Coalescer(command())
    core.add(Trigger("recovered", (event("a"),), immediate=True, truncated=True), now=0.0)
    core.add(triggered(event("b")), now=1.0)
    request = core.take()
    assert request is not None
    assert request.events.truncated
    assert request.reason == "recovered"


def test_a_failure_is_retried_after_a_backoff_that_doubles() -> None:
    core = Coalescer(command(retry=Retry(attempts=3, backoff=10.0)))
    core.add(triggered(event("a")), now=0.0)
    waits = []
    now = 0.0
    for _ in range(4):
        request = core.take()
        assert request is not None
        now += 1.0  # the run took a second
        retrying = core.finish(request, ok=False, now=now)
        if retrying is None:
            break
        waits.append(retrying)
        assert core.pending_reason == "retry"
        assert core.due() == now + retrying.wait
        now = core.due()
    assert waits == [Retrying(1, 3, 10.0), Retrying(2, 3, 20.0), Retrying(3, 3, 40.0)]
    assert core.due() == math.inf, "after the last attempt nothing runs until the next trigger"


def test_triggers_during_a_backoff_ride_along_without_moving_the_retry() -> None:
    core = Coalescer(command(delay=3.0, retry=Retry(attempts=1, backoff=30.0)))
    core.add(triggered(event("a")), now=0.0)
    failed = core.take()
    assert failed is not None
    core.finish(failed, ok=False, now=4.0)
    core.add(triggered(event("b")), now=10.0)
    core.add(triggered(event("c")), now=33.0)
    assert core.due() == 34.0
    retry = core.take()
    assert retry is not None and retry.reason == "retry"
    assert ids(retry) == ["a", "b", "c"]
    assert retry.triggers == 2


def test_a_failure_past_its_retries_carries_its_events_into_the_next_run() -> None:
    core = Coalescer(command())  # no retry
    core.add(triggered(event("a"), seq=1), now=0.0)
    failed = core.take()
    assert failed is not None
    assert core.finish(failed, ok=False, now=5.0) is None
    assert core.due() == math.inf
    core.add(triggered(event("b"), seq=2), now=100.0)
    following = core.take()
    assert following is not None
    assert ids(following) == ["a", "b"]
    assert following.seq == 2


def test_events_that_arrive_during_a_failed_run_come_after_its_own() -> None:
    core = Coalescer(command())
    core.add(triggered(event("a"), seq=1), now=0.0)
    failed = core.take()
    assert failed is not None
    core.add(triggered(event("b"), event("a"), seq=2), now=5.0)  # during the run
    core.finish(failed, ok=False, now=6.0)
    following = core.take()
    assert following is not None
    assert ids(following) == ["a", "b"]
    assert (following.seq, following.triggers) == (2, 1)


def test_a_success_resets_the_attempts() -> None:
    core = Coalescer(command(retry=Retry(attempts=1, backoff=10.0)))
    outcomes = []
    for ok in (False, True, False, False):
        core.add(triggered(), now=0.0)
        request = core.take()
        assert request is not None
        outcomes.append(core.finish(request, ok=ok, now=1.0))
    assert outcomes == [Retrying(1, 1, 10.0), None, Retrying(1, 1, 10.0), None]


def test_a_run_failing_while_stopping_is_not_retried_but_keeps_its_events() -> None:
    core = Coalescer(command(retry=Retry(attempts=3, backoff=10.0)))
    core.add(triggered(event("a")), now=0.0)
    request = core.take()
    assert request is not None
    assert core.finish(request, ok=False, now=1.0, may_retry=False) is None
    core.add(triggered(), now=2.0)
    assert ids(core.take()) == ["a"]


def test_a_success_drops_what_it_covered() -> None:
    core = Coalescer(command())
    core.add(triggered(event("a")), now=0.0)
    request = core.take()
    assert request is not None
    core.finish(request, ok=True, now=1.0)
    core.add(triggered(event("b")), now=2.0)
    assert ids(core.take()) == ["b"]


@pytest.mark.parametrize(
    ("delay", "max_delay", "due"),
    [(2.0, 60.0, 12.0), (30.0, 60.0, 40.0), (30.0, 15.0, 15.0)],
)
def test_update_applies_the_new_delay_and_max_delay_to_what_is_pending(
    delay: float, max_delay: float, due: float
) -> None:
    core = Coalescer(command(delay=3.0, max_delay=60.0))
    core.add(triggered(event("a")), now=0.0)
    core.add(triggered(event("b")), now=10.0)
    core.update(command(delay=delay, max_delay=max_delay))
    assert core.due() == due
    assert ids(core.take()) == ["a", "b"]
