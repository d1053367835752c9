"""``s3syncer verify``: can the mirror be restored from? Read-only on both sides.

For every tag of the source, the mirror must have the same ``current/link`` digest and the
whole closure: each manifest's bytes, every config and layer blob at the right size, every
layer link, every revision link and the tag's index link (a foreign layer that neither side
has needs neither blob nor link), each link a pull reads holding exactly its digest.
``--deep`` also hashes each blob.

Its cost is one listing of each side's ``repositories/`` and ``blobs/`` trees, all four at
once, and a small GET per tag and per manifest. Each object is checked once, however many tags
share it. A link is read only when the listing's ETag does not show that it holds its digest;
a blob whose ETag and the source's are both plain MD5s and differ holds other bytes, found
without ``--deep`` (same-size corruption included).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
from collections.abc import Callable, Hashable, Iterable, Mapping
from typing import TypeVar

from .cache import ClosureCache
from .catalog import (
    EmptySourceError,
    ListingError,
    Tag,
    list_both,
    read_tags,
    tags_of,
)
from .durations import DEFAULT_KEEP
from .keep import KeptDeletes
from .layout import BlobRef, LayoutError, check_digest, link_body
from .plan import MAX_LINK_BYTES, Closure, Plan, discover, read_manifest, runs_of_repositories
from .pool import Pool
from .result_file import write_result
from .roots import WrongRootError, check_root
from .session import OpeningError, check_sides, open_session
from .sides import Listed, Side, TooLargeError, describe, etags_are_md5, md5_form
from .verify_report import PROG, Report

EXIT_OK, EXIT_INCOMPLETE = 0, 1
K = TypeVar("K", bound=Hashable)
Link = tuple[str, str]  # a link file's key, and the digest it must hold
# Tags whose links are listed and checked together: a few MB of keys, however large the registry
LINK_RUN = 2000


class Verifier:
    """Checks the mirror against the source; every check runs once on the pool."""

    def __init__(
        self,
        source: Side,
        dest: Side,
        pool: Pool,
        *,
        deep: bool = False,
        cache: ClosureCache | None = None,
    ) -> None:
        self.source, self.dest, self.pool, self.deep = source, dest, pool, deep
        self.cache = cache
        # foreign layers neither side has: the registry serves the manifest without them, and
        # neither the registry nor replicate writes a layer link for them
        self._absent: set[str] = set()
        self._blobs: tuple[Mapping[str, Listed], Mapping[str, Listed]] = ({}, {})

    def _each(self, check: Callable[[K], str | None], items: Iterable[K]) -> dict[K, str]:
        """Run ``check`` over unique ``items``; the problems found, by item."""
        unique = list(dict.fromkeys(items))
        failed: str | None = "an object could not be checked (error above)"
        results = self.pool.map(check, unique, failed)
        return {item: problem for item, problem in zip(unique, results, strict=True) if problem}

    def verify(self) -> Report:
        """Check every tag of the source; EmptySourceError if it has none and the mirror has.

        WrongRootError when a side's root holds no registry but its bucket holds one.
        """
        check_root(self.source)
        check_root(self.dest)
        trees = list_both(self.source, self.dest)
        mirror, self._blobs = trees.dest_tree, (trees.source_blobs, trees.dest_blobs)
        tags = tags_of(self.source.layout, trees.source_tree)
        if not tags and (held := len(tags_of(self.dest.layout, mirror))):
            # A wrong --source root lists nothing, and "0 tags, complete" would stay green
            # every night while proving nothing about the mirror an operator restores from.
            raise EmptySourceError(
                f"{self.source} holds no tags, {self.dest} holds {held}: nothing proven "
                "(is --source right?)"
            )
        cache, source_tree = self.cache, trees.source_tree
        want, unreadable = read_tags(self.source, tags, self.pool.map, source_tree, cache)
        current = self.dest.layout.tag_current_link
        listed = [t for t in want if current(*t) in mirror]
        have, garbled = read_tags(self.dest, listed, self.pool.map, mirror, cache)
        roots = set(want.values())
        plan = Plan(discover(self.source, roots, self.pool.map, cache, trees.source_blobs))
        closures = {tag: plan.closure(digest) for tag, digest in want.items()}
        complete = {tag: c for tag, c in closures.items() if c is not None}
        manifests = {m for c in complete.values() for m in c[0]}
        blobs = {ref for c in complete.values() for ref in c[1]}
        bad_manifests = self._each(self._check_manifest, manifests)
        bad_blobs = self._each(self._check_blob, blobs)
        report = Report(len(tags), len(manifests), len({ref.digest for ref in blobs}), self.deep)
        for bad, problem in unreadable.items():
            report.broken[bad] = [f"unreadable in the source ({problem})"]
        for run in runs_of_repositories(want, LINK_RUN):
            # the links of a run's tags, held for that run only: several keys a tag, they
            # would be most of a large registry's memory if every tag's were held at once
            link_items = {
                t: self._links(*t, want[t], complete[t], current=have.get(t) == want[t])
                for t in run
                if t in complete
            }
            bad_links = self._each(
                lambda link: self._check_link(mirror, link),
                (link for items in link_items.values() for link in items),
            )
            for repo, tag in run:
                digest = want[(repo, tag)]
                mirrored = have.get((repo, tag)), garbled.get((repo, tag))
                missing = self._tag_problems(digest, mirrored, closures[(repo, tag)], plan)
                if missing is None:
                    c = complete[(repo, tag)]
                    missing = [bad_manifests[m] for m in sorted(c[0]) if m in bad_manifests]
                    missing += [bad_blobs[r] for r in sorted(c[1], key=str) if r in bad_blobs]
                    items = link_items[(repo, tag)]
                    missing += [bad_links[link] for link in items if link in bad_links]
                if missing:
                    report.broken[(repo, tag)] = missing
        report.broken = dict(sorted(report.broken.items()))
        report.kept = self._kept(set(tags), mirror)
        return report

    def _kept(self, source_tags: set[Tag], mirror: Mapping[str, Listed]) -> dict[Tag, str]:
        """The mirror's tags that the source deleted and replicate keeps for their window."""
        records = KeptDeletes(self.dest, DEFAULT_KEEP)
        kept: dict[Tag, str] = {}
        for entry in sorted(records.load()):
            kind, repo, tag = entry
            current = self.dest.layout.tag_current_link(repo, tag)
            if kind != "tag" or (repo, tag) in source_tags or current not in mirror:
                continue
            try:
                until = json.loads(self.dest.read_small(records.key(entry), 4096))["until"]
            except Exception:
                until = "an unreadable date"
            kept[(repo, tag)] = f"deleted in the source, kept until {until}"
        return kept

    def _tag_problems(
        self,
        digest: str,
        mirrored: tuple[str | None, str | None],
        closure: Closure | None,
        plan: Plan,
    ) -> list[str] | None:
        """What is wrong with a tag itself; None when its closure is to be checked.

        ``mirrored`` is the digest the mirror's tag points at, and why it cannot be read.
        """
        problems = []
        have, unreadable = mirrored
        if unreadable is not None:
            problems.append(f"tag ({unreadable}; source has {digest})")
        elif have is None:
            problems.append(f"tag (no current/link; source has {digest})")
        elif have != digest:
            problems.append(f"tag points at {have}, source at {digest}")
        if closure is None and (refused := plan.refusal(digest)):
            problems.append(f"refused: {refused}; replicate does not mirror it")
            return problems
        if closure is None:
            errors = "; ".join(plan.errors(digest)) or "a manifest the source cannot serve"
            problems.append(f"cannot read its closure in the source: {errors}")
            return problems
        return problems or None

    def _links(
        self, repo: str, tag: str, digest: str, closure: Closure, *, current: bool
    ) -> list[Link]:
        """The links a pull of the tag reads, ``current/link`` too when it is to be checked."""
        layout = self.dest.layout
        blobs = sorted({r.digest for r in closure[1] if r.digest not in self._absent})
        links = [(layout.layer_link(repo, blob), blob) for blob in blobs]
        links += [(layout.revision_link(repo, m), m) for m in sorted(closure[0])]
        links.append((layout.tag_index_link(repo, tag, digest), digest))
        if current:
            links.append((layout.tag_current_link(repo, tag), digest))
        return links

    def _check_link(self, mirror: Mapping[str, Listed], link: Link) -> str | None:
        """Whether a link holds exactly its digest: the registry serves whatever digest a link
        names, and fails on anything else (a trailing newline included)."""
        key, digest = link
        listed = mirror.get(key)
        if listed is None:
            return _link_name(key, digest)
        if not _read_by_a_pull(key):
            return None  # wanted there, but what it holds breaks no restore
        if listed.archive:
            return f"{_link_name(key, digest)} ({_archived(listed.archive)})"
        body = link_body(digest)
        if listed.holds(body):
            return None  # its ETag is the MD5 of the right digest: no need to read it
        try:
            data = self.dest.read_small(key, MAX_LINK_BYTES)
        except TooLargeError:
            return f"{_link_name(key, digest)} (holds {listed.size} bytes, not a digest)"
        if data == body:
            return None
        return f"{_link_name(key, digest)} (holds {_shown(data)})"

    def _check_manifest(self, digest: str) -> str | None:
        source_blobs, dest_blobs = self._blobs
        mine = dest_blobs.get(self.dest.layout.blob_data(digest))
        theirs = source_blobs.get(self.source.layout.blob_data(digest))
        if mine is not None and mine.archive:
            return f"manifest {digest} ({_archived(mine.archive)})"
        if not self.deep and mine is not None and not mine.tiered and _same_md5(mine, theirs):
            return None  # the same MD5 as the source's checked bytes: no need to read it
        # bytes that hash to the digest are the source's bytes: no need to hold those too
        _data, error = read_manifest(self.dest, digest)
        # "manifest D: BUCKET KEY: REASON": the reason is what the line adds to its name
        return None if error is None else f"manifest {digest} ({error.split(': ', 2)[-1]})"

    def _check_blob(self, ref: BlobRef) -> str | None:
        source_blobs, dest_blobs = self._blobs
        key = self.dest.layout.blob_data(ref.digest)
        src_key = self.source.layout.blob_data(ref.digest)
        found, source = dest_blobs.get(key), source_blobs.get(src_key)
        want = ref.size if ref.size is not None else (source.size if source else None)
        if found is None:
            if ref.optional and source is None:
                self._absent.add(ref.digest)
                return None
            return f"blob {ref.digest}"
        if want is not None and found.size != want:
            return f"blob {ref.digest} ({found.size} bytes, source has {want})"
        if found.differs(source) and etags_are_md5(self.source, self.dest, (src_key, key)):
            return f"blob {ref.digest} (its ETag is not the source's: other bytes)"
        archive = found.archive
        if found.tiered:  # only a HEAD shows an INTELLIGENT_TIERING archive tier
            head = self.dest.head(key)
            archive = head.archive if head is not None else None
        if archive:
            return f"blob {ref.digest} ({_archived(archive)})"
        if self.deep and not self._hash_matches(key, ref.digest):
            return f"blob {ref.digest} (content does not match its digest)"
        return None

    def _hash_matches(self, key: str, digest: str) -> bool:
        return self.dest.content_digest(key, digest.partition(":")[0]) == digest


def _same_md5(mine: Listed, theirs: Listed | None) -> bool:
    """Whether two listed objects have the same size and the same MD5, by their ETags."""
    if theirs is None or mine.size != theirs.size:
        return False
    md5 = md5_form(mine.etag)
    return md5 is not None and md5 == md5_form(theirs.etag)


def _link_name(key: str, digest: str) -> str:
    """How a report names the link file ``key`` that must hold ``digest``."""
    kind = "layer link" if "/_layers/" in key else "revision link"
    if "/_manifests/tags/" in key:
        kind = "tag current/link" if key.endswith("/current/link") else "tag index link"
    return f"{kind} {digest}"


def _archived(archive: str) -> str:
    # A lifecycle rule that moves a mirror to a cold class keeps every HEAD and listing
    # answering, yet a registry serving it fails the pull until each object is restored.
    return f"archived in {archive}: no pull reads it until it is restored"


def _read_by_a_pull(key: str) -> bool:
    """Whether a registry reads link ``key`` to serve a pull.

    A tag's index link only records that the tag once pointed at a digest: no pull reads it,
    so verify wants it there (the registry writes it) but does not read it.
    """
    return "/_manifests/tags/" not in key or key.endswith("/current/link")


def _shown(data: bytes) -> str:
    """A link's wrong content as a report shows it: the digest, or the text quoted."""
    text = data.decode("ascii", "replace")
    try:
        check_digest(text)
    except LayoutError:
        return repr(text[:80])
    return text if text.strip() == text else repr(text)  # the registry reads no whitespace


def _named(item: object) -> str:
    """How a line names an object that could not be checked: a blob by digest, not a repr."""
    if isinstance(item, tuple):  # a Link: its key
        return str(item[0])
    return f"blob {item.digest}" if isinstance(item, BlobRef) else str(item)


def _cannot_verify(reason: str, *, as_json: bool) -> int:
    # Nothing was proven: a machine reading --json gets a document that says so, not nothing.
    print(f"{PROG}: cannot verify: {reason}", file=sys.stderr)
    if as_json:
        print(json.dumps({"complete": False, "error": f"cannot verify: {reason}"}, indent=1))
    return EXIT_INCOMPLETE


def run(args: argparse.Namespace, environ: Mapping[str, str] | None = None) -> int:
    """``s3syncer verify`` with parsed ``args``; returns the exit code."""
    try:
        sides = check_sides(args, environ)
    except OpeningError as exc:
        print(f"{PROG}: {exc}", file=sys.stderr)
        return exc.code
    problems: list[str] = []
    try:
        session = open_session(sides)
        with Pool(
            sides.jobs,
            lambda item, exc: problems.append(f"{_named(item)}: cannot check: {describe(exc)}"),
        ) as pool:
            cache = ClosureCache.from_env(os.environ if environ is None else environ)
            with contextlib.closing(cache) if cache else contextlib.nullcontext():
                verifier = Verifier(session.source, session.dest, pool, deep=args.deep, cache=cache)
                report = verifier.verify()
    except OpeningError as exc:
        return _cannot_verify(str(exc), as_json=args.json)
    except (ListingError, EmptySourceError, WrongRootError) as exc:
        return _cannot_verify(str(exc), as_json=args.json)
    except Exception as exc:
        return _cannot_verify(describe(exc), as_json=args.json)
    for problem in problems:
        print(f"{PROG}: {problem}", file=sys.stderr)
    report.requests = session.requests
    write_result(environ if environ is not None else os.environ, report.result(), PROG)
    if args.json:
        print(json.dumps(report.as_json(), indent=1))
    else:
        for line in report.lines():
            print(line)
        print(report.summary(), flush=True)
    return EXIT_OK if report.complete else EXIT_INCOMPLETE
