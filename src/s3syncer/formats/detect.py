"""Which webhook format a request is, told from its content type, headers and body shape.

Nothing is guessed: the content type or a ``ce-specversion`` header names the
format, and only ``application/json`` (or no content type) is told apart by
the body's shape: an object with ``events`` is a Distribution envelope, one
with ``type`` and ``event_data`` a Harbor Default payload. Only the formats a
command accepts (``formats:`` in its config) are tried; a body that matches
none of them is refused with the list of formats tried.

======================  ==========================================================
format                  request
======================  ==========================================================
``distribution``        ``application/vnd.docker.distribution.events.v1+json``,
                        ``...v2+json``, or JSON ``{"events": [...]}``
``harbor``              JSON ``{"type": ..., "event_data": {...}}`` (Harbor "Default")
``cloudevents``         ``application/cloudevents+json``, ``...-batch+json``, or
                        ``ce-specversion`` and the other ``ce-*`` headers (binary)
======================  ==========================================================
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass

from ..model.config import FORMATS
from ..model.event import EnvelopeError, Event
from ..model.strict_json import load_json
from . import cloudevents, harbor
from .distribution import envelope_events

DISTRIBUTION_CONTENT_TYPES = frozenset(
    {
        "application/vnd.docker.distribution.events.v1+json",
        "application/vnd.docker.distribution.events.v2+json",
    }
)
JSON = "application/json"
CONTENT_TYPES = DISTRIBUTION_CONTENT_TYPES | {JSON, cloudevents.STRUCTURED, cloudevents.BATCH}
BINARY_MARKER = "ce-specversion"
# What a body of each JSON-shaped format looks like, for the refusal's reason.
SHAPES = {"distribution": '{"events": [...]}', "harbor": '{"type": ..., "event_data": {...}}'}


HTTP_WHITESPACE = " \t"


class UnsupportedContentTypeError(Exception):
    """The request's content type is one no format uses; ``str()`` is a one-line reason."""


@dataclass(frozen=True)
class Notification:
    """What one request said: its events, and how many of its notifications map to none."""

    events: list[Event]
    unmapped: int = 0


def media_type(headers: Mapping[str, str]) -> str:
    """The request's media type, lower case, without parameters; "" when it sent none."""
    # HTTP's optional white space is space and tab: str.strip() would also drop control
    # characters such as \x1e and take a garbage content type for none at all.
    return headers.get("content-type", "").split(";", 1)[0].strip(HTTP_WHITESPACE).lower()


def check_content_type(headers: Mapping[str, str]) -> None:
    """Refuse, before reading the body, a content type that no format uses."""
    if BINARY_MARKER in headers:
        return  # binary mode: the content type is the data's own, checked with the body
    kind = media_type(headers)
    if kind and kind not in CONTENT_TYPES:
        raise UnsupportedContentTypeError(f"unsupported content type {kind!r}")


def parse_request(
    headers: Mapping[str, str], body: bytes, formats: Collection[str] = FORMATS
) -> Notification:
    """The notification in a request, in one of ``formats``, or EnvelopeError saying why not.

    ``headers`` maps lower-case header names to values.
    """
    kind = media_type(headers)
    if BINARY_MARKER in headers or kind in (cloudevents.STRUCTURED, cloudevents.BATCH):
        _require("cloudevents", formats, "a CloudEvents request")
        # The HTTP binding: the content type names the structured and batched modes; any
        # other request with ce-* headers is in binary mode.
        if kind == cloudevents.STRUCTURED:
            events, unmapped = cloudevents.structured_events(body)
        elif kind == cloudevents.BATCH:
            events, unmapped = cloudevents.batch_events(body)
        else:
            events, unmapped = cloudevents.binary_events(headers, body)
        return Notification(events, unmapped)
    if kind in DISTRIBUTION_CONTENT_TYPES:
        _require("distribution", formats, f"a Distribution envelope ({kind})")
        return Notification(envelope_events(load_json(body)))
    return _by_shape(load_json(body), formats)


def _by_shape(data: object, formats: Collection[str]) -> Notification:
    tried = [name for name in FORMATS if name in formats and name != "cloudevents"]
    if not tried:
        raise EnvelopeError(
            "a JSON body without a CloudEvents content type or ce-* headers, "
            "and this command accepts only cloudevents"
        )
    envelope = "distribution" in tried and isinstance(data, dict) and "events" in data
    if "harbor" in tried and harbor.is_default_payload(data):
        if envelope:
            raise EnvelopeError("body is both a Distribution envelope and a Harbor payload")
        events, unmapped = harbor.default_events(data)
        return Notification(events, unmapped)
    if envelope:
        return Notification(envelope_events(data))
    wanted = " or ".join(SHAPES[name] for name in tried)
    raise EnvelopeError(
        f"body matches none of the formats tried ({', '.join(tried)}): expected {wanted}"
    )


def _require(name: str, formats: Collection[str], what: str) -> None:
    if name not in formats:
        accepted = ", ".join(f for f in FORMATS if f in formats)
        raise EnvelopeError(f"{what}, and this command accepts only: {accepted}")
