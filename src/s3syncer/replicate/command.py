"""``s3syncer replicate``: the command line, from flags to exit code.

Without ``--all``: read the run's events file, replay it (:mod:`.changes`) and copy what it
changed. With ``--all``, or when the events file says ``truncated`` (events were dropped, so
the changes are not all known): copy every tag of the source instead, skipping what the mirror
already has (a HEAD per blob; the links from one listing of its ``repositories/`` tree); with
``--delete`` also remove the mirror's tags the source no longer has.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from .arguments import UsageError
from .catalog import EmptySourceError, ListingError, list_tags, list_tree, read_tags, tags_of
from .changes import Changes, replay
from .copier import Replicator
from .session import EXIT_FAILURE, EXIT_OK, EXIT_USAGE, OpeningError, check_sides, open_session
from .sides import describe

PROG = "s3syncer replicate"


def load_events(path: str) -> tuple[list[Any], bool]:
    """Read an events file: ``(events, truncated)``. A bare registry envelope also works."""
    data = json.loads(Path(path).read_text(encoding="utf-8"))
    if not isinstance(data, dict) or not isinstance(data.get("events"), list):
        raise ValueError("not an events file: no 'events' list")
    return data["events"], bool(data.get("truncated", False))


def _say(line: str) -> None:
    print(f"{PROG}: {line}", file=sys.stderr, flush=True)


def _read_events(args: argparse.Namespace, env: Mapping[str, str]) -> tuple[list[Any], bool]:
    """The run's events and whether to copy everything instead; raise UsageError or OSError."""
    if args.all:
        if args.events:
            raise UsageError("--all copies every tag: it takes no --events file")
        return [], True
    path = args.events or env.get("S3SYNCER_EVENTS_FILE")
    if not path:
        raise UsageError("no events: pass --events FILE, set S3SYNCER_EVENTS_FILE, or use --all")
    try:
        events, truncated = load_events(path)
    except (OSError, ValueError) as exc:
        raise OSError(f"cannot read events file {path}: {exc}") from None
    if truncated:
        _say(
            f"the events file {path} is marked truncated (the {len(events)} events it holds are "
            "not all that happened): copying every tag of the source instead, as --all does"
        )
    return events, truncated


def all_changes(replicator: Replicator, mirror: Iterable[str], *, delete: bool) -> Changes:
    """Every tag of the source as a push; with ``delete``, mirror-only tags as deletes.

    ``mirror`` is the keys of the destination's ``repositories/`` tree. A source with no tag
    at all raises EmptySourceError rather than delete every tag of the mirror.
    """
    source_tags = list_tags(replicator.source)
    found, problems = read_tags(replicator.source, source_tags, replicator.pool.map)
    lines = [f"{repo}:{tag}: {problem}" for (repo, tag), problem in problems.items()]
    tags: dict[tuple[str, str], str | None] = dict(found)
    changes = Changes(tags=tags, problems=lines)
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


def run(args: argparse.Namespace, environ: Mapping[str, str] | None = None) -> int:
    """``s3syncer replicate`` with parsed ``args``; returns the exit code."""
    env = os.environ if environ is None else environ
    try:
        sides = check_sides(args, env)
        events, everything = _read_events(args, env)
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
    source, dest = session.source, session.dest
    server_side = args.copy == "server" or (args.copy == "auto" and session.same_identity)
    try:  # what --all finds already there, from one listing rather than a HEAD per link
        present = list_tree(dest) if everything else None
    except ListingError as exc:
        _say(str(exc))
        return EXIT_FAILURE
    with Replicator(
        source,
        dest,
        jobs=sides.jobs,
        server_side=server_side,
        server_copy_limit=args.server_copy_limit,
        stream_put_limit=args.stream_put_limit,
        dry_run=args.dry_run,
        verbose=args.verbose,
        present=present,
    ) as replicator:
        try:
            changes = (
                all_changes(replicator, present, delete=args.delete)
                if present is not None
                else replay(events)
            )
        except (ListingError, EmptySourceError) as exc:
            _say(str(exc))
            return EXIT_FAILURE
        except Exception as exc:
            _say(f"cannot list the tags: {describe(exc)}")
            return EXIT_FAILURE
        ok = replicator.replicate(changes, delete=args.delete) and not changes.problems
    for line in (*replicator.skipped, *changes.problems, *replicator.problems):
        _say(line)
    deletes = len(changes.tag_deletes()) + len(changes.manifest_deletes())
    if deletes and not args.delete:
        _say(f"{deletes} delete(s) not applied (no --delete)")
    scope = "all tags" if everything else f"{len(events)} events"
    counters = session.counters
    requests = f"{session.requests} S3 requests ({counters['source'].count} to the source)"
    line = replicator.report.summary(
        scope, server_side=server_side, listed=everything, requests=requests
    )
    print(f"{PROG}: {line}; {'ok' if ok else 'FAILED'}", flush=True)
    return EXIT_OK if ok else EXIT_FAILURE
