"""``s3syncer replicate``: the command line, from flags to exit code.

An event run (:mod:`.run_input` decides) replays its events file (:mod:`.changes`) and copies
what it changed. A full pass (``--all``, a run for no event, a truncated events file) copies
every tag of the source instead, skipping what the mirror already has (a HEAD per blob; the
links from one listing of its ``repositories/`` tree), and the manifests the events pushed by
digest; with ``--delete`` it also removes the mirror's tags the source no longer has.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
from collections.abc import Iterable, Mapping
from typing import Any

from .arguments import UsageError
from .cache import ClosureCache
from .catalog import EmptySourceError, ListingError, Listings, list_both, read_tags, tags_of
from .changes import Changes, replay
from .copier import Replicator
from .hints import heed
from .keep import KeptDeletes, due_revisions, expand_repositories, hold
from .report import RunReport, count
from .result_file import write_result
from .roots import WrongRootError, check_root
from .run_input import RunInput, read_input
from .session import (
    EXIT_FAILURE,
    EXIT_OK,
    EXIT_USAGE,
    OpeningError,
    Session,
    check_sides,
    open_session,
)
from .sides import describe
from .sweep import PassMarker, Swept, sweep

PROG = "s3syncer replicate"


def _say(line: str) -> None:
    print(f"{PROG}: {line}", file=sys.stderr, flush=True)


def all_changes(
    replicator: Replicator, listed: Listings, *, delete: bool, events: Iterable[Any] = ()
) -> Changes:
    """Every tag of the source as a push; with ``delete``, mirror-only tags as deletes.

    A source with no tag at all raises EmptySourceError rather than delete every tag of the
    mirror. The manifests that ``events`` push or delete by digest are added: no tag leads a
    full pass to them.
    """
    source_tags = tags_of(replicator.source.layout, listed.source_tree)
    mirror = listed.dest_tree
    found, problems = read_tags(
        replicator.source,
        source_tags,
        replicator.pool.map,
        listed.source_tree,
        replicator.cache,
    )
    lines = [f"{repo}:{tag}: {problem}" for (repo, tag), problem in problems.items()]
    tags: dict[tuple[str, str], str | None] = dict(found)
    by_digest = replay(events)
    changes = Changes(tags=tags, manifests=by_digest.manifests, problems=lines)
    extra = 0
    if delete:  # a tag the source has but could not be read is kept
        for tag in tags_of(replicator.dest.layout, mirror):
            if tag not in problems and tag not in found:
                changes.tags[tag] = None
                extra += 1
    if extra and not source_tags:
        # Far more often a wrong --source (a typo in its root) than a registry emptied on
        # purpose: deleting every tag would empty the mirror an operator restores from.
        raise EmptySourceError(
            f"--all --delete: {replicator.source} holds no tags; refusing to delete all "
            f"{extra} tags of {replicator.dest} (is --source right? if the registry really "
            "is empty, delete the mirror's tags yourself)"
        )
    _say(
        f"--all: {len(source_tags)} tags in {replicator.source}"
        + (f", {extra} tags only in {replicator.dest} to delete" if delete else "")
    )
    return changes


def plan_changes(
    replicator: Replicator, listed: Listings | None, events: list[Any], args: argparse.Namespace
) -> tuple[Changes, KeptDeletes | None]:
    """What the run changes, checked against the source; with ``--delete``, the deletes that
    wait for their window held back (the records, returned, are dropped once deleted)."""
    source, dest, report = replicator.source, replicator.dest, replicator.report
    if listed is not None:
        changes = all_changes(replicator, listed, delete=args.delete, events=events)
    else:
        changes = replay(events)
        expand_repositories(changes, dest)
    kept = None
    if args.delete:
        kept = KeptDeletes(dest, args.keep_deleted)
        kept.load()
        if listed is not None:
            due_revisions(changes, kept)
    changes = heed(source, changes, replicator.pool, report, tags=listed is None)
    report.checked = len(changes.tags)
    if kept is not None:
        hold(changes, kept, report, max_deletes=args.max_deletes, dry_run=args.dry_run)
    return changes, kept


def _forget_deleted(kept: KeptDeletes, deleted: list[tuple[str, str, str]]) -> bool:
    """Drop the records of what the run removed for good; False if one cannot be."""
    try:
        kept.forget(deleted)
    except Exception as exc:
        _say(f"cannot drop the records of deleted tags in {kept.prefix}: {describe(exc)}")
        return False
    return True


def run(args: argparse.Namespace, environ: Mapping[str, str] | None = None) -> int:
    """``s3syncer replicate`` with parsed ``args``; returns the exit code."""
    env = os.environ if environ is None else environ
    try:
        sides = check_sides(args, env)
        given = read_input(args, env)
        session = open_session(sides)
    except UsageError as exc:
        _say(str(exc))
        return EXIT_USAGE
    except OpeningError as exc:
        _say(str(exc))
        return exc.code
    except OSError as exc:
        _say(str(exc))
        return EXIT_FAILURE
    if given.full_pass and not args.all:
        _say(given.full_pass)
    try:
        if given.full or given.events:  # a run with nothing to do sends no request
            check_root(session.source)
        # what a full pass finds already there, from listings rather than a HEAD per object
        listed = (
            list_both(session.source, session.dest, source_revisions=args.delete)
            if given.full
            else None
        )
        previous = _previous_pass(session, args) if given.full and args.delete else None
    except (ListingError, WrongRootError) as exc:
        _say(str(exc))
        return EXIT_FAILURE
    return _replicate(args, env, session, given, listed, previous=previous)


def _previous_pass(session: Session, args: argparse.Namespace) -> float | None:
    """When the previous full pass started (what the sweep may remove is older); this pass
    leaves its own mark. ListingError when the mirror cannot say."""
    marker = PassMarker(session.dest)
    try:
        previous = marker.previous()
        if not args.dry_run:
            marker.mark()
    except Exception as exc:
        raise ListingError(
            f"cannot read or write {session.dest.url(marker.key)}: {describe(exc)}"
        ) from exc
    return previous


def _replicate(
    args: argparse.Namespace,
    env: Mapping[str, str],
    session: Session,
    given: RunInput,
    listed: Listings | None,
    *,
    previous: float | None = None,
) -> int:
    """Plan the run's changes and apply them; say what it did; the exit code."""
    cache = ClosureCache.from_env(env)
    server_side = args.copy == "server" or (args.copy == "auto" and session.same_identity)
    with (
        contextlib.closing(cache) if cache is not None else contextlib.nullcontext(),
        Replicator(
            session.source,
            session.dest,
            jobs=session.sides.jobs,
            server_side=server_side,
            server_copy_limit=args.server_copy_limit,
            stream_put_limit=args.stream_put_limit,
            dry_run=args.dry_run,
            verbose=args.verbose,
            present=listed.dest_tree if listed else None,
            blobs=(listed.source_blobs, listed.dest_blobs) if listed else None,
            cache=cache,
        ) as replicator,
    ):
        try:
            changes, kept = plan_changes(replicator, listed, given.events, args)
        except (ListingError, EmptySourceError) as exc:
            _say(str(exc))
            return EXIT_FAILURE
        except Exception as exc:
            _say(f"cannot list the tags: {describe(exc)}")
            return EXIT_FAILURE
        ok = replicator.replicate(changes, delete=args.delete) and not changes.problems
        swept = Swept()
        if kept is not None and listed is not None:  # a full pass with --delete
            swept = sweep(replicator, listed, changes, kept, previous)
            ok = ok and not replicator.problems
        if kept is not None and not args.dry_run:
            ok = _forget_deleted(kept, replicator.report.deleted) and ok
    _conclude(args, changes, replicator.report)
    if swept.skipped:
        _say(f"sweep: {swept.skipped}")
    scope = "all tags" if given.full else count(len(given.events), "event")
    source_requests = session.counters["source"].count
    requests = f"{session.requests} S3 requests ({source_requests} to the source)"
    if swept.summary():
        requests = f"{swept.summary()}, {requests}"
    line = replicator.report.summary(
        scope, server_side=server_side, listed=given.full, requests=requests
    )
    print(f"{PROG}: {line}; {'ok' if ok else 'FAILED'}", flush=True)
    result = replicator.report.result(full_pass=given.full, ok=ok)
    result |= {"blobsSwept": swept.blobs, "bytesSwept": swept.bytes}
    write_result(env, result, PROG)
    return EXIT_OK if ok else EXIT_FAILURE


def _conclude(args: argparse.Namespace, changes: Changes, report: RunReport) -> None:
    """Say every line the run has for its operator, on stderr."""
    lines = (*report.skipped, *report.kept, *report.refused, *changes.problems, *report.problems)
    for line in lines:
        _say(line)
    deletes = len(changes.tag_deletes()) + len(changes.manifest_deletes())
    if deletes and not args.delete:
        _say(f"{deletes} delete(s) not applied (no --delete)")
