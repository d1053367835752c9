"""A wrong root is named: a side whose root holds no registry, in a bucket that holds one.

``--source s3://registry`` with the registry under ``/reg`` lists no tag, so a full pass copies
nothing and says "ok", and a verify proves nothing and says "complete", every night. Before
either trusts an empty side, one request asks whether its root holds ``docker/registry/v2/``;
when it does not, a few delimiter listings look for one elsewhere in the bucket, and the tool
stops naming it: "did you mean s3://BUCKET/PREFIX".

A bucket that holds no registry at all is a registry nothing was pushed to yet: no error.
"""

from __future__ import annotations

import difflib

from .catalog import ListingError
from .layout import V2_PREFIX
from .sides import Side, describe

MAX_DEPTH = 4  # prefixes deep a registry's root is looked for (``a/b/c/d/docker/...``)
MAX_LISTINGS = 50  # delimiter listings spent looking, at most
MAX_FOUND = 100  # roots found, at most, before the closest are named
MAX_NAMED = 3  # roots a message names: the closest to the root given


class WrongRootError(Exception):
    """A side's root holds no registry, but its bucket does elsewhere: the message names it."""


def check_root(side: Side) -> None:
    """Raise WrongRootError when ``side``'s root has no registry and its bucket has one.

    ListingError when the side cannot be listed (the message names the side and why).
    """
    try:
        if side.has_keys(f"{side.layout.base}/"):
            return
        found = find_roots(side)
    except Exception as exc:
        raise ListingError(f"cannot list {side}: {describe(exc)}") from exc
    if found:
        found = _closest(side.location.root, found)
        names = " or ".join(
            f"s3://{side.bucket}/{root}" if root else f"s3://{side.bucket}" for root in found
        )
        raise WrongRootError(
            f"{side} holds no registry (nothing under {side.layout.base}/), but its bucket "
            f"does: did you mean {names}?"
        )


def find_roots(side: Side) -> list[str]:
    """Roots of ``side``'s bucket that hold ``docker/registry/v2/``, breadth first, a few."""
    found: list[str] = []
    level, listings = [""], 0
    for _depth in range(MAX_DEPTH + 1):
        deeper: list[str] = []
        for prefix in level:
            if listings >= MAX_LISTINGS or len(found) >= MAX_FOUND:
                return found
            listings += 1
            for child in _children(side, prefix):
                if child.endswith("/docker/") or child == "docker/":
                    listings += 1
                    if side.has_keys(f"{child}{V2_PREFIX.partition('/')[2]}/"):
                        found.append(child[: -len("docker/")].rstrip("/"))
                else:
                    deeper.append(child)
        level = deeper
    return found


def _children(side: Side, prefix: str) -> list[str]:
    """The "directories" right under ``prefix`` (one delimiter listing page)."""
    listed = side.client.list_objects_v2(Bucket=side.bucket, Prefix=prefix, Delimiter="/")
    return [p["Prefix"] for p in listed.get("CommonPrefixes", [])]


def _closest(given: str, roots: list[str]) -> list[str]:
    """The ``MAX_NAMED`` roots most like ``given`` (a typo, or the root left off)."""

    def likeness(root: str) -> float:
        return difflib.SequenceMatcher(None, given, root).ratio()

    return sorted(roots, key=lambda root: (-likeness(root), root))[:MAX_NAMED]
