"""The daemon: one root nursery holding the HTTP server and one nursery per command.

The runners belong to our nursery, not to the web app's, so an error in a
runner ends the daemon loudly instead of vanishing. Shutdown is graceful:
``/ready`` turns 503, the server stops accepting and finishes what it has,
pending delays are dropped, and a running command gets ``shutdownGrace``
seconds before its process group is terminated.
"""

from __future__ import annotations

import logging
import os
import signal
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path

import trio

from . import fd_budget, server
from .config import DEFAULT_LISTEN, CommandConfig, Config, ConfigError, load_config, parse_listen
from .journal import Journal, open_journal
from .metrics import Metrics
from .process import KILL_GRACE, ProcessLauncher
from .run_directory import RunDirectory, default_location
from .runner import Launch, Runner, Trigger
from .web import ServiceState, create_app

log = logging.getLogger("s3syncer")

HTTP_GRACE = 3.0
CONFIG_POLL = 2.0


class StartupError(OSError):
    """Something the daemon needs at start is not there; ``strerror`` says what."""


class StateDirError(StartupError):
    """``stateDir`` cannot be created or written."""


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


def _bind(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


@dataclass
class Service:
    """Everything one ``s3syncer serve`` runs."""

    config: Config
    listen: str = DEFAULT_LISTEN
    launch: Launch | None = None
    config_path: str | None = None  # where reload() reads from
    watch_interval: float = CONFIG_POLL

    def __post_init__(self) -> None:
        self.metrics = Metrics()
        self.state = ServiceState()
        self._stop_http = trio.Event()
        self._http_done = trio.Event()
        self._shutdown = trio.Event()
        self._scopes: dict[Runner, trio.CancelScope] = {}
        self._retiring: list[Runner] = []
        self._root: trio.Nursery | None = None
        self._processes: ProcessLauncher | None = None
        self._run_directory: RunDirectory | None = None
        self._launcher: Launch
        if self.launch is None:
            self._processes = self._launcher = ProcessLauncher()
        else:
            self._launcher = self.launch

    def request_shutdown(self) -> None:
        """Begin a graceful shutdown (what SIGTERM and SIGINT do)."""
        self.state.shutting_down = True
        self._shutdown.set()

    async def run(
        self, *, task_status: trio.TaskStatus[list[str]] = trio.TASK_STATUS_IGNORED
    ) -> None:
        """Serve until ``request_shutdown()``; ``task_status`` gets the bound URLs."""
        host, port = parse_listen(self.listen)
        async with trio.open_nursery() as root:
            self._root = root
            await self._claim_run_directory()
            for command in self.config.commands:
                await self._start_command(command)
            _warn_about_orphan_state(self.config)
            binds: list[str] = await root.start(self._serve_http, _bind(host, port))
            self.state.ready = True
            for url in binds:
                log.info("listening on %s", url)
            if self.config_path is not None:
                root.start_soon(self._watch_config_file, self.config_path)
            task_status.started(binds)
            await self._shutdown.wait()
            await self._shut_down()
            if self._run_directory is not None:
                self._run_directory.release()
            root.cancel_scope.cancel()

    async def _claim_run_directory(self) -> None:
        if self._processes is None:
            return  # an injected launcher keeps its own files
        directory = RunDirectory(default_location(self.config.state_dir, self.config_path))
        await trio.to_thread.run_sync(directory.claim)
        await directory.clear(KILL_GRACE)
        self._processes.events_dir = directory.path
        self._run_directory = directory  # its lock lasts as long as we do

    async def _start_command(self, command: CommandConfig) -> None:
        assert self._root is not None
        journal, recovered = self._open_journal(command)
        runner = Runner(
            command,
            self._launcher,
            metrics=self.metrics,
            settle=None if journal is None else partial(_settle, journal),
            recovered=recovered,
        )
        self.metrics.add_command(command.name)
        self._scopes[runner] = await self._root.start(self._supervise, runner)
        self.state.runners[command.name] = runner
        if journal is not None:
            self.state.journals[command.name] = journal

    def _open_journal(self, command: CommandConfig) -> tuple[Journal | None, Trigger | None]:
        if self.config.state_dir is None or command.disable:
            return None, None
        try:
            journal = open_journal(self.config.state_dir, command.name)
        except OSError as exc:
            raise StateDirError(
                exc.errno, f"cannot use stateDir {self.config.state_dir}: {exc.strerror}"
            ) from exc
        found = journal.load()
        if found is None:
            return journal, None
        log.info(
            "%s: %d accepted events were not run before the restart; running now",
            command.name,
            len(found.events),
            extra={"command": command.name, "events": len(found.events)},
        )
        trigger = Trigger(
            "recovered", found.events, immediate=True, truncated=found.truncated, seq=journal.seq
        )
        return journal, trigger

    # --- reload ----------------------------------------------------------------------

    async def reload(self) -> None:
        """Read the config file again and apply it; a bad file changes nothing."""
        if self.config_path is None or self.state.shutting_down:
            return
        try:
            new = load_config(self.config_path)
        except ConfigError as exc:
            for error in exc.errors:
                log.error("reload: %s: %s", exc.source, error)
            log.error("reload: the file has errors; still running the previous configuration")
            return
        await self._apply(new)

    async def _apply(self, new: Config) -> None:
        old = self.config
        for key, before, after in (
            ("listen", old.listen, new.listen),
            ("auth", old.auth, new.auth),
            ("stateDir", old.state_dir, new.state_dir),
            ("requestTimeout", old.request_timeout, new.request_timeout),
        ):
            if before != after:
                log.warning("reload: %s changed; that takes a restart to apply", key)
        before_commands = {c.name: c for c in old.commands}
        after_commands = {c.name: c for c in new.commands}
        removed = [name for name in before_commands if name not in after_commands]
        added = [c for name, c in after_commands.items() if name not in before_commands]
        changed = [
            c
            for name, c in after_commands.items()
            if name in before_commands and c != before_commands[name]
        ]
        for name in removed:
            await self._retire(name)
        for command in changed:
            if command.disable != before_commands[command.name].disable:
                await self._retire(command.name)
                await self._start_command(command)
            else:
                self.state.runners[command.name].update(command)
        for command in added:
            await self._start_command(command)
        self.config = replace(
            new,
            listen=old.listen,
            auth=old.auth,
            state_dir=old.state_dir,
            request_timeout=old.request_timeout,
        )
        log.info(
            "reloaded %s: %d added, %d changed, %d removed",
            self.config_path,
            *(len(added), len(changed), len(removed)),
        )

    async def _retire(self, name: str) -> None:
        """Take a command out of service; a run in progress ends as it would have."""
        runner = self.state.runners.pop(name)
        runner.stop()
        self._retiring.append(runner)
        assert self._root is not None
        self._root.start_soon(self._forget_when_stopped, runner)
        journal = self.state.journals.pop(name, None)
        if journal is not None:
            await _settle(journal, journal.seq)

    async def _forget_when_stopped(self, runner: Runner) -> None:
        await runner.stopped.wait()
        # Every reload that removes a command would otherwise keep its runner forever.
        self._retiring.remove(runner)
        del self._scopes[runner]
        if runner.command.name not in self.state.runners:  # not added back meanwhile
            self.metrics.remove_command(runner.command.name)

    async def _watch_config_file(self, path: str) -> None:
        # Poll: Kubernetes updates a ConfigMap volume by swapping a symlink, which
        # inotify on the file itself would miss; stat() follows the link.
        last = _file_identity(path)
        while True:
            await trio.sleep(self.watch_interval)
            current = _file_identity(path)
            if current != last and current is not None:
                last = current
                log.info("config file %s changed; reloading", path)
                await self.reload()

    async def _supervise(
        self, runner: Runner, *, task_status: trio.TaskStatus[trio.CancelScope]
    ) -> None:
        # One nursery per command, under ours: a runner's error ends the daemon loudly.
        with trio.CancelScope() as scope:
            async with trio.open_nursery() as nursery:
                await nursery.start(runner.run)
                task_status.started(scope)

    async def _serve_http(self, bind: str, *, task_status: trio.TaskStatus[list[str]]) -> None:
        limit = fd_budget.open_files_limit()
        settings = server.ServerSettings(
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
        app = create_app(self.state, self.metrics, self.config.auth)
        started = _StartedFlag(task_status)
        try:
            await server.serve(
                app,
                settings,
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
        runners = [*self.state.runners.values(), *self._retiring]
        for runner in runners:
            runner.stop()
        with trio.move_on_after(grace) as waiting:
            for runner in runners:
                await runner.stopped.wait()
        if waiting.cancelled_caught:
            late = [r for r in runners if not r.stopped.is_set()]
            names = ", ".join(r.command.name for r in late)
            log.warning("shutdown grace of %gs is over; terminating %s", grace, names)
            for runner in late:
                self._scopes[runner].cancel()
            for runner in late:
                await runner.stopped.wait()
        with trio.move_on_after(HTTP_GRACE):
            await self._http_done.wait()
        log.info("shut down cleanly")


async def _settle(journal: Journal, seq: int) -> None:
    journal.settle(seq)
    try:
        await journal.flush()
    except OSError as exc:
        # The run succeeded; a stale journal only costs a spare run after a restart.
        log.error("cannot update state file %s: %s", journal.path, exc.strerror)


def _file_identity(path: str) -> tuple[int, int, int, int] | None:
    try:
        stat = os.stat(path)
    except OSError:
        return None
    return (stat.st_dev, stat.st_ino, stat.st_mtime_ns, stat.st_size)


def _warn_about_orphan_state(config: Config) -> None:
    if config.state_dir is None:
        return
    known = {c.name for c in config.commands}
    for path in sorted(Path(config.state_dir).glob("*.json")):
        if path.stem not in known:
            log.warning("state file %s belongs to no configured command; ignored", path)


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
                log.info("%s received: reloading the configuration", name)
                await service.reload()
            elif service.state.shutting_down:
                log.warning("%s again: stopping now", name)
                raise KeyboardInterrupt
            else:
                log.info("%s received", name)
                service.request_shutdown()
