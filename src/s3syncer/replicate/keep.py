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
import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from .layout import LayoutError, check_digest, check_repository, check_tag
from .sides import Side

Entry = tuple[str, str, str]  # ("tag", repository, tag) or ("revision", repository, digest)
DEFAULT_KEEP = timedelta(days=7)
_KINDS = {"tag": "_tags", "revision": "_revisions"}
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(text: str) -> timedelta:
    """``7d``, ``36h``, ``1h30m``, ``90s`` or a bare number of seconds; ValueError."""
    if re.fullmatch(r"\d+(\.\d+)?", text):
        return timedelta(seconds=float(text))
    parts = re.findall(r"(\d+(?:\.\d+)?)([smhd])", text)
    if not parts or "".join(n + u for n, u in parts) != text:
        raise ValueError(f"{text!r} is not a duration (e.g. 7d, 36h, 1h30m, 0)")
    return timedelta(seconds=sum(float(n) * _UNITS[u] for n, u in parts))


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
