"""CNCF Distribution's notification envelope: ``{"events": [...]}``, one event each.

The event shape itself is the model's (:func:`s3syncer.model.event.parse_event`): every
format's events are stored in Distribution's shape.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..model.event import EnvelopeError, Event, parse_event
from ..model.strict_json import load_json

if TYPE_CHECKING:  # the replicate tool reads these events too, without the daemon's config
    pass


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
