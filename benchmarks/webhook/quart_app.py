"""A minimal Quart-Trio route answering what the baseline answers, to show what Quart costs.

s3syncer answers ``POST /trigger/{name}`` with a plain ASGI callable in front
of its Quart-Trio app; this app is what the route would cost on Quart itself.
Run it with ``python -m benchmarks.webhook.quart_app [HOST:PORT]``.
"""

from __future__ import annotations

import sys

from quart import Response
from quart_trio import QuartTrio

from benchmarks.webhook.baseline_app import BODY

app = QuartTrio("quart-baseline")


@app.post("/trigger/<name>")
async def trigger(name: str) -> Response:
    """Answer 200 and the same tiny body as the baseline."""
    return Response(BODY, content_type="application/json")


if __name__ == "__main__":
    from benchmarks.webhook.serving import serve_app

    serve_app(app, *sys.argv[1:2])
