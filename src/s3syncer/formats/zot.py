"""zot's events extension: the ``data`` of the CloudEvents it sends.

zot sends one CloudEvent per registry change, in binary mode over HTTP. Its
types are ``<typePrefix>.image.updated``, ``.image.deleted``,
``.image.lint_failed``, ``.image.scanned`` and ``.repository.created``, where
``typePrefix`` is ``zotregistry`` unless the operator set another. The data of
the image events is ``{"name", "reference", "digest", "mediaType"}``:
``reference`` is the tag, or the digest for a push or delete by digest.
"""

from __future__ import annotations

from typing import Any

from ..model.event import EnvelopeError, Event

# Type suffix (after typePrefix) -> our action; the other zot types are ignored.
ACTIONS = {"image.updated": "push", "image.deleted": "delete"}
# Every type zot documents, so that its events are told apart from unknown types.
KNOWN_SUFFIXES = frozenset(
    {"image.updated", "image.deleted", "image.lint_failed", "image.scanned", "repository.created"}
)


def type_suffix(event_type: str) -> str | None:
    """The zot event type without its prefix, or None when it is not one of zot's."""
    for suffix in KNOWN_SUFFIXES:
        if event_type == suffix or event_type.endswith("." + suffix):
            return suffix
    return None


def image_event(action: str, data: object, raw: dict[str, Any], where: str, event_id: str) -> Event:
    """The event an ``image.updated`` or ``image.deleted`` CloudEvent stands for."""
    if not isinstance(data, dict):
        raise EnvelopeError(f"{where} is not an object")
    fields: dict[str, str | None] = {}
    for name in ("name", "reference", "digest", "mediaType"):
        value = data.get(name)
        if value is not None and not isinstance(value, str):
            raise EnvelopeError(f"{where}.{name} is not a string")
        fields[name] = value or None
    if fields["name"] is None:
        raise EnvelopeError(f'{where} has no "name" string')
    reference = fields["reference"]
    # A reference with a colon is a digest: the push or delete was by digest.
    tag = reference if reference is not None and ":" not in reference else None
    digest = fields["digest"] or (reference if tag is None else None)
    return Event(
        id=event_id,
        action=action,
        repository=fields["name"],
        tag=tag,
        media_type=fields["mediaType"],
        raw=raw,
        digest=digest,
        # A zot image event is about a manifest, except a tag delete, which is about a tag.
        kind=None if action == "delete" and tag is not None else "manifest",
        format="cloudevents",
    )
