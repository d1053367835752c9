"""The tags a registry storage holds, from one listing of its ``repositories/`` tree.

``replicate --all`` and ``verify`` start here. The listing never touches ``blobs/`` (the bulk
of a bucket); each tag's digest is one small GET of its ``current/link``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from .cache import ClosureCache
from .layout import Layout
from .listing import Listed, ListedTree
from .plan import MAX_LINK_BYTES, parse_link
from .sides import Side, describe

Tag = tuple[str, str]
Mapper = Callable[[Callable[[Tag], str | None], list[Tag], str | None], list[str | None]]


class ListingError(Exception):
    """A side's ``repositories/`` tree cannot be listed; the message names the side and why."""


class EmptySourceError(Exception):
    """The source lists no tag at all while the mirror has some: most likely a wrong root."""


def list_tree(side: Side, keep: Callable[[str], bool] | None = None) -> ListedTree:
    """Every key of ``side``'s ``repositories/`` tree (those ``keep`` keeps, if given), its
    size and ETag; ListingError."""
    try:
        return side.list_objects(side.layout.repositories, keep)
    except Exception as exc:
        raise ListingError(f"cannot list {side}: {describe(exc)}") from exc


def list_blobs(side: Side) -> ListedTree:
    """Every key of ``side``'s ``blobs/`` tree, its size and ETag; ListingError.

    About a thousand keys a request: a full pass learns every blob's size and ETag from a few
    requests, where a HEAD per blob costs one each and shows one side only.
    """
    try:
        return side.list_objects(f"{side.layout.base}/blobs/")
    except Exception as exc:
        raise ListingError(f"cannot list {side}: {describe(exc)}") from exc


def list_in_parallel(listings: Sequence[Callable[[], ListedTree]]) -> list[ListedTree]:
    """Run the ``listings`` at once, one thread each: a pass costs the longest, not the sum."""
    with ThreadPoolExecutor(max_workers=max(1, len(listings)), thread_name_prefix="list") as ex:
        futures = [ex.submit(listing) for listing in listings]
        return [future.result() for future in futures]


@dataclass(frozen=True)
class Listings:
    """Both sides' ``repositories/`` and ``blobs/`` trees: what a full pass or a proof starts
    from, taken at once; each a read-only mapping of key to :class:`Listed`, in key order.

    Of the source's ``repositories/`` tree, only what a run reads is kept: the tags'
    ``current/link`` keys, and its revision links for the sweep (``source_revisions``). Its
    layer and index links, most of its keys, are read by nothing.
    """

    source_tree: Mapping[str, Listed]
    dest_tree: Mapping[str, Listed]
    source_blobs: Mapping[str, Listed]
    dest_blobs: Mapping[str, Listed]


def list_both(source: Side, dest: Side, *, source_revisions: bool = False) -> Listings:
    """The four trees of :class:`Listings`, listed in parallel; ListingError."""
    layout = source.layout

    def read_by_a_run(key: str) -> bool:
        if layout.tag_of(key) is not None:
            return True
        return (
            source_revisions
            and (found := layout.linked(key)) is not None
            and (found[0] == "revision")
        )

    return Listings(
        *list_in_parallel(
            [
                lambda: list_tree(source, read_by_a_run),
                lambda: list_tree(dest),
                lambda: list_blobs(source),
                lambda: list_blobs(dest),
            ]
        )
    )


def tags_of(layout: Layout, keys: Iterable[str]) -> list[Tag]:
    """The ``(repository, tag)`` of every ``current/link`` among ``keys``, sorted."""
    found = (layout.tag_of(key) for key in keys)
    return sorted(tag for tag in found if tag is not None)


def read_tags(
    side: Side,
    tags: list[Tag],
    map_: Mapper,
    tree: Mapping[str, Listed] | None = None,
    cache: ClosureCache | None = None,
) -> tuple[dict[Tag, str], dict[Tag, str]]:
    """The digest each tag points at on ``side``, and why the others cannot be read.

    With the side's listed ``tree`` and a ``cache``, a link whose plain ETag (the MD5 of its
    bytes) the cache knows is not read: its digest is known.
    """
    problems: dict[Tag, str] = {}

    def read(tag: Tag) -> str | None:
        key = side.layout.tag_current_link(*tag)
        listed = tree.get(key) if tree is not None else None
        if cache is not None and listed is not None and (known := cache.link(listed.etag)):
            return known
        try:
            data = side.read_small(key, MAX_LINK_BYTES)
            digest = parse_link(data)
        except Exception as exc:
            problems[tag] = f"cannot read {side.url(key)}: {describe(exc)}"
            return None
        if cache is not None and data == digest.encode():  # exactly a digest, as written
            cache.put_link(hashlib.md5(data, usedforsecurity=False).hexdigest(), digest)
        return digest

    digests = map_(read, tags, None)
    found = {tag: digest for tag, digest in zip(tags, digests, strict=True) if digest}
    return found, problems
