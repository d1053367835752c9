"""Serve an ASGI app on Hypercorn's trio worker, for the comparisons.

The Hypercorn settings match those ``s3syncer.server.serve_http`` gives Hypercorn
(no access log, no server header, the same graceful timeout). s3syncer itself
runs Hypercorn's protocol behind its own accept loop and connection rules
(``s3syncer.server``, ``s3syncer.connection``), so its figures include those too.
"""

from __future__ import annotations

import logging
import sys
from typing import Any

import trio
from hypercorn.config import Config
from hypercorn.trio import serve


def serve_app(app: Any, bind: str = "127.0.0.1:0") -> None:
    """Serve ``app`` on ``bind`` until killed; log ``listening on http://HOST:PORT`` on stderr."""
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr, format="%(message)s")
    config = Config()
    config.bind = [bind]
    config.accesslog = None
    config.errorlog = logging.getLogger("hypercorn.error")
    config.graceful_timeout = 5.0
    config.include_server_header = False

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            binds: list[str] = await nursery.start(_serve, app, config)
            for url in binds:
                print(f"listening on {url}", file=sys.stderr, flush=True)

    trio.run(main)


async def _serve(app: Any, config: Config, *, task_status: trio.TaskStatus[list[str]]) -> None:
    await serve(app, config, task_status=task_status)
