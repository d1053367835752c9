"""The daemon: one root nursery holding the HTTP server and one nursery per command.

The runners belong to our nursery, not to the web app's, so an error in a
runner ends the daemon loudly instead of vanishing. Shutdown is graceful:
``/ready`` turns 503 (and webhooks and manual runs 503 with ``Retry-After``)
while ``/health`` stays 200, pending delays are dropped, a running command
gets ``shutdownGrace`` seconds before its process group is terminated, and
only then does the server stop accepting.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path
from typing import Any, Literal

import trio

from .admission import Accepted, Refused
from .config import DEFAULT_LISTEN, CommandConfig, Config, parse_listen
from .events import Event, matching
from .history import RunHistory, open_history
from .journal import Journal, open_journal, remove_stale_temporaries
from .metrics import Metrics
from .process import ProcessLauncher
from .reload import CONFIG_POLL, Reloader
from .runner import Launch, Runner, RunRequest, RunResult, Trigger
from .server import HTTP_GRACE, StartupError, bind_address, serve_http
from .status import status_document
from .web import create_app

log = logging.getLogger("s3syncer")

SHUTTING_DOWN = Refused("shutting down", "shutting down, retry", retry_after=1)
BUSY = Refused("busy", "busy, retry", retry_after=1)
NOT_DURABLE = Refused("not durable", "cannot record it durably, retry", retry_after=5)


class StateDirError(StartupError):
    """``stateDir`` cannot be created or written."""


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
        self.runners: dict[str, Runner] = {}
        self.journals: dict[str, Journal] = {}
        self.ready = False
        self.shutting_down = False
        self._stop_http = trio.Event()
        self._http_done = trio.Event()
        self._shutdown = trio.Event()
        self._scopes: dict[Runner, trio.CancelScope] = {}
        self._retired: dict[Runner, trio.Event] = {}
        self._retiring: list[Runner] = []
        self._run_locks: dict[str, trio.Lock] = {}
        self._root: trio.Nursery | None = None
        self._launcher: Launch = self.launch or ProcessLauncher()
        self._reloader: Reloader | None = None
        self._reload_scope = trio.CancelScope()
        if self.config_path is not None:
            self._reloader = Reloader(self.config_path, self._apply, poll=self.watch_interval)

    def request_shutdown(self) -> None:
        """Begin a graceful shutdown (what SIGTERM and SIGINT do)."""
        self.shutting_down = True
        self._shutdown.set()

    def request_reload(self) -> None:
        """Read the config file again soon (what SIGHUP does); folds into a pending reload."""
        if self._reloader is not None and not self.shutting_down:
            self._reloader.request()

    def status(self) -> dict[str, Any]:
        """The ``/status`` document."""
        return status_document(self.runners.values())

    # --- accepting triggers and manual runs --------------------------------------------

    def formats(self, name: str) -> frozenset[str] | None:
        """The webhook formats command ``name`` reads; None when there is no such command."""
        runner = self.runners.get(name)
        return None if runner is None else runner.command.formats

    async def accept(
        self,
        name: str,
        events: Sequence[Event],
        reason: Literal["event", "manual"],
        *,
        unmapped: int = 0,
    ) -> Accepted | Refused:
        """Take ``events`` (or a manual run) for command ``name``; never waits on a command.

        Accepted means the runner has it and, with ``stateDir``, the journal holds it on disk.
        ``unmapped`` notifications of the request carried no event: they count as ignored.
        """
        runner = self.runners.get(name)
        if runner is None:
            return Refused("unknown", f"no command named {name!r}")
        if reason == "manual":
            return self._accept_manual(name, runner)
        if self.shutting_down:
            # The runners are stopping and would drop it: let the registry redeliver it to
            # the next instance (it retries every non-2xx answer) instead of losing it.
            self.metrics.rejected(name)
            return SHUTTING_DOWN
        command = runner.command
        accepted = [] if command.disable else matching(command.events, events)
        if accepted:
            refused = await self._deliver(name, runner, accepted)
            if refused is not None:
                self.metrics.rejected(name)
                return refused
        ignored = len(events) - len(accepted) + unmapped
        self.metrics.triggered(name, len(accepted), ignored)
        return Accepted(len(accepted), ignored)

    def refuse(self, name: str, detail: str) -> Refused:
        """Answer a request for ``name`` that could not be read; counts it for a known command."""
        if name not in self.runners:
            return Refused("unknown", f"no command named {name!r}")
        self.metrics.rejected(name)
        return SHUTTING_DOWN if self.shutting_down else Refused("bad request", detail)

    def _accept_manual(self, name: str, runner: Runner) -> Accepted | Refused:
        if runner.command.disable:
            return Refused("disabled", f"{name} is disabled")
        if self.shutting_down:
            return SHUTTING_DOWN
        try:
            runner.send_channel.send_nowait(Trigger("manual"))
        except trio.WouldBlock:
            return BUSY
        log.info("%s: manual run requested", name, extra={"command": name})
        return Accepted()

    async def _deliver(self, name: str, runner: Runner, accepted: list[Event]) -> Refused | None:
        journal = self.journals.get(name)
        seq = journal.record(accepted) if journal is not None else 0
        try:
            runner.send_channel.send_nowait(Trigger("event", tuple(accepted), seq=seq))
        except trio.WouldBlock:
            # Never wait on the runner; the registry retries a non-2xx, so nothing is lost.
            return BUSY
        if journal is None:
            return None
        try:
            # Accepted means delivered to the registry: only once it is on disk (group commit).
            await journal.flush()
        except OSError as exc:
            log.error("%s: cannot record triggers in %s: %s", name, journal.path, exc.strerror)
            return NOT_DURABLE
        return None

    async def run(
        self, *, task_status: trio.TaskStatus[list[str]] = trio.TASK_STATUS_IGNORED
    ) -> None:
        """Serve until ``request_shutdown()``; ``task_status`` gets the bound URLs."""
        host, port = parse_listen(self.listen)
        async with trio.open_nursery() as root:
            self._root = root
            _remove_stale_temporaries(self.config)
            for command in self.config.commands:
                await self._start_command(command)
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
            root.cancel_scope.cancel()

    async def _start_command(self, command: CommandConfig) -> None:
        assert self._root is not None
        journal, recovered = self._open_journal(command)
        retired = trio.Event()
        runner = Runner(
            command,
            partial(self._launch_alone, retired),
            metrics=self.metrics,
            settle=None if journal is None else partial(_settle, journal),
            recovered=recovered,
            history=self._open_history(command),
        )
        self.metrics.add_command(command.name)
        self.metrics.track_pending_event_age(command.name, runner.pending_event_age)
        self._root.start_soon(runner.history.keep_saved)
        self._scopes[runner] = await self._root.start(self._supervise, runner)
        self._retired[runner] = retired
        self.runners[command.name] = runner
        if journal is not None:
            self.journals[command.name] = journal

    async def _launch_alone(
        self, retired: trio.Event, command: CommandConfig, request: RunRequest
    ) -> RunResult:
        # A command removed and added back gets a new runner while the old one may still
        # be running: the lock keeps its two runs from overlapping all the same, and a run
        # whose runner was retired while it waited never starts (a storm of reloads would
        # otherwise queue one run per runner it made).
        lock = self._run_locks.setdefault(command.name, trio.Lock())
        async with lock:
            if retired.is_set():
                return RunResult(error="not started: the command was removed or replaced")
            return await self._launcher(command, request)

    def _open_history(self, command: CommandConfig) -> RunHistory:
        try:
            return open_history(self.config.state_dir, command.name)
        except OSError as exc:
            raise StateDirError(
                exc.errno, f"cannot use stateDir {self.config.state_dir}: {exc.strerror}"
            ) from exc

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
        log.log(
            logging.INFO if found.problem is None else logging.WARNING,
            "%s: %s",
            *(command.name, found.describe()),
            extra={"command": command.name, "events": len(found.events)},
        )
        trigger = Trigger(
            "recovered", found.events, immediate=True, truncated=found.truncated, seq=journal.seq
        )
        return journal, trigger

    # --- reload ----------------------------------------------------------------------

    async def _apply(self, new: Config) -> None:
        """Make the running commands match ``new``; the reloader calls this, one at a time."""
        old = self.config
        listen = self.listen_override or new.listen or DEFAULT_LISTEN
        for key, before, after in (
            ("listen", parse_listen(self.listen), parse_listen(listen)),
            ("auth", old.auth, new.auth),
            ("stateDir", old.state_dir, new.state_dir),
        ):
            if before != after:
                log.warning("reload: %s changed; that takes a restart to apply", key)
        # Compared with the runners themselves, not the last config: a reload that failed
        # halfway is completed by the next one.
        live = {name: runner.command for name, runner in self.runners.items()}
        wanted = {command.name: command for command in new.commands}
        removed = [name for name in live if name not in wanted]
        added = [command for name, command in wanted.items() if name not in live]
        changed = [c for name, c in wanted.items() if name in live and c != live[name]]
        self.config = replace(new, listen=old.listen, auth=old.auth, state_dir=old.state_dir)
        if not (removed or added or changed):
            log.info("reload: no command changed in %s", self.config_path)
            return
        for name in removed:
            await self._retire(name)
        for command in changed:
            if command.disable != live[command.name].disable:
                await self._retire(command.name)
                await self._start_command(command)
            else:
                self.runners[command.name].update(command)
        for command in added:
            await self._start_command(command)
        log.info(
            "reloaded %s: %d added, %d changed, %d removed",
            self.config_path,
            *(len(added), len(changed), len(removed)),
        )

    async def _retire(self, name: str) -> None:
        """Take a command out of service; a run in progress ends as it would have."""
        runner = self.runners.pop(name)
        runner.stop()
        self._retired[runner].set()
        self._retiring.append(runner)
        assert self._root is not None
        self._root.start_soon(self._forget_when_stopped, runner)
        journal = self.journals.pop(name, None)
        if journal is not None:
            await _settle(journal, journal.seq)

    async def _forget_when_stopped(self, runner: Runner) -> None:
        await runner.stopped.wait()
        # Every reload that removes a command would otherwise keep its runner forever.
        self._retiring.remove(runner)
        del self._scopes[runner], self._retired[runner]
        name = runner.command.name
        if name not in self.runners:  # not added back meanwhile
            self.metrics.remove_command(name)
            lock = self._run_locks.get(name)
            if lock is not None and not lock.locked():
                del self._run_locks[name]

    async def _supervise(
        self, runner: Runner, *, task_status: trio.TaskStatus[trio.CancelScope]
    ) -> None:
        # One nursery per command, under ours: a runner's error ends the daemon loudly.
        with trio.CancelScope() as scope:
            async with trio.open_nursery() as nursery:
                await nursery.start(runner.run)
                task_status.started(scope)

    async def _serve_http(self, bind: str, *, task_status: trio.TaskStatus[list[str]]) -> None:
        try:
            await serve_http(create_app(self), bind, self._stop_http.wait, task_status=task_status)
        finally:
            self._http_done.set()

    async def _shut_down(self) -> None:
        grace = self.config.shutdown_grace
        if self._reloader is not None:
            # A reload must not start a runner behind our back: end it, and wait until it has.
            self._reload_scope.cancel()
            await self._reloader.stopped.wait()
        running = [r for r in self.runners.values() if r.state == "running"]
        log.info(
            "shutting down: %d command(s) running, waiting up to %gs for them", len(running), grace
        )
        # The server keeps answering through the grace: /health 200 keeps a liveness probe
        # from killing us, /ready, /trigger and /run say 503. It closes once runs are over.
        runners = [*self.runners.values(), *self._retiring]
        for runner in runners:
            runner.stop()
            self._retired[runner].set()  # a run still waiting for its turn never starts
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
        self._stop_http.set()
        with trio.move_on_after(HTTP_GRACE):
            for runner in runners:
                await runner.history.done.wait()  # the last runs are on disk
            await self._http_done.wait()
        log.info("shut down cleanly")


async def _settle(journal: Journal, seq: int) -> None:
    journal.settle(seq)
    try:
        await journal.flush()
    except OSError as exc:
        # The run succeeded; a stale journal only costs a spare run after a restart.
        log.error("cannot update state file %s: %s", journal.path, exc.strerror)


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
