"""What a ``replicate`` run did and found: counts, problems, skipped items, and its lines.

The copier only copies; it hands every count and every line to a :class:`RunReport`, which the
worker threads share (each method takes the lock), and which prints them.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import IO

from .layout import Layout
from .plan import Plan


@dataclass
class Stats:
    """What a run did."""

    manifests: int = 0
    manifests_copied: int = 0  # a manifest is stored as a blob, but it is counted as itself
    blobs_copied: int = 0
    blobs_skipped: int = 0
    bytes_copied: int = 0
    links_written: int = 0
    links_kept: int = 0
    links_deleted: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add(self, **counts: int) -> None:
        """Add ``counts`` to the named counters (from any thread)."""
        with self._lock:
            for name, value in counts.items():
                setattr(self, name, getattr(self, name) + value)


class RunReport:
    """The counts and lines of one run, filled from the worker threads.

    ``problems`` fail the run; ``skipped`` are left alone on purpose (gone from or moved in
    the source) and ``refused`` are tags no retry can mirror (a closure past the limits):
    both are said, neither fails the run. ``verbose`` prints one line per object.
    """

    def __init__(self, *, dry_run: bool = False, verbose: bool = False, out: IO[str] | None = None):
        self.dry_run = dry_run
        self.verbose = verbose or dry_run
        self.out = out or sys.stdout
        self.stats = Stats()
        self.problems: list[str] = []
        self.skipped: list[str] = []
        self.refused: list[str] = []
        self.kept: list[str] = []  # deletes waiting for their window
        self.deleted: list[tuple[str, str, str]] = []  # ("tag"|"revision", repo, name) removed
        # what was written, to tell which tags a full pass repaired (a notification was lost)
        self.written: set[str] = set()  # link keys
        self.copied: set[str] = set()  # blob digests
        self.checked = 0  # tags the run looked at
        self.repaired = 0  # tags it wrote anything of
        self.kept_tags = 0  # deleted tags kept for their window
        self._lock = threading.Lock()

    def problem(self, line: str) -> None:
        """Something that failed: the run fails."""
        with self._lock:
            self.problems.append(line)

    def skip(self, line: str) -> None:
        """Something left alone on purpose."""
        with self._lock:
            self.skipped.append(line)

    def refuse(self, line: str) -> None:
        """A tag that cannot be mirrored however often the run is retried."""
        with self._lock:
            self.refused.append(line)

    def keep(self, line: str) -> None:
        """A delete that waits for its window."""
        with self._lock:
            self.kept.append(line)

    def removed(self, kind: str, repo: str, name: str) -> None:
        """A tag or revision removed from the mirror."""
        with self._lock:
            self.deleted.append((kind, repo, name))

    def wrote(self, key: str) -> None:
        """A link written."""
        with self._lock:
            self.written.add(key)

    def copied_blob(self, digest: str) -> None:
        """A blob copied."""
        with self._lock:
            self.copied.add(digest)

    def result(self, *, full_pass: bool, ok: bool) -> dict[str, object]:
        """The run's result file, in the shape the daemon reads (docs/runner.md)."""
        return {
            "command": "replicate",
            "fullPass": full_pass,
            "ok": ok,
            "tags": {
                "checked": self.checked,
                "repaired": self.repaired,
                "deleted": sum(1 for kind, _r, _n in self.deleted if kind == "tag"),
                "kept": self.kept_tags,
                "refused": len(self.refused),
            },
            "blobsCopied": self.stats.blobs_copied,
            "bytesCopied": self.stats.bytes_copied,
        }

    def say(self, line: str) -> None:
        """One object's line, when verbose (``would`` first in a dry run)."""
        if self.verbose:
            with self._lock:
                print(("would " if self.dry_run else "") + line, file=self.out, flush=True)

    def summary(self, scope: str, *, server_side: bool, listed: bool, requests: str) -> str:
        """The last line of a run: what it did, without the verdict."""
        stats = self.stats
        return (
            f"{'dry run: ' if self.dry_run else ''}{scope}, "
            f"{count(stats.manifests, 'manifest')} ({stats.manifests_copied} copied), "
            f"{count(stats.blobs_copied, 'blob')} copied "
            f"({stats.bytes_copied} bytes, {'server-side' if server_side else 'streamed'}), "
            f"{stats.blobs_skipped} already there, {stats.links_written} links written"
            f"{f' ({stats.links_kept} already there)' if listed else ''}, "
            f"{stats.links_deleted} deleted, "
            + (f"{count(len(self.kept), 'delete')} kept, " if self.kept else "")
            + (f"{count(len(self.refused), 'tag')} refused, " if self.refused else "")
            + requests
        )


def repaired(
    plan: Plan, report: RunReport, layout: Layout, tags: Iterable[tuple[str, str, str]]
) -> int:
    """How many of ``tags`` (``repo, tag, digest``) the run wrote anything of that a pull
    reads: in a full pass, each one is a repair (a lost notification, a damaged mirror)."""
    written, copied = report.written, report.copied
    if not written and not copied:
        return 0

    def touched(repo: str, tag: str, digest: str) -> bool:
        closure = plan.closure(digest)
        if closure is None:
            return False
        manifests, blobs = closure
        return (
            layout.tag_current_link(repo, tag) in written
            or any(m in copied or layout.revision_link(repo, m) in written for m in manifests)
            or any(
                b.digest in copied or layout.layer_link(repo, b.digest) in written for b in blobs
            )
        )

    return sum(1 for item in tags if touched(*item))


def count(number: int, noun: str) -> str:
    """``"1 blob"``, ``"3 blobs"``: what a summary line says of ``number`` things."""
    return f"{number} {noun}{'' if number == 1 else 's'}"
