"""Deletes wait: a tag deleted in the source stays pullable from the mirror for a window.

A disaster copy that deletes as fast as its source is emptied as fast by anyone holding the
registry's credentials, or by a cleanup job with a wrong pattern. So a delete (from an event,
from a full pass's ``--delete``, from a repository delete event) first *records* the tag, and
removes it from the mirror only once ``--keep-deleted`` has passed since it was recorded, in a
later run that finds the source still without it. A tag pushed again is forgotten.

The records live beside the registry's root, ``ROOT/s3syncer/deleted/REPO/_tags/TAG`` (and
``.../_revisions/DIGEST`` for a manifest deleted by digest): a registry serving the mirror
reads only ``ROOT/docker/registry/v2/``, so a restored registry never sees them. When a record
was made is its object's ``LastModified``; its body says when the window ends, for ``verify``.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from .changes import Changes
from .layout import LayoutError, check_digest, check_repository, check_tag
from .report import RunReport
from .sides import Side

Entry = tuple[str, str, str]  # ("tag", repository, tag) or ("revision", repository, digest)
_KINDS = {"tag": "_tags", "revision": "_revisions"}


@dataclass(frozen=True)
class Record:
    """A delete waiting for its window: what, and when it was recorded."""

    entry: Entry
    since: datetime


class KeptDeletes:
    """The mirror's records of deletes that wait, read once per run."""

    def __init__(self, dest: Side, window: timedelta, now: datetime | None = None) -> None:
        self.dest, self.window = dest, window
        self.now = now or datetime.now(UTC)
        root = dest.layout.root.strip("/")
        self.prefix = f"{root}/s3syncer/deleted/" if root else "s3syncer/deleted/"
        self.records: dict[Entry, Record] = {}

    def key(self, entry: Entry) -> str:
        """The record's key for ``entry``."""
        kind, repo, name = entry
        return f"{self.prefix}{repo}/{_KINDS[kind]}/{name}"

    def load(self) -> dict[Entry, Record]:
        """Every record in the mirror (one paginated listing)."""
        paginator = self.dest.client.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=self.dest.bucket, Prefix=self.prefix):
            for obj in page.get("Contents", []):
                entry = self._entry(obj["Key"])
                if entry is not None:
                    self.records[entry] = Record(entry, obj["LastModified"])
        return self.records

    def _entry(self, key: str) -> Entry | None:
        rest = key[len(self.prefix) :]
        for kind, marker in _KINDS.items():
            repo, sep, name = rest.rpartition(f"/{marker}/")
            if not sep:
                continue
            try:
                check_repository(repo)
                check_tag(name) if kind == "tag" else check_digest(name)
            except LayoutError:
                return None
            return kind, repo, name
        return None

    def due(self, entry: Entry) -> bool:
        """Whether ``entry``'s window has passed (no window: at once)."""
        if self.window <= timedelta(0):
            return True
        record = self.records.get(entry)
        return record is not None and self.now - record.since >= self.window

    def record(self, entries: Iterable[Entry]) -> list[Entry]:
        """Record the entries not yet recorded; the ones it recorded."""
        fresh = [e for e in entries if e not in self.records]
        until = (self.now + self.window).isoformat(timespec="seconds")
        for entry in fresh:
            body = json.dumps({"deleted": self.now.isoformat(timespec="seconds"), "until": until})
            self.dest.put(self.key(entry), body.encode())
            self.records[entry] = Record(entry, self.now)
        return fresh

    def forget(self, entries: Iterable[Entry]) -> None:
        """Drop the records of ``entries`` (pushed again, or deleted for good)."""
        for entry in entries:
            if self.records.pop(entry, None) is not None:
                self.dest.delete(self.key(entry))

    def until(self, entry: Entry) -> datetime | None:
        """When ``entry``'s window ends, from its record."""
        record = self.records.get(entry)
        return None if record is None else record.since + self.window


def expand_repositories(changes: Changes, dest: Side) -> None:
    """Each repository deleted whole: every tag the mirror has of it, unless named since."""
    for repo in dict.fromkeys(changes.repositories):
        prefix = f"{dest.layout.repository_keys(repo)}manifests/tags/"
        for key in dest.list_keys(prefix):
            tag = dest.layout.tag_of(key)
            if tag is not None and tag[0] == repo:
                changes.tags.setdefault(tag, None)


def due_revisions(changes: Changes, kept: KeptDeletes) -> None:
    """A full pass takes up the manifests deleted by digest whose window has passed: no later
    event names them again. (The source is read before any is deleted.)"""
    for entry in kept.records:
        kind, repo, digest = entry
        if kind == "revision" and kept.due(entry):
            changes.manifests.setdefault((repo, digest), False)


def hold(
    changes: Changes,
    kept: KeptDeletes,
    report: RunReport,
    *,
    max_deletes: int | None,
    dry_run: bool,
) -> list[Entry]:
    """Leave in ``changes`` only the deletes whose window has passed; the rest are recorded
    and kept. Records of what ``changes`` writes again are dropped. Returns the due deletes.

    With ``max_deletes``, a run that would remove more tags removes none (a problem).
    """
    live = [("tag", r, t) for (r, t), d in changes.tags.items() if d is not None]
    live += [("revision", r, d) for (r, d), pushed in changes.manifests.items() if pushed]
    if not dry_run:
        kept.forget(entry for entry in live if entry in kept.records)
    deletes: list[Entry] = [("tag", r, t) for r, t in changes.tag_deletes()]
    deletes += [("revision", r, d) for r, d in changes.manifest_deletes()]
    due = [entry for entry in deletes if kept.due(entry)]
    waiting = [entry for entry in deletes if entry not in due]
    if not dry_run:
        kept.record(waiting)
    report.kept_tags = sum(1 for entry in waiting if entry[0] == "tag")
    for entry in waiting:
        until = kept.until(entry) or kept.now + kept.window
        report.keep(
            f"{_named(entry)}: deleted in the source, kept until {until:%Y-%m-%d %H:%M} UTC"
        )
    tags_due = [entry for entry in due if entry[0] == "tag"]
    if max_deletes is not None and len(tags_due) > max_deletes:
        names = ", ".join(_named(entry) for entry in tags_due)
        report.problem(
            f"--max-deletes {max_deletes}: this run would remove {len(tags_due)} tags from the "
            f"mirror; it removes none: {names}"
        )
        waiting, due = deletes, []
    _drop(changes, waiting)
    return due


def _drop(changes: Changes, entries: Iterable[Entry]) -> None:
    """Take ``entries`` out of ``changes``: they are not applied this run."""
    for kind, repo, name in entries:
        if kind == "tag":
            changes.tags.pop((repo, name), None)
        else:
            changes.manifests.pop((repo, name), None)


def _named(entry: Entry) -> str:
    kind, repo, name = entry
    return f"{repo}:{name}" if kind == "tag" else f"{repo}@{name}"
