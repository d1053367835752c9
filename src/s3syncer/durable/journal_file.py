"""The journal's file: its format, reading it back, and what a restart recovered from it.

The file is JSON lines, appended to. Its first line may be a snapshot, the whole journal
as one document (the format of the versions before, which wrote nothing else):
``{"version": 1, "events": [...], "truncated", "acceptedAt", "savedAt", "seq"}``. Every
other line is a record of one change:

* ``{"batch": N, "at": T, "events": [...], "truncated": bool}``: the events one request
  added (those kept: not resends, within the budget), accepted at Unix time ``T``;
  ``truncated`` when it lost some;
* ``{"settle": N}``: a run covering batches up to ``N`` succeeded.

A webhook appends its batch, so its cost is that of its own events, whatever is pending.
The file is replaced whole by a snapshot (compacted) when a write fails, when it has
grown to twice what it holds plus a floor, and after a restart; it is removed when
nothing is pending. A crash in the middle of an append leaves a last line without its
newline: that request was never answered 200, and the line is skipped.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from ..model.event import Event, event_from_document
from ..model.event_log import MAX_EVENT_BYTES
from ..model.strict_json import strict_json

FORMAT_VERSION = 1
# No line we write is longer: a snapshot or a batch holds at most the byte budget of events.
# Reading a line at a time keeps a restart's memory bounded, whatever the file holds.
MAX_LINE_BYTES = 2 * MAX_EVENT_BYTES + 1024 * 1024
# How every appended line starts (compact JSON keeps the key order it is given).
_RECORD_STARTS = ('{"batch":', '{"settle":')


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


@dataclass(frozen=True)
class Batch:
    """Events recorded together (a snapshot is one batch too), as read back from the file."""

    seq: int
    events: list[Event]
    truncated: bool
    at: float | None


@dataclass(frozen=True)
class Settle:
    """A run covering batches up to ``seq`` succeeded."""

    seq: int


def read_records(lines: Iterable[str]) -> Iterator[Batch | Settle]:
    """The records of a journal's lines, in order; ValueError if it holds no journal."""
    previous: str | None = None
    first = True
    for line in lines:
        if previous is not None:
            yield _parse_line(previous, first)
            first = False
        previous = line
    if previous is None:
        return
    try:
        yield _parse_line(previous, first)
    except ValueError:
        if previous.endswith("\n") or not previous.startswith(_RECORD_STARTS):
            raise
        # Torn: a crash cut this append short, before its fsync and so before any 200.
        # (A snapshot is never torn: it replaces the file whole.)


def snapshot_document(
    events: Iterable[Event], truncated: bool, accepted_at: float | None, seq: int, saved_at: float
) -> dict[str, Any]:
    """The snapshot line: the whole journal, in the format the versions before wrote."""
    return {
        "version": FORMAT_VERSION,
        "events": [event.to_document() for event in events],
        "truncated": truncated,
        "acceptedAt": accepted_at,
        "savedAt": saved_at,
        "seq": seq,
    }


def batch_document(seq: int, at: float, events: Iterable[Event], truncated: bool) -> dict[str, Any]:
    """The line one batch appends."""
    return {
        "batch": seq,
        "at": at,
        "events": [event.to_document() for event in events],
        "truncated": truncated,
    }


def _parse_line(line: str, first: bool) -> Batch | Settle:
    document = strict_json(line)
    if not isinstance(document, dict):
        raise ValueError("not a JSON object")
    if "settle" in document:
        return Settle(_whole_number(document, "settle"))
    if "batch" in document:
        at = _number(document, "at")
        return Batch(_whole_number(document, "batch"), *_events(document), at)
    if not first:
        raise ValueError("a snapshot after the first line")
    return _snapshot(document)


def _snapshot(document: dict[str, Any]) -> Batch:
    if document.get("version", FORMAT_VERSION) != FORMAT_VERSION:
        raise ValueError(f"unknown version {document['version']!r}")
    # Absent from files written before they were kept; acceptedAt is null when nothing waits.
    seq = _whole_number(document, "seq") if "seq" in document else 0
    return Batch(seq, *_events(document), _number(document, "acceptedAt"))


def _events(document: dict[str, Any]) -> tuple[list[Event], bool]:
    raw_events = document.get("events")
    if not isinstance(raw_events, list):
        raise ValueError('no "events" list')
    truncated = document.get("truncated", False)
    if not isinstance(truncated, bool):
        raise ValueError('"truncated" is not true or false')
    return [event_from_document(index, raw) for index, raw in enumerate(raw_events)], truncated


def _number(document: dict[str, Any], name: str) -> float | None:
    value = document.get(name)
    if value is not None and (isinstance(value, bool) or not isinstance(value, int | float)):
        raise ValueError(f'"{name}" is not a number')
    return value


def _whole_number(document: dict[str, Any], name: str) -> int:
    value = document[name]
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f'"{name}" is not a batch number')
    return value


def describe_read_error(exc: OSError | ValueError) -> str:
    """Why a journal could not be read, for the warning that says where it went."""
    if isinstance(exc, OSError):
        return f"cannot read it: {exc.strerror}"
    if isinstance(exc, UnicodeDecodeError):
        return "not UTF-8 text"
    return str(exc)
