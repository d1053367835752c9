"""The mirror sheds what nothing references: revisions after their window, then blobs and
layer links that no revision left in the mirror needs.

A full pass with ``--delete`` ends here (:func:`sweep`), after its copies and deletes:

1. **Revisions.** A mirror revision that the source no longer has and that no mirror tag's
   closure reaches (a kept tag's included) is a delete like any other: recorded, kept for
   ``--keep-deleted``, removed by a later full pass (:mod:`.keep`). This is how the mirror
   learns of what the source's garbage collector removed, which sends no event.
2. **Blobs and layer links.** What no revision left in the mirror reaches (its manifest, its
   children, their configs and layers; a layer link only from its own repository) is removed,
   layer links first, but never an object younger than the *previous* full pass: a copy in
   flight writes blobs before the links that keep them, and every full pass of this command
   leaves a marker (:class:`PassMarker`) whose ``LastModified``, in the store's own clock, the
   next pass compares with each object's.

The sweep reads nothing it does not need: references come from this run's plan, the closure
cache, or the mirror's own manifests, checked against their digests. When any revision's
references cannot be known, nothing is swept (a manifest the tool cannot read could hold a
reference), and the run says why.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime

from .catalog import Listings, read_tags, tags_of
from .changes import Changes
from .copier import Replicator
from .keep import Entry, KeptDeletes
from .layout import Layout
from .plan import Plan, discover, read_link
from .report import count
from .sides import Side, describe, is_not_found

MARKER = "s3syncer/last-full-pass"
Tag = tuple[str, str]
Revision = tuple[str, str]  # repository, digest


class PassMarker:
    """When the previous full pass of this mirror started, in the store's clock.

    One small object beside the records of kept deletes, where a registry never reads:
    ``ROOT/s3syncer/last-full-pass``. Its ``LastModified`` is the time; its body says the
    same for a human.
    """

    def __init__(self, dest: Side) -> None:
        self.dest = dest
        root = dest.layout.root.strip("/")
        self.key = f"{root}/{MARKER}" if root else MARKER

    def previous(self) -> float | None:
        """POSIX seconds of the previous pass's marker, or None when there was none."""
        try:
            found = self.dest.client.head_object(Bucket=self.dest.bucket, Key=self.key)
        except Exception as exc:
            if is_not_found(exc):
                return None
            raise
        modified: datetime = found["LastModified"]
        return modified.timestamp()

    def mark(self) -> None:
        """This pass starts now: the next one may sweep what is older."""
        body = {"started": datetime.now(UTC).isoformat(timespec="seconds")}
        self.dest.put(self.key, json.dumps(body).encode())


@dataclass
class Swept:
    """What a sweep removed (or, in a dry run, would remove)."""

    layer_links: int = 0
    blobs: int = 0
    bytes: int = 0
    skipped: str | None = None  # why nothing was swept

    def summary(self) -> str:
        """What the summary line says of the sweep, or "" when it removed nothing."""
        if not (self.blobs or self.layer_links):
            return ""
        blobs, links = count(self.blobs, "blob"), count(self.layer_links, "layer link")
        return f"{blobs} ({self.bytes} bytes) and {links} swept"


def sweep(
    replicator: Replicator,
    listed: Listings,
    changes: Changes,
    kept: KeptDeletes,
    previous: float | None,
) -> Swept:
    """Shed what the mirror no longer references, after the run's copies and deletes.

    ``previous`` is when the previous full pass started (:meth:`PassMarker.previous`);
    without one, only revisions are recorded and nothing is removed yet.
    """
    report, dest = replicator.report, replicator.dest
    swept = Swept()
    if report.problems or changes.problems:
        swept.skipped = "the run had problems; nothing swept until a pass without any"
        return swept
    refs = _References(replicator)
    tags = _mirror_tags(replicator, listed, changes)
    if tags is None:
        swept.skipped = "a mirror tag cannot be read; nothing swept"
        return swept
    reached = refs.reached(tags)
    if reached is None:
        swept.skipped = refs.why or "a mirror manifest cannot be read; nothing swept"
        return swept
    removed = {(repo, name) for kind, repo, name in report.deleted if kind == "revision"}
    revisions = [r for r in _revisions(dest.layout, listed.dest_tree) if r not in removed]
    source_has = set(_revisions(replicator.source.layout, listed.source_tree))
    orphans = sorted(
        r for r in revisions if r not in source_has and r[1] not in reached.get(r[0], ())
    )
    if not replicator.dry_run:  # the source has it (again): no longer a delete that waits
        kept.forget([e for e in kept.records if e[0] == "revision" and e[1:] in source_has])
    gone = _retire(replicator, kept, orphans)
    # what the run wrote is among what the mirror's tags reach and the manifests pushed by
    # digest: counted whether written or not, the sweep keeps more, never less
    remaining = dict.fromkeys(r for r in revisions if r not in gone)
    remaining.update((item, None) for item in changes.pushed_manifests())
    remaining.update(((repo, m), None) for repo, found in reached.items() for m in found)
    needed = refs.closures(list(remaining))
    if needed is None:
        swept.skipped = refs.why or "a mirror manifest cannot be read; nothing swept"
        return swept
    if previous is None:
        swept.skipped = "the first full pass of this mirror: blobs are swept from the next one"
        return swept
    _remove(replicator, listed, needed, previous, swept)
    return swept


class _References:
    """Each manifest's references: this run's plan, the cache, else the mirror's own bytes."""

    def __init__(self, replicator: Replicator) -> None:
        self.replicator = replicator
        plan = replicator.plan
        known = {} if plan is None else plan.manifests
        self.plan = Plan({d: m for d, m in known.items() if m.error is None})
        self.why: str | None = None

    def _learn(self, digests: Iterable[str]) -> None:
        # discover walks the children itself, as deep as a closure may go: past that, the
        # closure is refused and the sweep stops, as for the run's own closures
        missing = [d for d in dict.fromkeys(digests) if d not in self.plan.manifests]
        if missing:
            r = self.replicator
            self.plan.manifests.update(discover(r.dest, missing, r.pool.map, r.cache))

    def _closure(self, digest: str) -> tuple[set[str], set[str]] | None:
        closure = self.plan.closure(digest)
        if closure is None:
            errors = self.plan.errors(digest) or [self.plan.refusal(digest) or "unknown"]
            self.why = f"the references of {digest} are unknown ({errors[0]}); nothing swept"
            return None
        manifests, blobs = closure
        return manifests, {ref.digest for ref in blobs}

    def reached(self, tags: Mapping[Tag, str]) -> dict[str, set[str]] | None:
        """Per repository, every manifest its mirror tags reach; None if one is unknown."""
        self._learn(tags.values())
        reached: dict[str, set[str]] = {}
        for (repo, _tag), digest in tags.items():
            closure = self._closure(digest)
            if closure is None:
                return None
            reached.setdefault(repo, set()).update(closure[0])
        return reached

    def closures(self, revisions: list[Revision]) -> tuple[set[str], set[Revision]] | None:
        """Every blob digest the ``revisions`` reach, and every ``(repository, digest)`` a
        layer link of theirs serves; None if one is unknown."""
        self._learn(digest for _repo, digest in revisions)
        blobs: set[str] = set()
        layers: set[Revision] = set()
        for repo, digest in revisions:
            closure = self._closure(digest)
            if closure is None:
                return None
            manifests, refs = closure
            blobs.update(manifests)
            blobs.update(refs)
            layers.update((repo, d) for d in (*manifests, *refs))
        return blobs, layers


def _mirror_tags(
    replicator: Replicator, listed: Listings, changes: Changes
) -> dict[Tag, str] | None:
    """Every tag the mirror holds after the run, and the digest it points at; None when one
    cannot be read (said as a problem).

    A tag the run pushed is read again unless the listing already showed it at its digest:
    the run may have written it, or left it (moved in the source meanwhile). Other tags are
    as listed (the run did not touch them), known from the cache by their ETag or read.
    """
    dest, report = replicator.dest, replicator.report
    removed = {(repo, name) for kind, repo, name in report.deleted if kind == "tag"}
    pushed = {(repo, tag): digest for repo, tag, digest in changes.tag_pushes()}
    digests: dict[Tag, str] = {}
    changed: list[Tag] = []
    for tag, digest in pushed.items():
        there = listed.dest_tree.get(dest.layout.tag_current_link(*tag))
        if there is not None and there.holds(digest.encode()):
            digests[tag] = digest
        elif tag not in removed:
            changed.append(tag)
    untouched = [
        tag
        for tag in tags_of(dest.layout, listed.dest_tree)
        if tag not in removed and tag not in pushed
    ]
    found, problems = read_tags(
        dest, untouched, replicator.pool.map, listed.dest_tree, replicator.cache
    )
    for (repo, name), problem in problems.items():
        report.problem(f"{repo}:{name}: {problem}")
    digests.update(found)

    def read(item: Tag) -> str | None:
        try:
            return read_link(dest, dest.layout.tag_current_link(*item))
        except Exception as exc:
            if not is_not_found(exc):
                said = f"cannot read the mirror's tag: {describe(exc)}"
                report.problem(f"{item[0]}:{item[1]}: {said}")
                problems[item] = said
            return None

    for item, now in zip(changed, replicator.pool.map(read, changed, None), strict=True):
        if now is not None:
            digests[item] = now
    return None if problems else digests


def _revisions(layout: Layout, tree: Iterable[str]) -> Iterator[Revision]:
    """The ``(repository, digest)`` of every revision link among a listing's keys."""
    for key in tree:
        linked = layout.linked(key)
        if linked is not None and linked[0] == "revision":
            yield linked[1], linked[2]


def _retire(replicator: Replicator, kept: KeptDeletes, orphans: list[Revision]) -> set[Revision]:
    """Record the orphan revisions; remove those whose window has passed. The removed ones."""
    report = replicator.report
    entries: list[Entry] = [("revision", repo, digest) for repo, digest in orphans]
    due = [entry for entry in entries if kept.due(entry)]
    waiting = [entry for entry in entries if entry not in due]
    if not replicator.dry_run:
        kept.record(waiting)
    for _kind, repo, digest in waiting:
        until = kept.until(("revision", repo, digest)) or kept.now + kept.window
        report.keep(
            f"{repo}@{digest}: in no tag of the mirror and gone from the source, "
            f"kept until {until:%Y-%m-%d %H:%M} UTC"
        )
    removed: set[Revision] = set()
    for (_kind, repo, digest), ok in zip(
        due,
        replicator.pool.map(replicator.writer.delete_revision, [(r, d) for _k, r, d in due], False),
        strict=True,
    ):
        if ok:
            removed.add((repo, digest))
    return removed


def _remove(
    replicator: Replicator,
    listed: Listings,
    needed: tuple[set[str], set[Revision]],
    previous: float,
    swept: Swept,
) -> None:
    """Remove the layer links, then the blobs, that nothing needs and that are older than
    the previous pass."""
    dest, report = replicator.dest, replicator.report
    blobs, layers = needed
    links = [
        key
        for key, entry in listed.dest_tree.items()
        if entry.modified < previous
        and (linked := dest.layout.linked(key))
        and linked[0] == "layer"
        and (linked[1], linked[2]) not in layers
    ]
    data = [
        (key, entry.size)
        for key, entry in listed.dest_blobs.items()
        if entry.modified < previous
        and (digest := dest.layout.blob_of(key)) is not None
        and digest not in blobs
    ]

    def remove(key: str) -> bool:
        report.say(f"sweep {key}")
        if replicator.dry_run:
            return True
        try:
            dest.delete(key)
        except Exception as exc:
            report.problem(f"cannot sweep {dest.url(key)}: {describe(exc)}")
            return False
        return True

    # links first: a blob no link serves is invisible; a link to no blob answers "unknown"
    swept.layer_links = sum(replicator.pool.map(remove, links, False))
    report.stats.add(links_deleted=swept.layer_links if not replicator.dry_run else 0)
    removed = replicator.pool.map(remove, [key for key, _size in data], False)
    swept.blobs = sum(removed)
    swept.bytes = sum(size for (_key, size), ok in zip(data, removed, strict=True) if ok)
