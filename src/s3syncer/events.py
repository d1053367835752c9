"""The one event model: parse Distribution envelopes into it, match it to rules, keep it bounded.

Every webhook format (Distribution here; Harbor and CloudEvents in their own
modules, chosen by :mod:`.formats`) becomes an :class:`Event`: an action
(``push``, ``pull``, ``mount``, ``delete``), a repository and, where the
registry said so, a tag, a digest, a media type and whether the target is a
manifest or a blob. The event as the registry sent it is kept as ``raw``;
:meth:`Event.to_document` is what the events file and the journal hold.

A Distribution registry POSTs an envelope ``{"events": [...]}``; each event
has an ``action`` and a ``target`` naming the repository and, for tagged
manifest pushes, the tag. Parsing is strict about the shape we read.
"""

from __future__ import annotations

import itertools
import json
import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # the replicate tool reads these events too, without the daemon's config
    from .config import EventRule

MAX_EVENTS_PER_RUN = 10_000
# Distribution's own manifest media types; a target with one of them (or a /manifests/ URL)
# is a manifest, anything else a blob.
MANIFEST_MEDIA_TYPES = frozenset(
    {
        "application/vnd.docker.distribution.manifest.v1+json",
        "application/vnd.docker.distribution.manifest.v1+prettyjws",
        "application/vnd.docker.distribution.manifest.v2+json",
        "application/vnd.docker.distribution.manifest.list.v2+json",
        "application/vnd.oci.image.manifest.v1+json",
        "application/vnd.oci.image.index.v1+json",
    }
)


class EnvelopeError(ValueError):
    """The body is not a notification this command accepts; ``str()`` is a one-line reason."""


@dataclass(frozen=True)
class Event:
    """One registry event in the model every format maps to, plus the event as sent.

    ``kind`` is ``"manifest"`` or ``"blob"`` when the format says which (a Harbor
    artifact is always a manifest), None when it does not (a tag delete).
    """

    id: str | None
    action: str
    repository: str
    tag: str | None
    media_type: str | None
    raw: dict[str, Any] = field(repr=False, compare=False)
    digest: str | None = None
    kind: str | None = None
    format: str = "distribution"

    @property
    def tagged(self) -> bool:
        """Whether the event carries a (non-empty) tag."""
        return bool(self.tag)

    def to_document(self) -> dict[str, Any]:
        """The event as the events file and the journal hold it: normalized fields plus ``raw``.

        The normalized part keeps Distribution's shape (``action``, ``target.repository``,
        ``target.tag``, ``target.digest``, ``target.mediaType``), so a command written for
        Distribution events reads any format's the same way; ``raw`` is what was sent.
        A Distribution event also keeps every field it was sent with at the top level
        (``timestamp``, ``request``, ``target.size`` ...): the contract promises those
        events as the registry sent them, and scripts already read them there.
        """
        target: dict[str, str] = {"repository": self.repository}
        for key, value in (
            ("tag", self.tag),
            ("digest", self.digest),
            ("mediaType", self.media_type),
            ("kind", self.kind),
        ):
            if value is not None:
                target[key] = value
        document: dict[str, Any] = {}
        if self.format == "distribution":
            document.update(self.raw)
            sent_target = self.raw.get("target")
            if isinstance(sent_target, dict):
                target = {**sent_target, **target}
        document.update(format=self.format, action=self.action)
        if self.id is not None:
            document["id"] = self.id
        document["target"] = target
        document["raw"] = self.raw
        return document


def event_from_document(index: int, document: object) -> Event:
    """Read back what :meth:`Event.to_document` wrote (or a bare Distribution event, as before)."""
    if not isinstance(document, dict) or "raw" not in document or "format" not in document:
        return parse_event(index, document)
    where = f"events[{index}]"
    raw, format_name = document["raw"], document["format"]
    if not isinstance(raw, dict) or not isinstance(format_name, str):
        raise EnvelopeError(f"{where}: raw must be an object and format a string")
    # The normalized fields have Distribution's shape; read them the same way.
    parsed = parse_event(index, {k: v for k, v in document.items() if k != "raw"})
    kind = document["target"].get("kind")
    if kind is not None and not isinstance(kind, str):
        raise EnvelopeError(f"{where}.target.kind is not a string")
    return Event(
        id=parsed.id,
        action=parsed.action,
        repository=parsed.repository,
        tag=parsed.tag,
        media_type=parsed.media_type,
        raw=raw,
        digest=parsed.digest,
        kind=kind or None,
        format=format_name,
    )


def load_json(body: bytes) -> object:
    """Decode a webhook body as strict JSON (UTF-8, finite numbers), or raise EnvelopeError."""
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
    return data


def parse_envelope(body: bytes) -> list[Event]:
    """Parse a notification body into events, or raise EnvelopeError saying why not."""
    return envelope_events(load_json(body))


def envelope_events(data: object) -> list[Event]:
    """The events of a decoded Distribution envelope, or EnvelopeError saying why not."""
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
    digest = target.get("digest")
    event_id = raw.get("id")
    for name, value in (
        ("repository", repository),
        ("tag", tag),
        ("mediaType", media_type),
        ("digest", digest),
    ):
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
        digest=digest or None,
        kind=_distribution_kind(target),
    )


def _distribution_kind(target: dict[str, Any]) -> str | None:
    url = target.get("url")
    if isinstance(url, str) and "/manifests/" in url:
        return "manifest"
    if isinstance(url, str) and "/blobs/" in url:
        return "blob"
    media_type = target.get("mediaType")
    if isinstance(media_type, str) and media_type:
        return "manifest" if media_type in MANIFEST_MEDIA_TYPES else "blob"
    # A tag delete names neither: it is about a tag, not an object.
    return None


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
    Each event remembers the ``batch`` it came in, so that the journal can
    forget the batches a successful run covered; so does the truncation.
    """

    def __init__(self, limit: int = MAX_EVENTS_PER_RUN) -> None:
        self.limit = limit
        self.truncated = False
        self.oldest_at: float | None = None  # when the oldest was accepted, on the runner's clock
        self._truncated_batch = 0  # the last batch that lost events
        self._events: dict[object, tuple[int, Event]] = {}
        self._anonymous = itertools.count()

    def add(self, event: Event, batch: int = 0) -> None:
        """Keep ``event`` unless its id was seen already or the log is full."""
        key: object = event.id if event.id is not None else ("anonymous", next(self._anonymous))
        if key in self._events:
            return
        if len(self._events) >= self.limit:
            self.mark_truncated(batch)
            return
        self._events[key] = (batch, event)

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
        self.truncated = self._truncated_batch > batch

    def extend(self, events: Iterable[Event], batch: int = 0) -> None:
        """Add each of ``events`` in order."""
        for event in events:
            self.add(event, batch)

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
