"""The daemon: one root nursery holding the HTTP server and one nursery per command.

The runners belong to our nursery, not to the web app's, so an error in a
runner ends the daemon loudly instead of vanishing. Shutdown is graceful:
``/ready`` turns 503, the server stops accepting and finishes what it has,
pending delays are dropped, and a running command gets ``shutdownGrace``
seconds before its process group is terminated.
"""

from __future__ import annotations

import logging
import signal
from dataclasses import dataclass

import trio
from hypercorn.config import Config as HypercornConfig
from hypercorn.trio import serve as hypercorn_serve

from .config import DEFAULT_LISTEN, Config, parse_listen
from .metrics import Metrics
from .process import ProcessLauncher
from .runner import Launch, Runner
from .web import ServiceState, create_app

log = logging.getLogger("s3syncer")

HTTP_GRACE = 3.0


class BindError(OSError):
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


def _bind(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


@dataclass
class Service:
    """Everything one ``s3syncer serve`` runs."""

    config: Config
    listen: str = DEFAULT_LISTEN
    launch: Launch | None = None

    def __post_init__(self) -> None:
        self.metrics = Metrics()
        self.state = ServiceState()
        self._stop_http = trio.Event()
        self._http_done = trio.Event()
        self._shutdown = trio.Event()
        self._command_scopes: dict[str, trio.CancelScope] = {}

    def request_shutdown(self) -> None:
        """Begin a graceful shutdown (what SIGTERM and SIGINT do)."""
        self.state.shutting_down = True
        self._shutdown.set()

    async def run(
        self, *, task_status: trio.TaskStatus[list[str]] = trio.TASK_STATUS_IGNORED
    ) -> None:
        """Serve until ``request_shutdown()``; ``task_status`` gets the bound URLs."""
        host, port = parse_listen(self.listen)
        launch = self.launch or ProcessLauncher()
        async with trio.open_nursery() as root:
            for command in self.config.commands:
                runner = Runner(command, launch, metrics=self.metrics)
                self.metrics.add_command(command.name)
                self._command_scopes[command.name] = await root.start(self._supervise, runner)
                self.state.runners[command.name] = runner
            binds: list[str] = await root.start(self._serve_http, _bind(host, port))
            self.state.ready = True
            for url in binds:
                log.info("listening on %s", url)
            task_status.started(binds)
            await self._shutdown.wait()
            await self._shut_down()
            root.cancel_scope.cancel()

    async def _supervise(
        self, runner: Runner, *, task_status: trio.TaskStatus[trio.CancelScope]
    ) -> None:
        with trio.CancelScope() as scope:
            async with trio.open_nursery() as nursery:
                await nursery.start(runner.run)
                task_status.started(scope)

    async def _serve_http(self, bind: str, *, task_status: trio.TaskStatus[list[str]]) -> None:
        hypercorn = HypercornConfig()
        hypercorn.bind = [bind]
        hypercorn.accesslog = None
        hypercorn.errorlog = logging.getLogger("hypercorn.error")
        hypercorn.graceful_timeout = HTTP_GRACE
        hypercorn.include_server_header = False
        app = create_app(self.state, self.metrics, self.config.auth)
        started = _StartedFlag(task_status)
        try:
            await hypercorn_serve(
                app,  # type: ignore[arg-type]
                hypercorn,
                shutdown_trigger=self._stop_http.wait,
                task_status=started,  # type: ignore[arg-type]
            )
        except BaseException as exc:
            failed = [e for e in leaf_errors(exc) if isinstance(e, OSError)]
            if started.called or not failed:
                raise
            # Hypercorn binds inside its own nursery: the OSError comes wrapped in a group.
            raise BindError(
                failed[0].errno, f"cannot listen on {bind}: {failed[0].strerror}"
            ) from exc
        finally:
            self._http_done.set()

    async def _shut_down(self) -> None:
        grace = self.config.shutdown_grace
        running = [r for r in self.state.runners.values() if r.state == "running"]
        log.info(
            "shutting down: %d command(s) running, waiting up to %gs for them", len(running), grace
        )
        self._stop_http.set()
        for runner in self.state.runners.values():
            runner.stop()
        with trio.move_on_after(grace) as waiting:
            for runner in self.state.runners.values():
                await runner.stopped.wait()
        if waiting.cancelled_caught:
            late = [name for name, r in self.state.runners.items() if not r.stopped.is_set()]
            log.warning("shutdown grace of %gs is over; terminating %s", grace, ", ".join(late))
            for name in late:
                self._command_scopes[name].cancel()
            for name in late:
                await self.state.runners[name].stopped.wait()
        with trio.move_on_after(HTTP_GRACE):
            await self._http_done.wait()
        log.info("shut down cleanly")


class EarlySignals:
    """Remembers SIGTERM/SIGINT that arrive before the event loop listens for them."""

    def __init__(self) -> None:
        self.received: list[int] = []

    def install(self) -> None:
        """Catch SIGTERM and SIGINT from now on, instead of dying mid-start."""
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, self._note)

    def _note(self, signum: int, _frame: object) -> None:
        self.received.append(signum)


async def watch_signals(
    service: Service,
    early: EarlySignals | None = None,
    *,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    """SIGTERM/SIGINT: graceful shutdown; a second one: stop at once. SIGHUP: reload."""
    with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT, signal.SIGHUP) as signals:
        task_status.started()
        if early is not None and early.received:
            log.info("%s received while starting", signal.Signals(early.received[0]).name)
            service.request_shutdown()
        async for signum in signals:
            name = signal.Signals(signum).name
            if signum == signal.SIGHUP:
                log.warning("%s: reloading the configuration is not supported yet", name)
            elif service.state.shutting_down:
                log.warning("%s again: stopping now", name)
                raise KeyboardInterrupt
            else:
                log.info("%s received", name)
                service.request_shutdown()
