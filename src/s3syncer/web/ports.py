"""What the web layer is handed: the commands' inbox, and the daemon as the probes see it.

The daemon implements both and passes them to :func:`~s3syncer.web.app.create_app`; the web
layer imports nothing of the daemon's, so a test can serve the app on fakes.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal, Protocol

from ..model.answers import Accepted, BadRequest, Refused
from ..model.command_view import CommandView
from ..model.event import Event


class Inbox(Protocol):
    """Where a request for a command goes: never waits on the command itself."""

    def formats(self, name: str) -> frozenset[str] | None:
        """The webhook formats command ``name`` reads; None when there is no such command."""

    async def accept(
        self,
        name: str,
        events: Sequence[Event],
        reason: Literal["event", "manual"],
        *,
        unmapped: int = 0,
    ) -> Accepted | Refused:
        """Take a webhook's events, or a manual run, for command ``name``."""

    def refuse(self, name: str, why: BadRequest, detail: str) -> Refused:
        """Count and answer a request for ``name`` that could not be read."""


class Daemon(Protocol):
    """What the probes, ``/metrics``, ``/status`` and the page read of the daemon."""

    @property
    def ready(self) -> bool:
        """Every runner is up and no shutdown has begun."""

    @property
    def shutting_down(self) -> bool:
        """A shutdown has begun."""

    def views(self) -> list[CommandView]:
        """Each configured command, as status shows it, in configuration order."""

    async def views_in_slices(self) -> list[CommandView]:
        """:meth:`views`, with a checkpoint every few hundred commands: at 10,000 commands
        taking them all at once held every trigger up."""

    async def metrics_text(self) -> bytes:
        """The Prometheus text exposition, made without holding the event loop for long."""
