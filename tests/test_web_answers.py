"""What every answer of the web layer carries, seen through ASGI with fakes for the ports.

The security headers (the page must not be framed, sniffed or made to run a planted
script), one refusal log line a minute *per kind* (a 404 line must not count 401s), and
a /metrics free of ``_created`` series.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Sequence
from typing import Any, Literal

import pytest
import trio
import trio.testing

from asgi_request import http_scope
from s3syncer.model.answers import Accepted, BadRequest, Refused
from s3syncer.model.command_view import CommandView
from s3syncer.model.config import AuthConfig
from s3syncer.model.event import Event
from s3syncer.obs.metrics import Metrics
from s3syncer.web.app import CONTENT_SECURITY_POLICY, create_app
from s3syncer.web.page import PAGE_SCRIPT_HASH, PAGE_STYLE_HASH

TOKEN = "answers-test-token"


class NoCommands:
    """An inbox that knows no command."""

    def formats(self, name: str) -> frozenset[str] | None:
        return None

    async def accept(
        self,
        name: str,
        events: Sequence[Event],
        reason: Literal["event", "manual"],
        *,
        unmapped: int = 0,
    ) -> Accepted | Refused:
        return Refused("unknown", f"no command {name!r}")

    def refuse(self, name: str, why: BadRequest, detail: str) -> Refused:
        return Refused("unknown", f"no command {name!r}")


class Idle:
    """A ready daemon with no command, whose metrics are a real registry's."""

    ready = True
    shutting_down = False

    def __init__(self) -> None:
        self.metrics = Metrics()
        self.metrics.add_command("push")

    def views(self) -> list[CommandView]:
        return []

    async def views_in_slices(self) -> list[CommandView]:
        return []

    async def metrics_text(self) -> bytes:
        return await self.metrics.render_in_slices()


async def call(
    method: str, path: str, headers: list[tuple[bytes, bytes]] | None = None
) -> tuple[int, dict[str, str], bytes]:
    """One request through the whole ASGI app (with the token unless ``headers`` is given)."""
    app = create_app(NoCommands(), Idle(), AuthConfig(TOKEN))
    return await call_app(app, method, path, headers)


async def call_app(
    app: Any, method: str, path: str, headers: list[tuple[bytes, bytes]] | None = None
) -> tuple[int, dict[str, str], bytes]:
    if headers is None:
        headers = [(b"authorization", b"Bearer " + TOKEN.encode())]
    scope = {
        **http_scope(method, path, [(b"host", b"s3syncer"), *headers]),
        "state": {},
        "extensions": {},
    }
    sent: list[dict[str, Any]] = []
    received = False

    async def receive() -> dict[str, Any]:
        nonlocal received
        if not received:
            received = True
            return {"type": "http.request", "body": b"", "more_body": False}
        await trio.sleep_forever()  # the client waits for its answer, as a server tells it
        raise AssertionError("unreachable")

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await app(scope, receive, send)
    start = next(m for m in sent if m["type"] == "http.response.start")
    answer_headers = {bytes(k).decode().lower(): bytes(v).decode() for k, v in start["headers"]}
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return start["status"], answer_headers, body


ANSWERS: list[tuple[str, str, list[tuple[bytes, bytes]] | None]] = [
    ("GET", "/", None),
    ("GET", "/status", None),
    ("GET", "/health", None),
    ("GET", "/metrics", None),
    ("GET", "/nowhere", None),
    ("POST", "/run/nope", None),
    ("POST", "/trigger/nope", None),
    ("GET", "/", []),  # 401 without the token, answered before Quart
]


@pytest.mark.parametrize(("method", "path", "headers"), ANSWERS)
async def test_every_answer_carries_the_security_headers(
    method: str, path: str, headers: list[tuple[bytes, bytes]] | None
) -> None:
    _status, answer, _body = await call(method, path, headers)
    assert answer.get("x-content-type-options") == "nosniff"
    assert answer.get("x-frame-options") == "DENY"
    assert answer.get("content-security-policy") == CONTENT_SECURITY_POLICY


def test_the_policy_allows_the_pages_own_style_and_script_and_nothing_planted() -> None:
    directives = dict(d.strip().split(" ", 1) for d in CONTENT_SECURITY_POLICY.split(";"))
    assert directives["style-src"] == f"'self' '{PAGE_STYLE_HASH}'"
    assert directives["script-src"] == f"'self' '{PAGE_SCRIPT_HASH}'"
    assert "'unsafe-inline'" not in CONTENT_SECURITY_POLICY
    assert directives["frame-ancestors"] == "'none'"
    assert directives["object-src"] == "'none'"


async def test_metrics_carry_no_created_series() -> None:
    status, _headers, body = await call("GET", "/metrics")
    assert status == 200
    assert b"s3syncer_triggers_total" in body
    assert b"_created" not in body


class FakeMonotonic:
    """time.monotonic for the throttle, moved by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def test_the_refusal_log_counts_each_kind_on_its_own(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    clock = FakeMonotonic()
    monkeypatch.setattr("s3syncer.obs.throttle.time.monotonic", clock)
    app = create_app(NoCommands(), Idle(), AuthConfig(TOKEN))
    caplog.set_level(logging.WARNING, logger="s3syncer.web")
    for _ in range(3):
        assert (await call_app(app, "GET", "/status", []))[0] == 401
    clock.now += 61
    assert (await call_app(app, "POST", "/trigger/nope"))[0] == 404
    assert (await call_app(app, "GET", "/status", []))[0] == 401
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("refused")]
    assert lines == [
        "refused '/status': 401 missing or wrong token",
        "refused '/trigger/nope': 404 no command 'nope'",
        "refused '/status': 401 missing or wrong token (2 more 401 since the last report)",
    ]


class CountedViews(Idle):
    """A daemon whose views take until ``release`` is set, counting how often they are taken."""

    def __init__(self) -> None:
        super().__init__()
        self.taken = 0
        self.release = trio.Event()

    async def views_in_slices(self) -> list[CommandView]:
        self.taken += 1
        await self.release.wait()
        return []


async def test_pollers_that_come_during_a_status_render_share_it() -> None:
    # At 10,000 commands a render is a second of CPU: four pollers must not cost four.
    daemon = CountedViews()
    app = create_app(NoCommands(), daemon, AuthConfig(TOKEN))
    answers: list[tuple[int, dict[str, str], bytes]] = []

    async def poll() -> None:
        answers.append(await call_app(app, "GET", "/status"))

    async with trio.open_nursery() as nursery:
        for _ in range(4):
            nursery.start_soon(poll)
        await trio.testing.wait_all_tasks_blocked()
        daemon.release.set()
    assert daemon.taken == 1
    assert [(status, body) for status, _, body in answers] == [(200, b'{"commands": []}')] * 4
    await poll()  # a poll after it takes views anew
    assert daemon.taken == 2


async def test_a_scrape_reads_each_event_age_at_that_moment() -> None:
    metrics = Metrics()
    ages = {"push": 1.0, "gone": 2.0}
    for name in ("push", "gone"):
        metrics.add_command(name)
        metrics.track_pending_event_age(name, functools.partial(ages.__getitem__, name))
    ages["push"] = 42.0  # it grew since the last event
    metrics.remove_command("gone")
    text = (await metrics.render_in_slices()).decode()
    assert 's3syncer_pending_event_age_seconds{command="push"} 42.0' in text
    assert 'command="gone"' not in text
