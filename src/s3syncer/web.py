"""The HTTP face: the webhook hot path as a plain ASGI callable, the rest on Quart-Trio.

``POST /trigger/{name}`` is what the registry calls for every push, pull and
delete, one request at a time. It is answered by :class:`WebhookApp` before
Quart sees it (measured: a plain ASGI callable answers about 1.4x the rate of
a Quart route here). Everything else, the probes, metrics, status and manual
runs, goes to the Quart-Trio app. Neither waits on a command: a trigger is a
``send_nowait`` into the runner's channel.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import hmac
import json
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import trio
from quart import Response
from quart_trio import QuartTrio

from . import __version__
from .config import AuthConfig
from .events import EnvelopeError, Event, matching
from .formats import UnsupportedContentTypeError, check_content_type, parse_request
from .journal import Journal
from .metrics import CONTENT_TYPE as METRICS_CONTENT_TYPE
from .metrics import Metrics
from .page import render_status_page
from .runner import Runner, RunRecord, Trigger

log = logging.getLogger("s3syncer.web")

MAX_BODY = 1024 * 1024
TRIGGER_PREFIX = "/trigger/"
OPEN_PATHS = frozenset({"/health", "/ready", "/metrics"})
REJECTION_LOG_INTERVAL = 60.0

Scope = Mapping[str, Any]
Message = dict[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


@dataclass
class ServiceState:
    """What the web layer reads about the daemon as a whole."""

    runners: dict[str, Runner] = field(default_factory=dict)
    journals: dict[str, Journal] = field(default_factory=dict)
    ready: bool = False
    shutting_down: bool = False


class _RefusedError(Exception):
    def __init__(self, status: int, reason: str, headers: list[tuple[bytes, bytes]] | None = None):
        super().__init__(reason)
        self.status = status
        self.reason = reason
        self.headers = headers or []


class RejectionLog:
    """Logs refused requests at most once a minute, so a misbehaving client cannot flood it."""

    def __init__(self, interval: float = REJECTION_LOG_INTERVAL) -> None:
        self.interval = interval
        self._last = -float("inf")
        self._suppressed = 0

    def note(self, status: int, reason: str, path: str) -> None:
        """Record one refused request; log it if the last log line is old enough."""
        now = time.monotonic()
        if now - self._last < self.interval:
            self._suppressed += 1
            return
        more = f" ({self._suppressed} more since the last report)" if self._suppressed else ""
        # The path is the client's: repr() keeps a %0A in it from forging a log line.
        log.warning("refused %r: %d %s%s", path, status, reason, more)
        self._last, self._suppressed = now, 0


class WebhookApp:
    """ASGI entry point: answers webhooks itself and hands every other request to ``fallback``."""

    def __init__(
        self,
        state: ServiceState,
        metrics: Metrics,
        auth: AuthConfig | None,
        fallback: ASGIApp,
    ) -> None:
        self.state = state
        self.metrics = metrics
        self.auth = auth
        self.fallback = fallback
        self.rejections = RejectionLog()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Route one ASGI connection."""
        if scope["type"] != "http":
            await self.fallback(scope, receive, send)
            return
        path: str = scope["path"]
        try:
            if path not in OPEN_PATHS:
                check_auth(self.auth, scope)
            if path.startswith(TRIGGER_PREFIX) and scope["method"] == "POST":
                await self._trigger(scope, receive, send, path[len(TRIGGER_PREFIX) :].rstrip("/"))
                return
        except _RefusedError as rejection:
            self.rejections.note(rejection.status, rejection.reason, path)
            await respond(send, rejection.status, rejection.reason + "\n", rejection.headers)
            return
        await self.fallback(scope, receive, send)

    async def _trigger(self, scope: Scope, receive: Receive, send: Send, name: str) -> None:
        runner = self.state.runners.get(name)
        if runner is None:
            raise _RefusedError(404, f"no command named {name!r}")
        if self.state.shutting_down:
            # The runners are stopping and would drop it: let the registry redeliver it to
            # the next instance (it retries every non-2xx answer) instead of losing it.
            self.metrics.rejected(name)
            raise _RefusedError(503, "shutting down, retry", [(b"retry-after", b"1")])
        try:
            headers = request_headers(scope)
            check_content_type(headers)
            body = await read_body(scope, receive)
            notification = parse_request(headers, body, runner.command.formats)
        except UnsupportedContentTypeError as exc:
            self.metrics.rejected(name)
            raise _RefusedError(415, str(exc)) from None
        except EnvelopeError as exc:
            self.metrics.rejected(name)
            raise _RefusedError(400, str(exc)) from None
        except _RefusedError:
            self.metrics.rejected(name)
            raise
        events = notification.events
        accepted = [] if runner.command.disable else matching(runner.command.events, events)
        if accepted:
            await self._deliver(name, runner, accepted)
        ignored = len(events) - len(accepted) + notification.unmapped
        self.metrics.triggered(name, len(accepted), ignored)
        answer = json.dumps({"accepted": len(accepted), "ignored": ignored}).encode()
        await respond(send, 200, answer, content_type=b"application/json")

    async def _deliver(self, name: str, runner: Runner, accepted: list[Event]) -> None:
        journal = self.state.journals.get(name)
        seq = journal.record(accepted) if journal is not None else 0
        try:
            runner.send_channel.send_nowait(Trigger("event", tuple(accepted), seq=seq))
        except trio.WouldBlock:
            # Never wait on the runner; the registry retries a non-2xx, so nothing is lost.
            self.metrics.rejected(name)
            raise _RefusedError(503, "busy, retry", [(b"retry-after", b"1")]) from None
        if journal is None:
            return
        try:
            # 200 means delivered to the registry: only once it is on disk (group commit).
            await journal.flush()
        except OSError as exc:
            self.metrics.rejected(name)
            log.error("%s: cannot record triggers in %s: %s", name, journal.path, exc.strerror)
            raise _RefusedError(
                503, "cannot record it durably, retry", [(b"retry-after", b"5")]
            ) from None


def check_auth(auth: AuthConfig | None, scope: Scope) -> None:
    """Refuse the request unless it carries the token, as Bearer or as a Basic password."""
    if auth is None:
        return
    presented = _presented_token(_header(scope, b"authorization"))
    # Compare in constant time, whatever was presented.
    if not hmac.compare_digest(presented or b"", auth.token.encode()) or presented is None:
        raise _RefusedError(
            401,
            "missing or wrong token",
            [(b"www-authenticate", b'Bearer realm="s3syncer", Basic realm="s3syncer"')],
        )


def _presented_token(header: bytes | None) -> bytes | None:
    if header is None:
        return None
    scheme, _, value = header.strip().partition(b" ")
    scheme = scheme.lower()
    if scheme == b"bearer":
        return value.strip()
    if scheme == b"basic":
        try:
            decoded = base64.b64decode(value.strip(), validate=True)
        except (binascii.Error, ValueError):
            return None
        return decoded.partition(b":")[2]
    return None


def request_headers(scope: Scope) -> dict[str, str]:
    """The headers that say which format a body is: ``content-type`` and ``ce-*``.

    ASGI gives lower-case names; the others are skipped, not decoded, on the hot path.
    """
    return {
        bytes(key).decode("latin-1"): bytes(value).decode("latin-1")
        for key, value in scope["headers"]
        if key == b"content-type" or key[:3] == b"ce-"
    }


async def read_body(scope: Scope, receive: Receive, limit: int = MAX_BODY) -> bytes:
    """The request body, refusing anything over ``limit`` bytes before reading it all."""
    length = _header(scope, b"content-length")
    if length is not None and length.isdigit() and int(length) > limit:
        raise _RefusedError(413, f"body over {limit} bytes")
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise _RefusedError(400, "client went away")
        chunk: bytes = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise _RefusedError(413, f"body over {limit} bytes")
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


def _header(scope: Scope, name: bytes) -> bytes | None:
    for key, value in scope["headers"]:
        if key == name:
            return bytes(value)
    return None


async def respond(
    send: Send,
    status: int,
    body: bytes | str,
    headers: list[tuple[bytes, bytes]] | None = None,
    content_type: bytes = b"text/plain; charset=utf-8",
) -> None:
    """Send a whole response."""
    data = body.encode() if isinstance(body, str) else body
    all_headers = [
        (b"content-type", content_type),
        (b"content-length", str(len(data)).encode()),
        *(headers or []),
    ]
    await send({"type": "http.response.start", "status": status, "headers": all_headers})
    await send({"type": "http.response.body", "body": data})


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
    }


def command_status(runner: Runner) -> dict[str, Any]:
    """The status API's view of one command."""
    return {
        "name": runner.command.name,
        "state": runner.state,
        "pendingTriggers": runner.pending_triggers,
        "currentRun": _current_run(runner.current_run),
        "lastRun": run_status(runner.last_run),
        "nextReconcile": _iso(runner.next_reconcile()),
        "nextSchedule": _iso(runner.next_schedule()),
        "runs": runner.runs,
        "failures": runner.failures,
    }


def create_app(state: ServiceState, metrics: Metrics, auth: AuthConfig | None) -> WebhookApp:
    """The whole ASGI application: the webhook fast path in front of the Quart-Trio app."""
    app = QuartTrio("s3syncer")

    @app.get("/health")
    async def health() -> Response:
        return Response("OK\n", content_type="text/plain")

    @app.get("/ready")
    async def ready() -> Response:
        if state.ready and not state.shutting_down:
            return Response("ready\n", content_type="text/plain")
        why = "shutting down" if state.shutting_down else "starting"
        return Response(f"{why}\n", status=503, content_type="text/plain")

    @app.get("/metrics")
    async def metrics_page() -> Response:
        return Response(metrics.render(), content_type=METRICS_CONTENT_TYPE)

    def status_document() -> dict[str, Any]:
        return {"commands": [command_status(r) for r in state.runners.values()]}

    @app.get("/status")
    async def status() -> Response:
        return Response(json.dumps(status_document()), content_type="application/json")

    @app.get("/")
    async def page() -> Response:
        html = render_status_page(status_document(), __version__, time.time())
        return Response(html, content_type="text/html; charset=utf-8")

    @app.post("/run/<name>")
    async def run(name: str) -> Response:
        runner = state.runners.get(name)
        if runner is None:
            return Response(f"no command named {name!r}\n", status=404, content_type="text/plain")
        if runner.command.disable:
            return Response(f"{name} is disabled\n", status=409, content_type="text/plain")
        if state.shutting_down:
            return Response("shutting down, retry\n", status=503, content_type="text/plain")
        try:
            runner.send_channel.send_nowait(Trigger("manual"))
        except trio.WouldBlock:
            return Response("busy, retry\n", status=503, content_type="text/plain")
        log.info("%s: manual run requested", name, extra={"command": name})
        return Response(json.dumps({"accepted": True}), status=202, content_type="application/json")

    return WebhookApp(state, metrics, auth, app)  # type: ignore[arg-type]
