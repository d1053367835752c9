"""The command lifecycle: a runner per command, started, changed, retired and stopped.

:class:`Supervisor` keeps one :class:`CommandSlot` per command: its runner, journal,
history, cancel scope, retirement and run lock. It starts each runner in a nursery of
its own under the supervisor's (so a runner's error ends the daemon loudly), makes the
running commands match a reloaded configuration, retires a removed command while its
last run ends as it would have, and stops every runner within the shutdown grace.
Taking requests in is :mod:`s3syncer.daemon.admission`'s job; serving HTTP and the order
of the whole shutdown are :class:`~s3syncer.daemon.service.Service`'s.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import NamedTuple

import trio
import trio.lowlevel

from ..durable.atomic_file import FILE_DISK, Disk
from ..durable.history import RunHistory, open_history
from ..durable.journal import Journal, open_journal
from ..engine import view
from ..engine.ports import Launch
from ..engine.runner import Runner
from ..model.config import CommandConfig
from ..model.errors import StateDirError
from ..model.run import RunRequest, RunResult, Trigger
from ..obs.metrics import Metrics

log = logging.getLogger("s3syncer")

UPDATE_SLICE = 250  # runners updated by a reload between two checkpoints of the loop


class Changes(NamedTuple):
    """How many commands a reload added, changed and removed."""

    added: int
    changed: int
    removed: int


@dataclass(eq=False)
class CommandSlot:
    """Everything the daemon keeps for one command's runner, from start to retirement.

    A command removed and added back gets a new slot while the old one's run may still
    go on: the two share ``lock``, so their runs never overlap.
    """

    runner: Runner
    journal: Journal | None
    history: RunHistory
    lock: trio.Lock
    retired: trio.Event
    scope: trio.CancelScope = field(default_factory=trio.CancelScope)

    @property
    def name(self) -> str:
        """The command's name."""
        return self.runner.command.name


class Supervisor:
    """The running commands, one :class:`CommandSlot` each.

    Start it with ``nursery.start(supervisor.run)``; the runners live in its nursery.
    ``slots`` is the live table admission reads.
    """

    def __init__(
        self,
        state_dir: str | None,
        launch: Launch,
        metrics: Metrics,
        *,
        disk: Disk = FILE_DISK,
    ) -> None:
        self.state_dir = state_dir  # a reload never changes it: that takes a restart
        self.metrics = metrics
        self.slots: dict[str, CommandSlot] = {}
        self._launch = launch
        self._disk = disk
        self._retiring: list[CommandSlot] = []
        self._nursery: trio.Nursery | None = None

    async def run(
        self, *, task_status: trio.TaskStatus[Supervisor] = trio.TASK_STATUS_IGNORED
    ) -> None:
        """Hold the runners' nursery until cancelled; ``task_status`` gets the supervisor."""
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            task_status.started(self)
            await trio.sleep_forever()

    def lookup(self, name: str) -> CommandSlot | None:
        """The live slot of command ``name``, if it is configured."""
        return self.slots.get(name)

    async def start(self, command: CommandConfig) -> None:
        """Start ``command``'s runner, with the triggers its journal recovered."""
        assert self._nursery is not None, "start the supervisor first"
        journal, recovered = self._open_journal(command)
        history = self._open_history(command)
        # A retiring slot of the same name may still be running: share its lock.
        lock = next((s.lock for s in self._retiring if s.name == command.name), trio.Lock())
        retired = trio.Event()
        runner = Runner(
            command,
            partial(self._launch_alone, lock, retired),
            metrics=self.metrics,
            settle=None if journal is None else partial(self._settle_live, command.name, journal),
            recovered=recovered,
            history=history,
        )
        slot = CommandSlot(runner, journal, history, lock, retired)
        self.metrics.add_command(command.name)
        last, success = runner.last_run, history.last_success
        self.metrics.restore(
            command.name,
            None if last is None or last.result is None else last.result.ok,
            None if success is None else success.ended_at,
        )
        self.metrics.track_pending_event_age(command.name, partial(_event_age, runner))
        self._nursery.start_soon(history.keep_saved)
        await self._nursery.start(self._supervise, slot)
        self.slots[command.name] = slot

    async def apply(self, commands: Sequence[CommandConfig]) -> Changes:
        """Make the running commands match ``commands``; one call at a time."""
        # Compared with the runners themselves, not the last config: a reload that failed
        # halfway is completed by the next one.
        live = {name: slot.runner.command for name, slot in self.slots.items()}
        wanted = {command.name: command for command in commands}
        removed = [name for name in live if name not in wanted]
        added = [command for name, command in wanted.items() if name not in live]
        changed = [c for name, c in wanted.items() if name in live and c != live[name]]
        for name in removed:
            await self.retire(name)
        for index, command in enumerate(changed):
            if command.disable != live[command.name].disable:
                await self.retire(command.name, keep_events=command.disable)
                await self.start(command)
            else:
                self.slots[command.name].runner.update(command)
                if index % UPDATE_SLICE == UPDATE_SLICE - 1:
                    await trio.lowlevel.checkpoint()  # 10,000 changed: let triggers through
        for command in added:
            await self.start(command)
        return Changes(len(added), len(changed), len(removed))

    async def retire(self, name: str, *, keep_events: bool = False) -> None:
        """Take a command out of service; a run in progress ends as it would have.

        With ``keep_events`` (the command is being disabled), the events its journal holds
        stay on disk, to run when it is enabled again; otherwise they are forgotten.
        """
        assert self._nursery is not None
        slot = self.slots.pop(name)
        slot.runner.stop()
        slot.retired.set()
        self._retiring.append(slot)
        self._nursery.start_soon(self._forget_when_stopped, slot)
        if slot.journal is not None and keep_events:
            await _keep(name, slot.journal)
        elif slot.journal is not None:
            await _settle(slot.journal, slot.journal.seq)

    def running(self) -> int:
        """How many commands are running a process now."""
        return sum(1 for slot in self.slots.values() if view.state(slot.runner) == "running")

    async def stop(self, grace: float) -> list[CommandSlot]:
        """Stop every runner, retired ones too; cancel those still running after ``grace``.

        Returns the slots it stopped, whose histories may still be saving.
        """
        slots = [*self.slots.values(), *self._retiring]
        for slot in slots:
            slot.runner.stop()
            slot.retired.set()  # a run still waiting for its turn never starts
        with trio.move_on_after(grace) as waiting:
            for slot in slots:
                await slot.runner.stopped.wait()
        if waiting.cancelled_caught:
            late = [slot for slot in slots if not slot.runner.stopped.is_set()]
            names = ", ".join(slot.name for slot in late)
            log.warning("shutdown grace of %gs is over; terminating %s", grace, names)
            for slot in late:
                slot.scope.cancel()
            for slot in late:
                await slot.runner.stopped.wait()
        return slots

    async def _launch_alone(
        self, lock: trio.Lock, retired: trio.Event, command: CommandConfig, request: RunRequest
    ) -> RunResult:
        # The lock keeps a retired runner's run and its successor's from overlapping, and
        # a run whose runner was retired while it waited never starts (a storm of reloads
        # would otherwise queue one run per runner it made).
        async with lock:
            if retired.is_set():
                return RunResult(error="not started: the command was removed or replaced")
            return await self._launch(command, request)

    def _open_history(self, command: CommandConfig) -> RunHistory:
        try:
            return open_history(self.state_dir, command.name, self._disk)
        except OSError as exc:
            raise self._unusable(exc) from exc

    def _open_journal(self, command: CommandConfig) -> tuple[Journal | None, Trigger | None]:
        if self.state_dir is None or command.disable:
            return None, None
        try:
            journal = open_journal(self.state_dir, command.name, self._disk)
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
        live = self.slots.get(name)
        if live is not None and live.journal is journal:
            await _settle(journal, seq)

    def _unusable(self, exc: OSError) -> StateDirError:
        return StateDirError(exc.errno, f"cannot use stateDir {self.state_dir}: {exc.strerror}")

    async def _forget_when_stopped(self, slot: CommandSlot) -> None:
        await slot.runner.stopped.wait()
        # Every reload that removes a command would otherwise keep its runner forever.
        self._retiring.remove(slot)
        if slot.name not in self.slots:  # not added back meanwhile
            self.metrics.remove_command(slot.name)

    async def _supervise(self, slot: CommandSlot, *, task_status: trio.TaskStatus[None]) -> None:
        # One nursery per command, under ours: a runner's error ends the daemon loudly.
        with slot.scope:
            async with trio.open_nursery() as nursery:
                await nursery.start(slot.runner.run)
                task_status.started()


def _event_age(runner: Runner) -> float:
    return view.pending_event_age(runner, trio.current_time())


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
