"""The HTTP face: the webhook hot path as a plain ASGI callable, the rest on Quart-Trio.

``POST /trigger/{name}`` is what the registry calls for every push, pull and
delete, one request at a time. It is answered by :class:`WebhookApp` before
Quart sees it (measured: a plain ASGI callable answers about 1.4x the rate of
a Quart route here). Everything else, the probes, metrics, status and manual
runs, goes to the Quart-Trio app. This layer only parses requests and maps the
service's answer (:class:`~s3syncer.admission.Accepted` or
:class:`~s3syncer.admission.Refused`) to HTTP: :meth:`Service.accept`
(:class:`~s3syncer.admission.Admission`) owns the rules, the journal and the
runners' channels, and never waits on a command.
"""

from __future__ import annotations

import json
import logging
import time
from typing import TYPE_CHECKING

from quart import Response
from quart_trio import QuartTrio

from .. import __version__
from ..model.answers import Refused
from ..obs.metrics import CONTENT_TYPE as METRICS_CONTENT_TYPE
from .page import render_status_page
from .webhook import WebhookApp, _refused

if TYPE_CHECKING:
    from ..daemon.service import Service

log = logging.getLogger("s3syncer.web")


def create_app(service: Service) -> WebhookApp:
    """The whole ASGI application: the webhook fast path in front of the Quart-Trio app."""
    app = QuartTrio("s3syncer")

    @app.get("/health")
    async def health() -> Response:
        return Response("OK\n", content_type="text/plain")

    @app.get("/ready")
    async def ready() -> Response:
        if service.ready and not service.shutting_down:
            return Response("ready\n", content_type="text/plain")
        why = "shutting down" if service.shutting_down else "starting"
        return Response(f"{why}\n", status=503, content_type="text/plain")

    @app.get("/metrics")
    async def metrics_page() -> Response:
        return Response(service.metrics.render(), content_type=METRICS_CONTENT_TYPE)

    @app.get("/status")
    async def status() -> Response:
        return Response(json.dumps(service.status()), content_type="application/json")

    @app.get("/")
    async def page() -> Response:
        html = render_status_page(service.status(), __version__, time.time())
        return Response(html, content_type="text/html; charset=utf-8")

    @app.post("/run/<name>")
    async def run(name: str) -> Response:
        answer = await service.accept(name, (), "manual")
        if isinstance(answer, Refused):
            refused = _refused(answer)
            return Response(
                refused.reason + "\n",
                status=refused.status,
                headers={k.decode(): v.decode() for k, v in refused.headers},
                content_type="text/plain",
            )
        return Response(json.dumps({"accepted": True}), status=202, content_type="application/json")

    return WebhookApp(service, service.config.auth, app)  # type: ignore[arg-type]
