"""The journal's file: its format, reading it back, and what a restart recovered from it."""

from __future__ import annotations

from dataclasses import dataclass

from ..model.event import Event, event_from_document
from ..model.strict_json import strict_json

FORMAT_VERSION = 1


@dataclass(frozen=True)
class Recovered:
    """What a journal held at start: its events, and whether some were lost or cut.

    ``problem`` says why the file could not be read and where it went, if so.
    ``accepted_at`` is when the oldest was accepted (Unix time), now if unknown.
    """

    events: tuple[Event, ...]
    truncated: bool
    accepted_at: float
    problem: str | None = None

    def describe(self) -> str:
        """One log line's worth: what was found, and what the recovery run will do."""
        if self.problem is not None:
            return f"{self.problem}; running now, covering everything"
        count = len(self.events)
        if self.truncated and not count:
            # Left by an unreadable file or dropped events: there is no count to give.
            found = "a run covering everything was owed and none succeeded before the restart"
            return f"{found}; running now, covering everything"
        found = (
            f"{count} accepted event{' was' if count == 1 else 's were'} not run before the restart"
        )
        if self.truncated:
            found += ", and the list is incomplete"
            return f"{found}; running now, covering everything"
        return f"{found}; running now"


def parse_journal(text: str) -> tuple[list[Event], bool, float | None]:
    """The events, the truncated flag and their oldest accept time in a journal's text.

    ValueError if it holds no journal.
    """
    document = strict_json(text)
    if not isinstance(document, dict):
        raise ValueError("not a JSON object")
    if document.get("version", FORMAT_VERSION) != FORMAT_VERSION:
        raise ValueError(f"unknown version {document['version']!r}")
    raw_events = document.get("events")
    if not isinstance(raw_events, list):
        raise ValueError('no "events" list')
    truncated = document.get("truncated", False)
    if not isinstance(truncated, bool):
        raise ValueError('"truncated" is not true or false')
    # Absent from files written before it was kept, and null when nothing waits.
    accepted_at = document.get("acceptedAt")
    if accepted_at is not None and (
        isinstance(accepted_at, bool) or not isinstance(accepted_at, int | float)
    ):
        raise ValueError('"acceptedAt" is not a number')
    events = [event_from_document(index, raw) for index, raw in enumerate(raw_events)]
    return events, truncated, accepted_at


def describe_read_error(exc: OSError | ValueError) -> str:
    if isinstance(exc, OSError):
        return f"cannot read it: {exc.strerror}"
    if isinstance(exc, UnicodeDecodeError):
        return "not UTF-8 text"
    return str(exc)
