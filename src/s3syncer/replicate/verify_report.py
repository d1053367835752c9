"""What ``verify`` found, for people (one line per broken tag) and for machines (JSON)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .catalog import Tag
from .report import count

PROG = "s3syncer verify"


@dataclass
class Report:
    """What verify found: how much it checked, and what each broken tag misses."""

    tags: int = 0
    manifests: int = 0
    blobs: int = 0
    deep: bool = False
    broken: dict[Tag, list[str]] = field(default_factory=dict)
    requests: int = 0
    # tags deleted in the source that the mirror keeps for their window: no gap, said apart
    kept: dict[Tag, str] = field(default_factory=dict)

    @property
    def complete(self) -> bool:
        """Whether every tag of the source can be pulled from the mirror."""
        return not self.broken

    def lines(self) -> list[str]:
        """One line per broken ``repo:tag``, naming what is missing; then the kept tags."""
        broken = [
            f"{repo}:{tag}: {'; '.join(missing)}" for (repo, tag), missing in self.broken.items()
        ]
        kept = [f"kept: {repo}:{tag} ({why})" for (repo, tag), why in self.kept.items()]
        return broken + kept

    def summary(self) -> str:
        """The last line: what was checked, and the verdict."""
        broken = count(len(self.broken), "tag")
        verdict = "complete" if self.complete else f"INCOMPLETE, {broken} broken"
        return (
            f"{PROG}: {count(self.tags, 'tag')}, {count(self.manifests, 'manifest')}, "
            f"{count(self.blobs, 'blob')} checked{' (sha256)' if self.deep else ''}, "
            + (f"{count(len(self.kept), 'deleted tag')} kept, " if self.kept else "")
            + f"{self.requests} S3 requests; {verdict}"
        )

    def result(self) -> dict[str, Any]:
        """The run's result file, in the shape the daemon reads (docs/runner.md); a proof
        repairs and deletes nothing, so it reports what it found broken instead."""
        return {
            "command": "verify",
            "fullPass": True,
            "ok": self.complete,
            "tags": {"checked": self.tags, "broken": len(self.broken), "kept": len(self.kept)},
        }

    def as_json(self) -> dict[str, Any]:
        """The report for machines (``--json``)."""
        return {
            "complete": self.complete,
            "tags": self.tags,
            "manifests": self.manifests,
            "blobs": self.blobs,
            "deep": self.deep,
            "requests": self.requests,
            "kept": [
                {"repository": repo, "tag": tag, "why": why}
                for (repo, tag), why in self.kept.items()
            ],
            "broken": [
                {"repository": repo, "tag": tag, "missing": missing}
                for (repo, tag), missing in self.broken.items()
            ],
        }
