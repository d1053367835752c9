"""The events one pending run covers: arrival order, de-duplicated by id, bounded."""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any

from .event import Event

if TYPE_CHECKING:  # the replicate tool reads these events too, without the daemon's config
    pass


MAX_EVENTS_PER_RUN = 10_000
# Bytes of events (as the events file holds them) a pending run keeps: ten thousand
# ordinary events fit; three hundred 1 MiB ones do not, and the run syncs everything.
MAX_EVENT_BYTES = 16 * 1024 * 1024


class EventLog:
    """The events a pending run covers: arrival order, de-duplicated by id, bounded.

    The registry resends an event with the same id when a delivery failed, so
    an id seen before is dropped. Past ``limit`` events or ``max_bytes`` bytes of
    them (:attr:`Event.size`), new ones are not kept and ``truncated`` says so:
    memory stays bounded whatever arrives, and a command that sees ``truncated``
    knows to sync everything.
    Each event remembers the ``batch`` it came in, so that the journal can
    forget the batches a successful run covered; so does the truncation.
    """

    def __init__(self, limit: int = MAX_EVENTS_PER_RUN, max_bytes: int = MAX_EVENT_BYTES) -> None:
        self.limit = limit
        self.max_bytes = max_bytes
        self.bytes = 0  # the kept events' sizes
        self.truncated = False
        self.oldest_at: float | None = None  # when the oldest was accepted, on the runner's clock
        self._truncated_batch = 0  # the last batch that lost events
        self._events: dict[object, tuple[int, Event]] = {}
        self._anonymous = itertools.count()

    def add(self, event: Event, batch: int = 0) -> bool:
        """Keep ``event`` unless its id was seen already or the log is full; say if kept."""
        key: object = event.id if event.id is not None else ("anonymous", next(self._anonymous))
        if key in self._events:
            return False
        if len(self._events) >= self.limit or self.bytes + event.size > self.max_bytes:
            self.mark_truncated(batch)
            return False
        self._events[key] = (batch, event)
        self.bytes += event.size
        return True

    @property
    def truncated_batch(self) -> int:
        """The last batch that lost events (0 if none did)."""
        return self._truncated_batch

    def mark_truncated(self, batch: int = 0) -> None:
        """Say that events of ``batch`` are not all here: a run must sync everything."""
        self.truncated = True
        self._truncated_batch = max(self._truncated_batch, batch)

    def forget_through(self, batch: int) -> None:
        """Drop the events of batches up to ``batch``: a successful run covered them.

        That run was told the list was incomplete if it was, and synced everything,
        so the flag goes too, unless a later batch lost events.
        """
        self._events = {key: kept for key, kept in self._events.items() if kept[0] > batch}
        self.bytes = sum(event.size for _, event in self._events.values())
        self.truncated = self._truncated_batch > batch

    def extend(self, events: Iterable[Event], batch: int = 0) -> list[Event]:
        """Add each of ``events`` in order; return those kept."""
        return [event for event in events if self.add(event, batch)]

    def accepted_at(self, when: float) -> None:
        """Note that events added now were accepted at ``when`` (on the caller's clock)."""
        if self.oldest_at is None or when < self.oldest_at:
            self.oldest_at = when

    def merge(self, other: EventLog) -> None:
        """Add the events of ``other`` after ours, keeping its truncation and its age."""
        self.extend(other)
        if other.truncated:
            self.mark_truncated(other._truncated_batch)
        if other.oldest_at is not None:
            self.accepted_at(other.oldest_at)

    def __len__(self) -> int:
        return len(self._events)

    def __iter__(self) -> Iterator[Event]:
        return (event for _, event in self._events.values())

    def to_json(self, command: str, reason: str) -> dict[str, Any]:
        """The events file's document: ``{"command", "reason", "events", "truncated"}``."""
        return {
            "command": command,
            "reason": reason,
            "events": [event.to_document() for event in self],
            "truncated": self.truncated,
        }
