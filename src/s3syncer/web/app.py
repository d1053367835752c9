"""The HTTP face: the webhook hot path as a plain ASGI callable, the rest on Quart-Trio.

``POST /trigger/{name}`` is what the registry calls for every push, pull and delete; it
is answered by :class:`~s3syncer.web.webhook.WebhookApp` before Quart sees it. Everything
else, the probes, metrics, status, the page and manual runs, goes to the Quart-Trio app.
This layer parses requests and renders answers; the inbox it is handed
(:class:`~s3syncer.web.ports.Inbox`) owns the rules, the journal and the runners'
channels, and never waits on a command.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Awaitable, Callable

import trio
from quart import Response
from quart_trio import QuartTrio

from .. import __version__
from ..model.answers import Refused
from ..model.command_view import CommandView
from ..model.config import AuthConfig
from ..obs.metrics import CONTENT_TYPE as METRICS_CONTENT_TYPE
from .page import PAGE_SCRIPT_HASH, PAGE_STYLE_HASH, render_status_page
from .ports import Daemon, Inbox
from .status import command_status
from .webhook import WebhookApp, refused

log = logging.getLogger("s3syncer.web")

# The page's one inline script and one inline style sheet are allowed by their hashes, and
# no other inline code: an injected <script> or style attribute does not run.
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; "
    f"style-src 'self' '{PAGE_STYLE_HASH}'; "
    f"script-src 'self' '{PAGE_SCRIPT_HASH}'; "
    "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
"""The one Content-Security-Policy of every answer."""

SECURITY_HEADERS = (
    (b"content-security-policy", CONTENT_SECURITY_POLICY.encode()),
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
)
"""On every answer, the webhook's and Quart's: no framing, no sniffing, no planted script."""


class SharedRender:
    """One render at a time: requests that come while one is under way share its result.

    At 10,000 commands a render costs a second of CPU; four pollers, or a flood of
    unauthenticated scrapes, must cost one render, not one each.
    """

    def __init__(self, render: Callable[[], Awaitable[bytes]]) -> None:
        self._render = render
        self._under_way: trio.Event | None = None
        self._result: bytes | None = None

    async def __call__(self) -> bytes:
        """The result of the render under way when called, or of a new one."""
        while self._under_way is not None:
            under_way = self._under_way
            await under_way.wait()
            if self._result is not None and self._under_way is None:
                return self._result
        self._under_way = trio.Event()
        self._result = None
        try:
            self._result = await self._render()
            return self._result
        finally:
            self._under_way.set()
            self._under_way = None


def status_json(views: list[CommandView]) -> bytes:
    """The ``/status`` document as JSON, one small ``dumps`` a command, so a worker thread
    making it hands the interpreter back to the event loop between them."""
    commands = ", ".join(json.dumps(command_status(view)) for view in views)
    return ('{"commands": [' + commands + "]}").encode()


def create_app(inbox: Inbox, daemon: Daemon, auth: AuthConfig | None) -> WebhookApp:
    """The whole ASGI application: the webhook fast path in front of the Quart-Trio app."""
    app = QuartTrio("s3syncer")

    @app.after_request
    async def secure(response: Response) -> Response:
        for name, value in SECURITY_HEADERS:
            response.headers[name.decode()] = value.decode()
        return response

    @app.get("/health")
    async def health() -> Response:
        return Response("OK\n", content_type="text/plain")

    @app.get("/ready")
    async def ready() -> Response:
        if daemon.ready and not daemon.shutting_down:
            return Response("ready\n", content_type="text/plain")
        why = "shutting down" if daemon.shutting_down else "starting"
        return Response(f"{why}\n", status=503, content_type="text/plain")

    metrics_text = SharedRender(daemon.metrics_text)

    # Views are taken on the loop and only read in the thread; the one part still live, a
    # running command's output tail, is copied by a single bytes() call under the GIL.
    async def render_status() -> bytes:
        return await trio.to_thread.run_sync(status_json, await daemon.views_in_slices())

    async def render_page() -> bytes:
        views = await daemon.views_in_slices()
        html = await trio.to_thread.run_sync(render_status_page, views, __version__, time.time())
        return html.encode()

    status_text, page_text = SharedRender(render_status), SharedRender(render_page)

    @app.get("/metrics")
    async def metrics_page() -> Response:
        return Response(await metrics_text(), content_type=METRICS_CONTENT_TYPE)

    @app.get("/status")
    async def status() -> Response:
        return Response(await status_text(), content_type="application/json")

    @app.get("/")
    async def page() -> Response:
        return Response(await page_text(), content_type="text/html; charset=utf-8")

    @app.post("/run/<name>")
    async def run(name: str) -> Response:
        answer = await inbox.accept(name, (), "manual")
        if isinstance(answer, Refused):
            refusal = refused(answer)
            return Response(
                refusal.reason + "\n",
                status=refusal.status,
                headers={k.decode(): v.decode() for k, v in refusal.headers},
                content_type="text/plain",
            )
        return Response(json.dumps({"accepted": True}), status=202, content_type="application/json")

    return WebhookApp(inbox, auth, app, SECURITY_HEADERS)  # type: ignore[arg-type]
