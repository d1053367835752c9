"""The HTTP server: Hypercorn's HTTP/1.1 protocol behind our own accept loop.

``hypercorn.trio.serve`` accepts every connection the kernel offers, keeps it
as long as the client likes and logs each accept error with a traceback. This
serves the same protocol (Hypercorn's ``TCPServer``) with the rules a webhook
endpoint facing the open network needs:

- at most ``max_connections`` at once: a new one closes the oldest that is not
  being answered, so a flood of idle or stalled sockets cannot shut out the
  registry (and cannot take the descriptors a run needs);
- the deadlines of :mod:`s3syncer.web.connection`, on reading a request, on
  answering it and on each write of the answer;
- accept errors, framework errors and connections closed for a stalled answer
  logged at most once a minute, with a count, and without tracebacks.

It reports the bound URLs through ``task_status`` only once it listens, and
turns a failure to bind into a :class:`BindError` that says where and why.
"""

from __future__ import annotations

import errno
import logging
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import Any

import trio
from hypercorn.config import Config as HypercornConfig
from hypercorn.logging import Logger as HypercornLogger
from hypercorn.trio.lifespan import Lifespan
from hypercorn.trio.tcp_server import TCPServer
from hypercorn.trio.worker_context import WorkerContext
from hypercorn.utils import repr_socket_addr, wrap_app

from ..model.errors import BindError
from ..obs.throttle import KindThrottle, Throttle
from .asgi import ASGIApp
from .connection import (
    ANSWER_TIMEOUT,
    KEEP_ALIVE,
    RAW_TIMEOUT_RESPONSE,
    STATE_KEY,
    Connection,
    ConnectionRules,
    WatchedStream,
)

log = logging.getLogger("s3syncer.server")

HTTP_GRACE = 3.0

# accept(2) says the machine or the process is out of something; wait and retry.
ACCEPT_CAPACITY_ERRNOS = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOMEM, errno.ENOBUFS})
ACCEPT_RETRY = 0.1
REQUEST_TIMEOUT = 10.0
TIMEOUT_ANSWER_GRACE = 1.0  # to write a 408 to a client that stopped mid-headers


@dataclass(frozen=True)
class ServerSettings:
    """How the server treats its clients."""

    bind: str
    max_connections: int
    request_timeout: float = REQUEST_TIMEOUT  # also for each write of an answer to progress
    keep_alive: float = KEEP_ALIVE
    answer_timeout: float = ANSWER_TIMEOUT
    shutdown_grace: float = HTTP_GRACE  # for requests in progress once the listener closes


def bind_address(host: str, port: int) -> str:
    """``HOST:PORT`` as Hypercorn's ``bind`` wants it, brackets around an IPv6 host."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


class QuietHypercornLog(HypercornLogger):
    """Hypercorn's logger, with its errors (one per broken request) throttled."""

    def __init__(self, config: HypercornConfig) -> None:
        super().__init__(config)
        self._throttle = Throttle()

    async def exception(self, message: str, *args: Any, **kwargs: Any) -> None:
        # "Error in ASGI Framework" comes once per request a client breaks on purpose;
        # a traceback each time let one client write 300 KB of log in half a second.
        await self.error(message, *args)

    async def error(self, message: str, *args: Any, **kwargs: Any) -> None:
        if self.error_logger is not None:
            self._throttle.log(self.error_logger, logging.ERROR, message, *args)


class ConnectionTable:
    """The open connections, oldest first, within ``limit``."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._open: dict[Connection, None] = {}  # insertion order: oldest first
        self._changed = trio.Event()

    def __len__(self) -> int:
        return len(self._open)

    def __iter__(self) -> Iterator[Connection]:
        return iter(list(self._open))

    def add(self, connection: Connection) -> None:
        self._open[connection] = None

    def remove(self, connection: Connection) -> None:
        if connection in self._open:
            del self._open[connection]
            self._changed.set()
            self._changed = trio.Event()

    async def make_room(self) -> None:
        """Return once one more connection fits, closing the oldest idle or stalled one."""
        while len(self._open) >= self.limit:
            oldest = next((c for c in self._open if c.evictable), None)
            if oldest is not None:
                self.remove(oldest)
                oldest.evict()
                return
            await self._changed.wait()  # every one is being answered: wait for one to end


async def serve_http(
    app: ASGIApp,
    settings: ServerSettings,
    shutdown_trigger: Callable[[], Awaitable[None]],
    *,
    task_status: trio.TaskStatus[list[str]] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve ``app`` on ``settings.bind`` until ``shutdown_trigger`` returns; ``task_status``
    gets the URLs it listens on. Open connections get ``settings.shutdown_grace`` seconds to
    finish. An address that cannot be bound raises :class:`BindError`."""
    config = _hypercorn_config(settings)
    app_wrapper = wrap_app(ConnectionRules(app), config.wsgi_max_body_size, "asgi")  # type: ignore[arg-type]
    context = WorkerContext(None)
    table = ConnectionTable(settings.max_connections)
    handler = _Handler(settings, table, app_wrapper, config, context)
    lifespan = Lifespan(app_wrapper, config, handler.lifespan_state)
    try:
        sockets = config.create_sockets()
    except OSError as exc:
        raise BindError(exc.errno, f"cannot listen on {settings.bind}: {exc.strerror}") from exc
    accept_errors = Throttle()
    async with trio.open_nursery() as lifespan_nursery:
        await lifespan_nursery.start(lifespan.handle_lifespan)
        await lifespan.wait_for_startup()
        async with trio.open_nursery() as connections:
            listeners = []
            urls = []
            for sock in sockets.insecure_sockets:
                sock.listen(config.backlog)
                listeners.append(trio.SocketListener(trio.socket.from_stdlib_socket(sock)))
                urls.append(f"http://{repr_socket_addr(sock.family, sock.getsockname())}")
            async with trio.open_nursery() as accepting:
                for listener in listeners:
                    accepting.start_soon(
                        _accept_loop, listener, connections, handler, table, accept_errors
                    )
                task_status.started(urls)
                await shutdown_trigger()
                accepting.cancel_scope.cancel()
            for connection in table:
                connection.shut_down(settings.shutdown_grace)
            connections.cancel_scope.deadline = trio.current_time() + settings.shutdown_grace
        await lifespan.wait_for_shutdown()
        lifespan_nursery.cancel_scope.cancel()


def _hypercorn_config(settings: ServerSettings) -> HypercornConfig:
    config = HypercornConfig()
    config.bind = [settings.bind]
    config.accesslog = None
    config.errorlog = logging.getLogger("hypercorn.error")
    config.logger_class = QuietHypercornLog
    config.graceful_timeout = settings.shutdown_grace
    config.include_server_header = False
    # Our deadlines come first; Hypercorn's idle timer is only a backstop.
    config.keep_alive_timeout = settings.keep_alive + settings.request_timeout + 1
    return config


async def _accept_loop(
    listener: trio.SocketListener,
    connections: trio.Nursery,
    handle: Callable[[trio.SocketStream], Awaitable[None]],
    table: ConnectionTable,
    errors: Throttle,
) -> None:
    async with listener:
        while True:
            await table.make_room()
            try:
                stream = await listener.accept()
            except OSError as exc:
                if exc.errno not in ACCEPT_CAPACITY_ERRNOS:
                    raise
                errors.log(log, logging.ERROR, "cannot accept a connection: %s", exc.strerror)
                await trio.sleep(ACCEPT_RETRY)
                continue
            connections.start_soon(handle, stream)


class _Handler:
    """Runs Hypercorn's protocol on one accepted connection, under the connection's rules."""

    def __init__(
        self,
        settings: ServerSettings,
        table: ConnectionTable,
        app: Any,
        config: HypercornConfig,
        context: WorkerContext,
    ) -> None:
        self.settings = settings
        self.table = table
        self.app = app
        self.config = config
        self.context = context
        self.lifespan_state: dict[str, Any] = {}
        self.closed_early = KindThrottle()

    async def __call__(self, stream: trio.SocketStream) -> None:
        connection = Connection(
            stream,
            keep_alive=self.settings.keep_alive,
            request_timeout=self.settings.request_timeout,
            answer_timeout=self.settings.answer_timeout,
        )
        self.table.add(connection)
        try:
            with connection.scope:
                # Hypercorn copies this into every request's scope["state"].
                state = {**self.lifespan_state, STATE_KEY: connection}
                protocol = TCPServer(
                    self.app,
                    self.config,
                    self.context,
                    state,
                    WatchedStream(connection),  # type: ignore[arg-type]
                )
                await protocol.run()
            if connection.timed_out_in_headers:
                with trio.move_on_after(TIMEOUT_ANSWER_GRACE):
                    await stream.send_all(RAW_TIMEOUT_RESPONSE)
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
            pass  # the client is gone: nothing to tell it
        finally:
            self.table.remove(connection)
            await trio.aclose_forcefully(stream)
            self._log_closed_early(connection)

    def _log_closed_early(self, connection: Connection) -> None:
        # A client hanging up mid-answer is ordinary; one that stops reading, or an answer
        # that overruns, is worth a line: once a minute whatever the number of clients.
        if connection.broken == "stalled":
            self.closed_early.log(
                "stalled",
                log,
                logging.WARNING,
                "closed a connection that stopped reading its answer for %gs",
                self.settings.request_timeout,
            )
        elif connection.answer_timed_out:
            self.closed_early.log(
                "answer",
                log,
                logging.WARNING,
                "closed a connection whose answer took over %gs",
                self.settings.answer_timeout,
            )
