"""Harbor's webhook payloads: its "Default" JSON, and the ``data`` of its CloudEvents.

A Harbor project webhook POSTs ``{"type", "occur_at", "operator", "event_data"}``
(``Content-Type: application/json``). For artifact events ``event_data`` holds
``repository.repo_full_name`` and ``resources[]``, one per artifact, each with
the manifest ``digest`` and a ``tag``: the artifact's first tag, or its digest
when it has none. In CloudEvents format the same ``event_data`` is the event's
``data`` and the type is ``harbor.artifact.pushed`` and so on.

One request can name thousands of artifacts. Each event's ``raw`` is the request
as Harbor sent it with ``resources`` narrowed to that event's own artifact: a
payload of one resource, which reads like any other, and whose size is the
envelope plus one resource, never the whole request again (a 308 KB request of
2,900 resources once became 889 MB of journal).

A Harbor artifact is always a manifest. Deleting one removes the manifest and
every tag on it, so it maps to a delete by digest, like Distribution's
manifest delete; Harbor sends no event when a single tag is removed.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeGuard

from ..model.event import EnvelopeError, Event, json_size

# Harbor "Default" type -> our action. Anything else is a well-formed event we ignore.
DEFAULT_ACTIONS = {"PUSH_ARTIFACT": "push", "PULL_ARTIFACT": "pull", "DELETE_ARTIFACT": "delete"}
# Harbor's CloudEvents types for the same three events.
CLOUDEVENT_ACTIONS = {
    "harbor.artifact.pushed": "push",
    "harbor.artifact.pulled": "pull",
    "harbor.artifact.deleted": "delete",
}
CLOUDEVENT_PREFIX = "harbor."


def is_default_payload(data: object) -> TypeGuard[dict[str, Any]]:
    """Whether a decoded body has the shape of Harbor's Default payload."""
    return isinstance(data, dict) and isinstance(data.get("type"), str) and "event_data" in data


def default_events(data: dict[str, Any]) -> tuple[list[Event], int]:
    """The events of a Default payload and how many it held that map to no action."""
    action = DEFAULT_ACTIONS.get(data["type"])
    if action is None:
        return [], 1
    return artifact_events(
        action, "event_data", data, where="event_data", event_id=None, format_name="harbor"
    ), 0


def artifact_events(
    action: str,
    data_key: str,
    raw: dict[str, Any],
    *,
    where: str,
    event_id: str | None,
    format_name: str,
) -> list[Event]:
    """One event per ``resources[]`` entry of the artifact event ``raw[data_key]``.

    Each event's ``raw`` is ``raw`` with that entry alone in ``resources``.
    """
    event_data = raw.get(data_key)
    if not isinstance(event_data, dict):
        raise EnvelopeError(f"{where} is not an object")
    repository = _repository(event_data.get("repository"), f"{where}.repository")
    resources = event_data.get("resources")
    if not isinstance(resources, list) or not resources:
        raise EnvelopeError(f'{where} has no "resources" list')
    one_of = _narrowing(raw, data_key, len(resources))
    events = []
    for index, resource in enumerate(resources):
        at = f"{where}.resources[{index}]"
        digest, tag = _resource(resource, at)
        if action == "delete":
            # The whole artifact is gone, every tag on it: a delete by digest. The tag it
            # had stays readable in raw.
            tag = None
        # A CloudEvent's id names the event; one event per resource needs one id each.
        suffix = f"/{index}" if len(resources) > 1 else ""
        events.append(
            Event(
                id=f"{event_id}{suffix}" if event_id is not None else None,
                action=action,
                repository=repository,
                tag=tag,
                media_type=None,
                digest=digest,
                kind="manifest",
                format=format_name,
                **one_of(resource),
            )
        )
    return events


def _narrowing(
    raw: dict[str, Any], data_key: str, count: int
) -> Callable[[object], dict[str, Any]]:
    """A function giving, for one resource, the ``raw`` and ``raw_size`` of its event."""
    if count == 1:
        return lambda resource: {"raw": raw}
    # The envelope is measured once: "resources": [] grows by exactly one resource's JSON.
    envelope = {**raw, data_key: {**raw[data_key], "resources": []}}
    envelope_size = json_size(envelope)

    def one_of(resource: object) -> dict[str, Any]:
        # Shallow copies: every event shares the envelope's values in memory.
        narrowed = {**raw, data_key: {**raw[data_key], "resources": [resource]}}
        return {"raw": narrowed, "raw_size": envelope_size + json_size(resource)}

    return one_of


def _repository(value: object, where: str) -> str:
    if not isinstance(value, dict):
        raise EnvelopeError(f"{where} is not an object")
    name = value.get("repo_full_name")
    if not isinstance(name, str) or not name:
        raise EnvelopeError(f'{where} has no "repo_full_name" string')
    return name


def _resource(value: object, where: str) -> tuple[str, str | None]:
    if not isinstance(value, dict):
        raise EnvelopeError(f"{where} is not an object")
    digest, tag = value.get("digest"), value.get("tag")
    if not isinstance(digest, str) or not digest:
        raise EnvelopeError(f'{where} has no "digest" string')
    if tag is not None and not isinstance(tag, str):
        raise EnvelopeError(f"{where}.tag is not a string")
    # Harbor puts the digest where the tag goes when the artifact has no tag; a real tag
    # cannot hold a colon.
    if not tag or ":" in tag:
        return digest, None
    return digest, tag
