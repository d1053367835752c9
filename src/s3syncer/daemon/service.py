"""The daemon: one root nursery holding the HTTP server and one nursery per command.

The runners belong to our nursery, not to the web app's, so an error in a
runner ends the daemon loudly instead of vanishing. Shutdown is graceful:
``/ready`` turns 503 (and webhooks and manual runs 503 with ``Retry-After``)
while ``/health`` stays 200, pending delays are dropped, a running command
gets ``shutdownGrace`` seconds before its process group is terminated, and
only then does the server stop accepting.

:class:`Service` is the entry point and owns that order; taking requests in is
:class:`~s3syncer.daemon.admission.Admission`'s job, and starting, changing and
stopping the commands' runners is :class:`~s3syncer.daemon.supervision.Supervisor`'s.
"""

from __future__ import annotations

import errno
import logging
from collections.abc import Sequence
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path
from typing import Any, Literal

import trio

from ..durable.atomic_file import remove_stale_temporaries
from ..engine.ports import Launch
from ..engine.runner import Runner
from ..exec import fd_budget
from ..exec.process import KILL_GRACE, ProcessLauncher
from ..exec.run_directory import DirectoryInUseError, RunDirectory, default_location
from ..model.answers import Accepted, Refused
from ..model.config import DEFAULT_LISTEN, Config, parse_listen
from ..model.errors import StateDirError
from ..model.event import Event
from ..obs.metrics import Metrics
from ..web.app import create_app
from ..web.server import HTTP_GRACE, ServerSettings, bind_address, serve_http
from ..web.status import status_document
from .admission import Admission
from .reload import CONFIG_POLL, Reloader
from .supervision import Supervisor

__all__ = ["Service", "StateDirError"]

log = logging.getLogger("s3syncer")


@dataclass
class Service:
    """Everything one ``s3syncer serve`` runs."""

    config: Config
    listen: str = DEFAULT_LISTEN
    launch: Launch | None = None
    config_path: str | None = None  # what a reload reads
    watch_interval: float = CONFIG_POLL
    listen_override: str | None = None  # --listen or S3SYNCER_LISTEN: the file's has no say

    def __post_init__(self) -> None:
        self.metrics = Metrics()
        self.ready = False
        self._stop_http = trio.Event()
        self._http_done = trio.Event()
        self._shutdown = trio.Event()
        self._processes: ProcessLauncher | None = None
        self._run_directory: RunDirectory | None = None
        launcher: Launch
        if self.launch is None:
            self._processes = launcher = ProcessLauncher()
        else:
            launcher = self.launch
        self._supervisor = Supervisor(self.config.state_dir, launcher, self.metrics)
        self._admission = Admission(self._supervisor, self.metrics)
        self._reloader: Reloader | None = None
        self._reload_scope = trio.CancelScope()
        if self.config_path is not None:
            self._reloader = Reloader(self.config_path, self._apply, poll=self.watch_interval)

    @property
    def runners(self) -> dict[str, Runner]:
        """The running commands' runners, by command name."""
        return self._supervisor.runners

    @property
    def shutting_down(self) -> bool:
        """Whether a shutdown has begun: from then on every run is refused with a retry."""
        return self._admission.closed

    def request_shutdown(self) -> None:
        """Begin a graceful shutdown (what SIGTERM and SIGINT do)."""
        self._admission.close()
        self._shutdown.set()

    def request_reload(self) -> None:
        """Read the config file again soon (what SIGHUP does); folds into a pending reload."""
        if self._reloader is not None and not self.shutting_down:
            self._reloader.request()

    def status(self) -> dict[str, Any]:
        """The ``/status`` document."""
        return status_document(self.runners.values())

    # --- accepting triggers and manual runs: see Admission ----------------------------

    def formats(self, name: str) -> frozenset[str] | None:
        """The webhook formats command ``name`` reads; None when there is no such command."""
        return self._admission.formats(name)

    async def accept(
        self,
        name: str,
        events: Sequence[Event],
        reason: Literal["event", "manual"],
        *,
        unmapped: int = 0,
    ) -> Accepted | Refused:
        """Take ``events`` (or a manual run) for command ``name``: :meth:`Admission.accept`."""
        return await self._admission.accept(name, events, reason, unmapped=unmapped)

    def refuse(self, name: str, detail: str) -> Refused:
        """Answer a request for ``name`` that could not be read; counts it for a known command."""
        return self._admission.refuse(name, detail)

    # --- running -----------------------------------------------------------------------

    async def run(
        self, *, task_status: trio.TaskStatus[list[str]] = trio.TASK_STATUS_IGNORED
    ) -> None:
        """Serve until ``request_shutdown()``; ``task_status`` gets the bound URLs."""
        host, port = parse_listen(self.listen)
        async with trio.open_nursery() as root:
            self._supervisor.nursery = root
            await self._claim_run_directory()
            _remove_stale_temporaries(self.config)
            for command in self.config.commands:
                await self._supervisor.start(command)
            _warn_about_orphan_state(self.config)
            binds: list[str] = await root.start(self._serve_http, bind_address(host, port))
            self.ready = True
            for url in binds:
                log.info("listening on %s", url)
            if self._reloader is not None:
                self._reload_scope = await root.start(self._reloader.run)
            task_status.started(binds)
            await self._shutdown.wait()
            await self._shut_down()
            if self._run_directory is not None:
                self._run_directory.release()
            root.cancel_scope.cancel()

    async def _claim_run_directory(self) -> None:
        if self._processes is None:
            return  # an injected launcher keeps its own files
        state_dir = self.config.state_dir
        directory = RunDirectory(default_location(state_dir, self.config_path))
        try:
            await trio.to_thread.run_sync(partial(directory.claim, exclusive=bool(state_dir)))
        except DirectoryInUseError:
            # Before any journal is read or a run started: a second daemon would rewrite the
            # first one's journals and run every command a second time, runOnStart at once.
            raise StateDirError(
                errno.EBUSY,
                f"stateDir {state_dir} is in use by another s3syncer (its {directory.path} is "
                "locked): two daemons on one stateDir would overwrite each other's journals "
                "and run each command twice",
            ) from None
        await directory.clear(KILL_GRACE)
        self._processes.events_dir = directory.path
        self._run_directory = directory  # its lock lasts as long as we do

    async def _apply(self, new: Config) -> None:
        """Make the daemon match ``new``; the reloader calls this, one at a time."""
        old = self.config
        listen = self.listen_override or new.listen or DEFAULT_LISTEN
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
        changes = await self._supervisor.apply(new.commands)
        if not any(changes):
            log.info("reload: no command changed in %s", self.config_path)
            return
        log.info(
            "reloaded %s: %d added, %d changed, %d removed",
            self.config_path,
            *(changes.added, changes.changed, changes.removed),
        )

    async def _serve_http(self, bind: str, *, task_status: trio.TaskStatus[list[str]]) -> None:
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
        try:
            await serve_http(
                create_app(self), settings, self._stop_http.wait, task_status=task_status
            )
        finally:
            self._http_done.set()

    async def _shut_down(self) -> None:
        grace = self.config.shutdown_grace
        if self._reloader is not None:
            # A reload must not start a runner behind our back: end it, and wait until it has.
            self._reload_scope.cancel()
            await self._reloader.stopped.wait()
        log.info(
            "shutting down: %d command(s) running, waiting up to %gs for them",
            self._supervisor.running(),
            grace,
        )
        # The server keeps answering through the grace: /health 200 keeps a liveness probe
        # from killing us, /ready, /trigger and /run say 503. It closes once runs are over.
        runners = await self._supervisor.stop(grace)
        self._stop_http.set()
        with trio.move_on_after(HTTP_GRACE):
            for runner in runners:
                await runner.history.done.wait()  # the last runs are on disk
            await self._http_done.wait()
        log.info("shut down cleanly")


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
