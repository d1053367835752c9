"""CloudEvents 1.0 over HTTP: structured, batched and binary content modes.

* structured: ``Content-Type: application/cloudevents+json``, the body is one
  event as a JSON object (Harbor's "CloudEvents" payload format);
* batched: ``application/cloudevents-batch+json``, the body is a JSON array of them;
* binary: the attributes are ``ce-*`` headers and the body is the event's
  ``data`` (zot's events extension).

Each event's ``type`` says what it is: Harbor's ``harbor.artifact.*`` and zot's
``*.image.*`` are mapped to events (:mod:`.harbor`, :mod:`.zot`); every other
type is a well-formed event that maps to no action and is counted as ignored.
Whatever the mode, ``raw`` is the event in structured form, attributes and
``data`` together, so the command sees everything that was sent; a Harbor event
of many artifacts gives each of its events that document with
``data.resources`` narrowed to its own artifact (see :mod:`.harbor`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import unquote

from ..model.event import EnvelopeError, Event
from ..model.strict_json import load_json
from . import harbor, zot

STRUCTURED = "application/cloudevents+json"
BATCH = "application/cloudevents-batch+json"
HEADER_PREFIX = "ce-"
REQUIRED = ("specversion", "id", "source", "type")
SPEC_VERSION = "1.0"


def structured_events(body: bytes) -> tuple[list[Event], int]:
    """The events of one structured-mode CloudEvent and how many map to no action."""
    return event_events(load_json(body), "body")


def batch_events(body: bytes) -> tuple[list[Event], int]:
    """The events of a batch: a JSON array of structured CloudEvents."""
    data = load_json(body)
    if not isinstance(data, list):
        raise EnvelopeError("body is not a CloudEvents batch: expected a JSON array")
    events: list[Event] = []
    unmapped = 0
    for index, item in enumerate(data):
        mapped, ignored = event_events(item, f"body[{index}]")
        events.extend(mapped)
        unmapped += ignored
    return events, unmapped


def binary_events(headers: Mapping[str, str], body: bytes) -> tuple[list[Event], int]:
    """The events of a binary-mode CloudEvent: attributes in ``ce-*`` headers, data in the body.

    ``headers`` maps lower-case header names to their values.
    """
    attributes: dict[str, Any] = {}
    for name, value in headers.items():
        if name.startswith(HEADER_PREFIX) and len(name) > len(HEADER_PREFIX):
            # The HTTP binding percent-encodes what a header value cannot carry.
            try:
                attributes[name[len(HEADER_PREFIX) :]] = unquote(value, errors="strict")
            except UnicodeDecodeError:
                raise EnvelopeError(f"header {name} is not percent-encoded UTF-8") from None
    content_type = headers.get("content-type")
    if content_type is not None:
        attributes["datacontenttype"] = content_type
    if body:
        media_type = (content_type or "application/json").split(";", 1)[0].strip(" \t").lower()
        if media_type != "application/json" and not media_type.endswith("+json"):
            raise EnvelopeError(
                f"CloudEvent data of type {media_type!r}: only JSON data is understood"
            )
        attributes["data"] = load_json(body)
    return event_events(attributes, "request (binary mode)", data_where="body")


def event_events(
    document: object, where: str, *, data_where: str | None = None
) -> tuple[list[Event], int]:
    """Map one CloudEvent (structured form) to events, or count it as mapping to none.

    ``where`` names the event in a refusal's reason, ``data_where`` its data (default
    ``where.data``).
    """
    if not isinstance(document, dict):
        raise EnvelopeError(f"{where} is not a CloudEvent: expected a JSON object")
    for name in REQUIRED:
        value = document.get(name)
        if not isinstance(value, str) or not value:
            raise EnvelopeError(f'{where} is not a CloudEvent: no "{name}" string')
    if document["specversion"] != SPEC_VERSION:
        raise EnvelopeError(
            f"{where}: CloudEvents specversion {document['specversion']!r} is not {SPEC_VERSION}"
        )
    event_type: str = document["type"]
    event_id: str = document["id"]
    data = document.get("data")
    data_where = data_where or f"{where}.data"
    if event_type.startswith(harbor.CLOUDEVENT_PREFIX):
        action = harbor.CLOUDEVENT_ACTIONS.get(event_type)
        if action is None:
            return [], 1
        events = harbor.artifact_events(
            action,
            "data",
            document,
            where=data_where,
            event_id=event_id,
            format_name="cloudevents",
        )
        return events, 0
    suffix = zot.type_suffix(event_type)
    if suffix is not None and suffix in zot.ACTIONS:
        return [zot.image_event(zot.ACTIONS[suffix], data, document, data_where, event_id)], 0
    return [], 1
