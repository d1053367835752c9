"""Taking a run in: the rules, the journal, the runner's channel, and the answer.

:class:`Admission` is the one way a webhook's events or a manual run reach a
runner: it checks them against the command's rules, records them in the journal
and drops them into the runner's channel, and never waits on a command. It answers
:class:`Accepted` or :class:`Refused`; the web layer, to which the daemon hands it as
the commands' inbox, turns these into HTTP answers. Nothing here knows a status code, so
the same answers serve any front end (and tests, which call it directly).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Literal

import trio

from ..model.answers import BUSY, NOT_DURABLE, SHUTTING_DOWN, Accepted, BadRequest, Refused
from ..model.event import Event
from ..model.rules import matching
from ..model.run import Trigger
from ..obs.throttle import Throttle

if TYPE_CHECKING:
    from ..engine.runner import Runner
    from ..obs.metrics import Metrics
    from .supervision import CommandSlot

Lookup = Callable[[str], "CommandSlot | None"]

log = logging.getLogger("s3syncer")


class Admission:
    """Takes events and manual runs in for the commands that ``lookup`` finds.

    Once :meth:`close` is called every run is refused with a retry: the runners are
    stopping and would drop it.
    """

    def __init__(self, lookup: Lookup, metrics: Metrics) -> None:
        self._lookup = lookup
        self.metrics = metrics
        self.closed = False
        # A full disk fails every request's flush: one line a minute says so, not one a request.
        self._journal_errors = Throttle()

    def close(self) -> None:
        """Refuse every run from now on, with a retry (shutdown has begun)."""
        self.closed = True

    def formats(self, name: str) -> frozenset[str] | None:
        """The webhook formats command ``name`` reads; None when there is no such command."""
        slot = self._lookup(name)
        return None if slot is None else slot.runner.command.formats

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
        slot = self._lookup(name)
        if slot is None:
            return Refused("unknown", f"no command named {name!r}")
        runner = slot.runner
        if reason == "manual":
            return self._accept_manual(name, runner)
        if self.closed:
            # The runners are stopping and would drop it: let the registry redeliver it to
            # the next instance (it retries every non-2xx answer) instead of losing it.
            self.metrics.rejected(name)
            return SHUTTING_DOWN
        command = runner.command
        accepted = [] if command.disable else matching(command.events, events)
        if accepted:
            refused = await self._deliver(slot, accepted)
            if refused is not None:
                self.metrics.rejected(name)
                return refused
        ignored = len(events) - len(accepted) + unmapped
        self.metrics.triggered(name, len(accepted), ignored)
        return Accepted(len(accepted), ignored)

    def refuse(self, name: str, why: BadRequest, detail: str) -> Refused:
        """Answer a request for ``name`` that could not be read; counts it for a known command.

        ``why`` says what was wrong with it, ``detail`` says it to the client in one line.
        """
        if self._lookup(name) is None:
            return Refused("unknown", f"no command named {name!r}")
        self.metrics.rejected(name)
        return SHUTTING_DOWN if self.closed else Refused(why, detail)

    def _accept_manual(self, name: str, runner: Runner) -> Accepted | Refused:
        if runner.command.disable:
            return Refused("disabled", f"{name} is disabled")
        if self.closed:
            return SHUTTING_DOWN
        try:
            runner.send_channel.send_nowait(Trigger("manual"))
        except trio.WouldBlock:
            return BUSY
        log.info("%s: manual run requested", name, extra={"command": name})
        return Accepted()

    async def _deliver(self, slot: CommandSlot, accepted: list[Event]) -> Refused | None:
        name, runner, journal = slot.name, slot.runner, slot.journal
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
            self._journal_errors.log(
                log,
                logging.ERROR,
                "%s: cannot record triggers in %s: %s",
                name,
                journal.path,
                exc.strerror,
            )
            return NOT_DURABLE
        return None
