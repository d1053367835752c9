"""The one event model: parse Distribution envelopes into it, match it to rules, keep it bounded.

Every webhook format (Distribution here; Harbor and CloudEvents in their own
modules, chosen by :mod:`s3syncer.formats.detect`) becomes an :class:`Event`: an action
(``push``, ``pull``, ``mount``, ``delete``), a repository and, where the
registry said so, a tag, a digest, a media type and whether the target is a
manifest or a blob. The event as the registry sent it is kept as ``raw``;
:meth:`Event.to_document` is what the events file and the journal hold.

A Distribution registry POSTs an envelope ``{"events": [...]}``; each event
has an ``action`` and a ``target`` naming the repository and, for tagged
manifest pushes, the tag. Parsing is strict about the shape we read.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # the replicate tool reads these events too, without the daemon's config
    pass

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
    raw_size: int | None = field(default=None, repr=False, compare=False)

    @cached_property
    def size(self) -> int:
        """Bytes of :meth:`to_document` as compact JSON: what budgets count, never a count."""
        document = self.to_document()
        document["raw"] = None
        raw_size = self.raw_size if self.raw_size is not None else json_size(self.raw)
        return json_size(document) - len("null") + raw_size

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


def json_size(value: object) -> int:
    """The length of ``value`` as compact ASCII JSON, as the state files and events file hold it."""
    return len(json.dumps(value, separators=(",", ":")))


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
