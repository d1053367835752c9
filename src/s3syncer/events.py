"""Registry notification envelopes: parse them, match them to rules, and keep them bounded.

A Distribution registry POSTs an envelope ``{"events": [...]}``; each event
has an ``action`` and a ``target`` naming the repository and, for tagged
manifest pushes, the tag. Parsing is strict about the shape we read and keeps
every event exactly as it was sent, for the command's events file.
"""

from __future__ import annotations

import itertools
import json
import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from typing import Any

from .config import EventRule

MAX_EVENTS_PER_RUN = 10_000
ENVELOPE_CONTENT_TYPES = frozenset(
    {
        "application/vnd.docker.distribution.events.v1+json",
        "application/vnd.docker.distribution.events.v2+json",
        "application/json",
    }
)


class EnvelopeError(ValueError):
    """The body is not a registry notification envelope; ``str()`` is a one-line reason."""


@dataclass(frozen=True)
class Event:
    """The fields of one registry event that rules look at, plus the event as sent."""

    id: str | None
    action: str
    repository: str
    tag: str | None
    media_type: str | None
    raw: dict[str, Any] = field(repr=False, compare=False)

    @property
    def tagged(self) -> bool:
        """Whether the event carries a (non-empty) tag."""
        return bool(self.tag)


def parse_envelope(body: bytes) -> list[Event]:
    """Parse a notification body into events, or raise EnvelopeError saying why not."""
    try:
        # Decode ourselves: json.loads(bytes) would also guess UTF-16 and UTF-32,
        # and registries send UTF-8 (RFC 8259). A leading BOM is tolerated.
        text = body.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise EnvelopeError("body is not UTF-8 text") from None
    try:
        data = strict_json(text)
    except ValueError as exc:
        raise EnvelopeError(f"body is not JSON: {exc}") from None
    if not isinstance(data, dict):
        raise EnvelopeError("body is not a notification envelope: expected a JSON object")
    raw_events = data.get("events")
    if not isinstance(raw_events, list):
        raise EnvelopeError('body is not a notification envelope: "events" must be a list')
    return [parse_event(index, raw) for index, raw in enumerate(raw_events)]


def strict_json(text: str) -> Any:
    """Parse ``text`` as RFC 8259 JSON, or raise ValueError with a one-line reason.

    Stricter than ``json.loads``: no NaN or Infinity, no number too large for a float,
    and nesting too deep for the parser is a ValueError too, not a RecursionError.
    Whatever it returns, ``json.dump`` writes back as JSON that strict parsers accept.
    """
    try:
        return json.loads(text, parse_float=_finite_float, parse_constant=_no_constant)
    except RecursionError:
        raise ValueError("nested too deeply") from None
    except ValueError as exc:
        # JSONDecodeError, or e.g. an integer longer than Python's digit limit.
        reason = exc.msg if isinstance(exc, json.JSONDecodeError) else str(exc).splitlines()[0]
        raise ValueError(reason) from None


def _finite_float(text: str) -> float:
    # 1e400 is valid JSON but becomes float("inf"), which json.dump writes as Infinity:
    # the events file would no longer be JSON, for the command or for any later run the
    # event is carried into. Refuse it here, where the sender hears why.
    value = float(text)
    if not math.isfinite(value):
        raise ValueError("a number is out of range")
    return value


def _no_constant(name: str) -> float:
    # Python's json reads NaN, Infinity and -Infinity, which are not JSON (RFC 8259) and
    # would be written back into the events file as such.
    raise ValueError(f"{name} is not a JSON value")


def parse_event(index: int, raw: object) -> Event:
    """Parse the event at ``events[index]``, or raise EnvelopeError naming that index."""
    where = f"events[{index}]"
    if not isinstance(raw, dict):
        raise EnvelopeError(f"{where} is not an object")
    action = raw.get("action")
    if not isinstance(action, str):
        raise EnvelopeError(f'{where} has no "action" string')
    target = raw.get("target")
    if not isinstance(target, dict):
        raise EnvelopeError(f'{where} has no "target" object')
    repository = target.get("repository", "")
    tag = target.get("tag")
    media_type = target.get("mediaType")
    event_id = raw.get("id")
    for name, value in (("repository", repository), ("tag", tag), ("mediaType", media_type)):
        if value is not None and not isinstance(value, str):
            raise EnvelopeError(f"{where}.target.{name} is not a string")
    if event_id is not None and not isinstance(event_id, str):
        raise EnvelopeError(f"{where}.id is not a string")
    return Event(
        id=event_id or None,
        action=action,
        repository=repository or "",
        tag=tag or None,
        media_type=media_type or None,
        raw=raw,
    )


def rule_matches(rule: EventRule, event: Event) -> bool:
    """Whether every field that ``rule`` names matches ``event``, and its ``unless`` does not."""
    if rule.action is not None and rule.action != event.action:
        return False
    if rule.tagged is not None and rule.tagged != event.tagged:
        return False
    if rule.repository is not None and not fnmatchcase(event.repository, rule.repository):
        return False
    if rule.tag is not None and not fnmatchcase(event.tag or "", rule.tag):
        return False
    if rule.media_type is not None and not fnmatchcase(event.media_type or "", rule.media_type):
        return False
    return rule.unless is None or not rule_matches(rule.unless, event)


def matching(rules: Iterable[EventRule], events: Iterable[Event]) -> list[Event]:
    """The events that at least one of ``rules`` matches, in order."""
    rules = tuple(rules)
    return [event for event in events if any(rule_matches(rule, event) for rule in rules)]


class EventLog:
    """The events a pending run covers: arrival order, de-duplicated by id, bounded.

    The registry resends an event with the same id when a delivery failed, so
    an id seen before is dropped. Past ``limit`` events, new ones are counted
    but not kept and ``truncated`` says so: memory stays bounded whatever
    arrives, and a command that sees ``truncated`` knows to sync everything.
    """

    def __init__(self, limit: int = MAX_EVENTS_PER_RUN) -> None:
        self.limit = limit
        self.truncated = False
        self._events: dict[object, Event] = {}
        self._anonymous = itertools.count()

    def add(self, event: Event) -> None:
        """Keep ``event`` unless its id was seen already or the log is full."""
        key: object = event.id if event.id is not None else ("anonymous", next(self._anonymous))
        if key in self._events:
            return
        if len(self._events) >= self.limit:
            self.truncated = True
            return
        self._events[key] = event

    def extend(self, events: Iterable[Event]) -> None:
        """Add each of ``events`` in order."""
        for event in events:
            self.add(event)

    def merge(self, other: EventLog) -> None:
        """Add the events of ``other`` after ours, keeping its truncation."""
        self.extend(other)
        self.truncated = self.truncated or other.truncated

    def __len__(self) -> int:
        return len(self._events)

    def __iter__(self) -> Iterator[Event]:
        return iter(self._events.values())

    def to_json(self, command: str, reason: str) -> dict[str, Any]:
        """The events file's document: ``{"command", "reason", "events", "truncated"}``."""
        return {
            "command": command,
            "reason": reason,
            "events": [event.raw for event in self],
            "truncated": self.truncated,
        }
