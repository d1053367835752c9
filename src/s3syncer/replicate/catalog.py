"""The tags a registry storage holds, from one listing of its ``repositories/`` tree.

``replicate --all`` and ``verify`` start here. The listing never touches ``blobs/`` (the bulk
of a bucket); each tag's digest is one small GET of its ``current/link``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from .layout import Layout
from .plan import read_link
from .sides import Listed, Side, describe

Tag = tuple[str, str]
Mapper = Callable[[Callable[[Tag], str | None], list[Tag], str | None], list[str | None]]


class ListingError(Exception):
    """A side's ``repositories/`` tree cannot be listed; the message names the side and why."""


class EmptySourceError(Exception):
    """The source lists no tag at all while the mirror has some: most likely a wrong root."""


def list_tree(side: Side) -> dict[str, Listed]:
    """Every key of ``side``'s ``repositories/`` tree, its size and ETag; ListingError."""
    try:
        return side.list_objects(side.layout.repositories)
    except Exception as exc:
        raise ListingError(f"cannot list {side}: {describe(exc)}") from exc


def list_tags(side: Side) -> list[Tag]:
    """Every ``(repository, tag)`` with a ``current/link`` on ``side``, sorted; ListingError."""
    return tags_of(side.layout, list_tree(side))


def tags_of(layout: Layout, keys: Iterable[str]) -> list[Tag]:
    """The ``(repository, tag)`` of every ``current/link`` among ``keys``, sorted."""
    found = (layout.tag_of(key) for key in keys)
    return sorted(tag for tag in found if tag is not None)


def read_tags(side: Side, tags: list[Tag], map_: Mapper) -> tuple[dict[Tag, str], dict[Tag, str]]:
    """The digest each tag points at on ``side``, and why the others cannot be read."""
    problems: dict[Tag, str] = {}

    def read(tag: Tag) -> str | None:
        key = side.layout.tag_current_link(*tag)
        try:
            return read_link(side, key)
        except Exception as exc:
            problems[tag] = f"cannot read {side.url(key)}: {describe(exc)}"
            return None

    digests = map_(read, tags, None)
    found = {tag: digest for tag, digest in zip(tags, digests, strict=True) if digest}
    return found, problems
