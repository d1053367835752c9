"""The daemon: one root nursery holding the HTTP server, the supervisor and the reloader.

The runners belong to the supervisor's nursery under ours, not to the web app's, so an
error in a runner ends the daemon loudly instead of vanishing. Shutdown is graceful:
``/ready`` turns 503 (and webhooks and manual runs 503 with ``Retry-After``) while
``/health`` stays 200, pending delays are dropped, a running command gets
``shutdownGrace`` seconds before its process group is terminated, and only then does the
server stop accepting.

:class:`Service` owns that order and is handed its parts; :func:`build_service` makes the
real ones. Taking requests in is :class:`~s3syncer.daemon.admission.Admission`'s job, and
starting, changing and stopping the commands' runners is
:class:`~s3syncer.daemon.supervision.Supervisor`'s.
"""

from __future__ import annotations

import errno
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import replace
from functools import partial
from pathlib import Path
from typing import Protocol

import trio
import trio.lowlevel

from ..durable.atomic_file import FILE_DISK, Disk, remove_stale_temporaries
from ..engine.ports import Launch
from ..engine.view import command_view
from ..exec import fd_budget
from ..exec.process import KILL_GRACE, ProcessLauncher
from ..exec.run_directory import DirectoryInUseError, RunDirectory, default_location
from ..model.command_view import CommandView
from ..model.config import DEFAULT_LISTEN, Config, parse_listen
from ..model.errors import StateDirError
from ..obs.metrics import Metrics
from ..web.app import create_app
from ..web.asgi import ASGIApp
from ..web.server import HTTP_GRACE, ServerSettings, bind_address, serve_http
from .admission import Admission
from .reload import CONFIG_POLL, Reloader
from .supervision import Supervisor

log = logging.getLogger("s3syncer")

VIEW_SLICE = 250  # commands viewed between two checkpoints (a few ms of the loop)


class Serve(Protocol):
    """Serves an ASGI app until ``shutdown_trigger`` returns: :func:`serve_http`, or a fake."""

    async def __call__(
        self,
        app: ASGIApp,
        settings: ServerSettings,
        shutdown_trigger: Callable[[], Awaitable[None]],
        *,
        task_status: trio.TaskStatus[list[str]] = ...,
    ) -> None:
        """Serve; ``task_status`` gets the URLs it listens on."""


class Service:
    """Everything one ``s3syncer serve`` runs, in the order a start and a shutdown need.

    Its parts come in made: :func:`build_service` makes the real ones, tests pass fakes for
    the launcher, the disk and the server.
    """

    def __init__(
        self,
        config: Config,
        *,
        listen: str,
        metrics: Metrics,
        supervisor: Supervisor,
        admission: Admission,
        serve: Serve,
        reloader: Reloader | None = None,
        processes: ProcessLauncher | None = None,
        listen_override: str | None = None,
    ) -> None:
        self.config = config
        self.listen = listen
        self.metrics = metrics
        self.supervisor = supervisor
        self.admission = admission
        self._serve = serve
        self._reloader = reloader
        self._processes = processes  # the real launcher, whose files we keep; None when faked
        self._listen_override = (
            listen_override  # --listen or S3SYNCER_LISTEN: the file's has no say
        )
        self._started = False
        self._shutdown = trio.Event()
        self.app = create_app(admission, self, config.auth)

    # --- what the web layer reads (web.ports.Daemon) --------------------------------

    @property
    def ready(self) -> bool:
        """Every runner is up and no shutdown has begun."""
        return self._started and not self.shutting_down

    @property
    def shutting_down(self) -> bool:
        """Whether a shutdown has begun: from then on every run is refused with a retry."""
        return self.admission.closed

    def views(self) -> list[CommandView]:
        """Each running command as ``/status`` shows it."""
        now, wall_now = trio.current_time(), time.time()
        return [command_view(slot.runner, now, wall_now) for slot in self.supervisor.slots.values()]

    async def views_in_slices(self) -> list[CommandView]:
        """:meth:`views`, with a checkpoint every ``VIEW_SLICE`` commands."""
        now, wall_now = trio.current_time(), time.time()
        views = []
        for index, slot in enumerate(list(self.supervisor.slots.values())):
            views.append(command_view(slot.runner, now, wall_now))
            if index % VIEW_SLICE == VIEW_SLICE - 1:
                await trio.lowlevel.checkpoint()  # 10,000 commands: let the triggers through
        return views

    async def metrics_text(self) -> bytes:
        """The Prometheus text exposition, rendered a slice of commands at a time."""
        return await self.metrics.render_in_slices()

    # --- signals ---------------------------------------------------------------------

    def request_shutdown(self) -> None:
        """Begin a graceful shutdown (what SIGTERM and SIGINT do)."""
        self.admission.close()
        self._shutdown.set()

    def request_reload(self) -> None:
        """Read the config file again soon (what SIGHUP does); folds into a pending reload."""
        if self._reloader is not None and not self.shutting_down:
            self._reloader.request()

    # --- running -----------------------------------------------------------------------

    async def run(
        self, *, task_status: trio.TaskStatus[list[str]] = trio.TASK_STATUS_IGNORED
    ) -> None:
        """Serve until ``request_shutdown()``; ``task_status`` gets the bound URLs."""
        host, port = parse_listen(self.listen)
        async with trio.open_nursery() as root:
            run_directory = await self._claim_run_directory()
            _remove_stale_temporaries(self.config)
            await root.start(self.supervisor.run)
            for command in self.config.commands:
                await self.supervisor.start(command)
            _warn_about_orphan_state(self.config)
            stop_http = trio.Event()
            async with trio.open_nursery() as http:
                binds = await http.start(self._serve_http, bind_address(host, port), stop_http)
                self._started = True
                for url in binds:
                    log.info("listening on %s", url)
                reload_scope = trio.CancelScope()
                if self._reloader is not None:
                    reload_scope = await root.start(self._reloader.run, self._apply)
                task_status.started(binds)
                await self._shutdown.wait()
                await self._shut_down(reload_scope, stop_http)
            log.info("shut down cleanly")
            if run_directory is not None:
                run_directory.release()
            root.cancel_scope.cancel()

    async def _claim_run_directory(self) -> RunDirectory | None:
        if self._processes is None:
            return None  # an injected launcher keeps its own files
        state_dir = self.config.state_dir
        config_path = None if self._reloader is None else self._reloader.path
        directory = RunDirectory(default_location(state_dir, config_path))
        try:
            await trio.to_thread.run_sync(partial(directory.claim, exclusive=bool(state_dir)))
        except DirectoryInUseError:
            # Before any journal is read or a run started: a second daemon would rewrite the
            # first one's journals and run every command a second time, runOnStart at once.
            raise StateDirError(
                errno.EBUSY,
                f"stateDir {state_dir} is in use by another s3syncer (its "
                f"{directory.location.path} is locked): two daemons on one stateDir would "
                "overwrite each other's journals and run each command twice",
            ) from None
        await directory.clear(KILL_GRACE)
        self._processes.run_directory = directory  # made again if it goes away
        return directory  # its lock lasts as long as we do

    async def _apply(self, new: Config) -> None:
        """Make the daemon match ``new``; the reloader calls this, one at a time."""
        old = self.config
        listen = self._listen_override or new.listen or DEFAULT_LISTEN
        for key, before, after in (
            ("listen", parse_listen(self.listen), parse_listen(listen)),
            ("auth", old.auth, new.auth),
            ("stateDir", old.state_dir, new.state_dir),
            ("requestTimeout", old.request_timeout, new.request_timeout),
        ):
            if before != after:
                log.warning("reload: %s changed; that takes a restart to apply", key)
        self.config = replace(
            new,
            listen=old.listen,
            auth=old.auth,
            state_dir=old.state_dir,
            request_timeout=old.request_timeout,
        )
        changes = await self.supervisor.apply(new.commands)
        path = None if self._reloader is None else self._reloader.path
        if not any(changes):
            log.info("reload: no command changed in %s", path)
            return
        log.info(
            "reloaded %s: %d added, %d changed, %d removed",
            path,
            *(changes.added, changes.changed, changes.removed),
        )

    async def _serve_http(
        self, bind: str, stop: trio.Event, *, task_status: trio.TaskStatus[list[str]]
    ) -> None:
        limit = fd_budget.open_files_limit()
        settings = ServerSettings(
            bind=bind,
            max_connections=fd_budget.connection_budget(limit, len(self.config.commands)),
            request_timeout=self.config.request_timeout,
            shutdown_grace=HTTP_GRACE,
        )
        if settings.max_connections < fd_budget.MAX_CONNECTIONS:
            log.info(
                "open files limit %d: at most %d connections at once",
                limit,
                settings.max_connections,
            )
        await self._serve(self.app, settings, stop.wait, task_status=task_status)

    async def _shut_down(self, reload_scope: trio.CancelScope, stop_http: trio.Event) -> None:
        grace = self.config.shutdown_grace
        if self._reloader is not None:
            # A reload must not start a runner behind our back: end it, and wait until it has.
            reload_scope.cancel()
            await self._reloader.stopped.wait()
        log.info(
            "shutting down: %d command(s) running, waiting up to %gs for them",
            self.supervisor.running(),
            grace,
        )
        # The server keeps answering through the grace: /health 200 keeps a liveness probe
        # from killing us, /ready, /trigger and /run say 503. It closes once runs are over.
        slots = await self.supervisor.stop(grace)
        stop_http.set()
        with trio.move_on_after(HTTP_GRACE):
            for slot in slots:
                await slot.history.done.wait()  # the last runs are on disk


def build_service(
    config: Config,
    listen: str = DEFAULT_LISTEN,
    *,
    config_path: str | None = None,
    listen_override: str | None = None,
    watch_interval: float = CONFIG_POLL,
    launch: Launch | None = None,
    disk: Disk = FILE_DISK,
    serve: Serve = serve_http,
) -> Service:
    """The daemon for ``config``: real processes, disk and server unless others are given."""
    metrics = Metrics()
    processes = None
    if launch is None:
        # the webhook token, however it was read, must not reach a command's environment
        processes = launch = ProcessLauncher(
            secrets=(config.auth.token,) if config.auth else (), state_dir=config.state_dir
        )
    supervisor = Supervisor(config.state_dir, launch, metrics, disk=disk)
    reloader = None if config_path is None else Reloader(config_path, poll=watch_interval)
    return Service(
        config,
        listen=listen,
        metrics=metrics,
        supervisor=supervisor,
        admission=Admission(supervisor.lookup, metrics),
        serve=serve,
        reloader=reloader,
        processes=processes,
        listen_override=listen_override,
    )


def _remove_stale_temporaries(config: Config) -> None:
    # Before any journal is opened: no write of ours can be in flight yet.
    if config.state_dir is None:
        return
    try:
        removed = remove_stale_temporaries(config.state_dir)
    except OSError as exc:
        log.warning("cannot clean stateDir %s: %s", config.state_dir, exc.strerror)
        return
    for path in removed:
        log.info("removed %s, left by a write that a stop cut short", path)


def _warn_about_orphan_state(config: Config) -> None:
    if config.state_dir is None:
        return
    known = {c.name for c in config.commands}
    for path in sorted(Path(config.state_dir).glob("*.json")):
        if path.stem not in known:
            log.warning("state file %s belongs to no configured command; ignored", path)
