"""The HTTP server: Hypercorn's trio worker serving the ASGI app on one address.

It reports the bound URLs through ``task_status`` only once it listens, and
turns a failure to bind into a :class:`BindError` that says where and why.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

import trio
from hypercorn.config import Config as HypercornConfig
from hypercorn.trio import serve as hypercorn_serve

from .web import WebhookApp

HTTP_GRACE = 3.0


class StartupError(OSError):
    """Something the daemon needs at start is not there; ``strerror`` says what."""


class BindError(StartupError):
    """The listen address cannot be bound (taken, not ours, no such interface)."""


def leaf_errors(exc: BaseException) -> list[BaseException]:
    """The exceptions inside ``exc``, however deeply exception groups nest them."""
    if isinstance(exc, BaseExceptionGroup):
        return [leaf for inner in exc.exceptions for leaf in leaf_errors(inner)]
    return [exc]


class _StartedFlag:
    """Forwards ``started()`` and remembers that it was called."""

    def __init__(self, task_status: trio.TaskStatus[list[str]]) -> None:
        self.task_status = task_status
        self.called = False

    def started(self, value: list[str]) -> None:
        self.called = True
        self.task_status.started(value)


def bind_address(host: str, port: int) -> str:
    """``HOST:PORT`` as Hypercorn's ``bind`` wants it, brackets around an IPv6 host."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


async def serve_http(
    app: WebhookApp,
    bind: str,
    shutdown_trigger: Callable[[], Awaitable[None]],
    *,
    task_status: trio.TaskStatus[list[str]] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve ``app`` on ``bind`` until ``shutdown_trigger`` returns; ``task_status`` gets the
    URLs it listens on. Open connections get ``HTTP_GRACE`` seconds to finish."""
    hypercorn = HypercornConfig()
    hypercorn.bind = [bind]
    hypercorn.accesslog = None
    hypercorn.errorlog = logging.getLogger("hypercorn.error")
    hypercorn.graceful_timeout = HTTP_GRACE
    hypercorn.include_server_header = False
    started = _StartedFlag(task_status)
    try:
        await hypercorn_serve(
            app,  # type: ignore[arg-type]
            hypercorn,
            shutdown_trigger=shutdown_trigger,
            task_status=started,  # type: ignore[arg-type]
        )
    except BaseException as exc:
        failed = [e for e in leaf_errors(exc) if isinstance(e, OSError)]
        if started.called or not failed:
            raise
        # Hypercorn binds inside its own nursery: the OSError comes wrapped in a group.
        raise BindError(failed[0].errno, f"cannot listen on {bind}: {failed[0].strerror}") from exc
