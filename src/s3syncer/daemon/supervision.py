"""The command lifecycle: a runner per command, started, changed, retired and stopped.

:class:`Supervisor` starts each command's runner with its journal and history in
a nursery of its own under the daemon's root nursery (so a runner's error ends
the daemon loudly), makes the running commands match a reloaded configuration,
retires a removed command while its last run ends as it would have, and stops
every runner within the shutdown grace. Taking requests in is
:mod:`s3syncer.daemon.admission`'s job; serving HTTP and the order of the whole
shutdown are :class:`~s3syncer.daemon.service.Service`'s.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from functools import partial
from typing import NamedTuple

import trio

from ..durable.history import RunHistory, open_history
from ..durable.journal import Journal, open_journal
from ..engine.ports import Launch
from ..engine.runner import Runner
from ..model.config import CommandConfig
from ..model.errors import StateDirError
from ..model.run import RunRequest, RunResult, Trigger
from ..obs.metrics import Metrics

log = logging.getLogger("s3syncer")


class Changes(NamedTuple):
    """How many commands a reload added, changed and removed."""

    added: int
    changed: int
    removed: int


class Supervisor:
    """The running commands: one runner each, in its own nursery under ``nursery``.

    ``runners`` and ``journals`` are the live tables admission reads. Set ``nursery``
    to the daemon's root nursery before starting a command.
    """

    def __init__(self, state_dir: str | None, launch: Launch, metrics: Metrics) -> None:
        self.state_dir = state_dir  # a reload never changes it: that takes a restart
        self.metrics = metrics
        self.runners: dict[str, Runner] = {}
        self.journals: dict[str, Journal] = {}
        self.nursery: trio.Nursery | None = None
        self._launch = launch
        self._scopes: dict[Runner, trio.CancelScope] = {}
        self._retired: dict[Runner, trio.Event] = {}
        self._retiring: list[Runner] = []
        self._run_locks: dict[str, trio.Lock] = {}

    async def start(self, command: CommandConfig) -> None:
        """Start ``command``'s runner, with the triggers its journal recovered."""
        assert self.nursery is not None
        journal, recovered = self._open_journal(command)
        retired = trio.Event()
        runner = Runner(
            command,
            partial(self._launch_alone, retired),
            metrics=self.metrics,
            settle=None if journal is None else partial(self._settle_live, command.name, journal),
            recovered=recovered,
            history=self._open_history(command),
        )
        self.metrics.add_command(command.name)
        self.metrics.track_pending_event_age(command.name, runner.pending_event_age)
        self.nursery.start_soon(runner.history.keep_saved)
        self._scopes[runner] = await self.nursery.start(self._supervise, runner)
        self._retired[runner] = retired
        self.runners[command.name] = runner
        if journal is not None:
            self.journals[command.name] = journal

    async def apply(self, commands: Sequence[CommandConfig]) -> Changes:
        """Make the running commands match ``commands``; one call at a time."""
        # Compared with the runners themselves, not the last config: a reload that failed
        # halfway is completed by the next one.
        live = {name: runner.command for name, runner in self.runners.items()}
        wanted = {command.name: command for command in commands}
        removed = [name for name in live if name not in wanted]
        added = [command for name, command in wanted.items() if name not in live]
        changed = [c for name, c in wanted.items() if name in live and c != live[name]]
        for name in removed:
            await self.retire(name)
        for command in changed:
            if command.disable != live[command.name].disable:
                await self.retire(command.name, keep_events=command.disable)
                await self.start(command)
            else:
                self.runners[command.name].update(command)
        for command in added:
            await self.start(command)
        return Changes(len(added), len(changed), len(removed))

    async def retire(self, name: str, *, keep_events: bool = False) -> None:
        """Take a command out of service; a run in progress ends as it would have.

        With ``keep_events`` (the command is being disabled), the events its journal holds
        stay on disk, to run when it is enabled again; otherwise they are forgotten.
        """
        runner = self.runners.pop(name)
        runner.stop()
        self._retired[runner].set()
        self._retiring.append(runner)
        assert self.nursery is not None
        self.nursery.start_soon(self._forget_when_stopped, runner)
        journal = self.journals.pop(name, None)
        if journal is not None and keep_events:
            await _keep(name, journal)
        elif journal is not None:
            await _settle(journal, journal.seq)

    def running(self) -> int:
        """How many commands are running a process now."""
        return sum(1 for runner in self.runners.values() if runner.state == "running")

    async def stop(self, grace: float) -> list[Runner]:
        """Stop every runner, retired ones too; cancel those still running after ``grace``.

        Returns the runners it stopped, whose histories may still be saving.
        """
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
        return runners

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
            return await self._launch(command, request)

    def _open_history(self, command: CommandConfig) -> RunHistory:
        try:
            return open_history(self.state_dir, command.name)
        except OSError as exc:
            raise self._unusable(exc) from exc

    def _open_journal(self, command: CommandConfig) -> tuple[Journal | None, Trigger | None]:
        if self.state_dir is None or command.disable:
            return None, None
        try:
            journal = open_journal(self.state_dir, command.name)
        except OSError as exc:
            raise self._unusable(exc) from exc
        found = journal.load()
        if found is None:
            return journal, None
        log.log(
            logging.INFO if found.problem is None else logging.WARNING,
            "%s: %s",
            *(command.name, found.describe()),
            extra={"command": command.name, "events": len(found.events)},
        )
        # The lag goes on from the accept time on record, converted to the runner's clock.
        accepted_at = trio.current_time() - max(0.0, time.time() - found.accepted_at)
        trigger = Trigger(
            "recovered",
            found.events,
            immediate=True,
            truncated=found.truncated,
            seq=journal.seq,
            accepted_at=accepted_at,
        )
        return journal, trigger

    async def _settle_live(self, name: str, journal: Journal, seq: int) -> None:
        # A run that ends after its command was disabled leaves the kept journal as it is
        # (a spare run once enabled), so no late write lands on a file a new runner reads.
        if self.journals.get(name) is journal:
            await _settle(journal, seq)

    def _unusable(self, exc: OSError) -> StateDirError:
        return StateDirError(exc.errno, f"cannot use stateDir {self.state_dir}: {exc.strerror}")

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


async def _keep(name: str, journal: Journal) -> None:
    try:
        await journal.flush()  # no write of this journal may land after a new one reads
    except OSError as exc:
        log.error("cannot update state file %s: %s", journal.path, exc.strerror)
    if len(journal) or journal.truncated:
        log.info(
            "%s: disabled; kept %s not run yet in %s, to run when it is enabled again",
            *(name, _waiting(journal), journal.path),
            extra={"command": name, "events": len(journal)},
        )


def _waiting(journal: Journal) -> str:
    count = len(journal)
    events = f"{count} accepted event{'' if count == 1 else 's'}"
    return f"{events} (and a run covering everything)" if journal.truncated else events


async def _settle(journal: Journal, seq: int) -> None:
    journal.settle(seq)
    try:
        await journal.flush()
    except OSError as exc:
        # The run succeeded; a stale journal only costs a spare run after a restart.
        log.error("cannot update state file %s: %s", journal.path, exc.strerror)
