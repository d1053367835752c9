"""The mirror's objects a run writes and deletes one at a time: links, tags, revisions.

:class:`MirrorWriter` writes each small object (said when verbose, counted, skipped in a dry
run), keeps a link already right when the run listed the mirror, and deletes a tag's or a
revision's objects in the order that keeps the mirror restorable.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from .layout import link_body
from .plan import read_link
from .report import RunReport
from .sides import Listed, Side, describe, is_not_found


class MirrorWriter:
    """Writes and deletes the mirror's small objects for one run."""

    def __init__(
        self,
        source: Side,
        dest: Side,
        report: RunReport,
        *,
        present: Mapping[str, Listed] | None = None,
        dry_run: bool = False,
    ) -> None:
        self.source, self.dest, self.report = source, dest, report
        # a full pass rewrites nothing already right (a PUT makes a new version in a versioned
        # bucket on every run). It lists the mirror's repositories/ tree once (sizes, ETags)
        # rather than send a HEAD per link: a few requests a thousand links, not a thousand.
        self.present = present
        self.dry_run = dry_run

    def put(self, key: str, body: bytes, what: str) -> bool:
        """Write a small object (said first); False, with the problem reported, if it fails."""
        self.report.say(f"write {what}")
        if self.dry_run:
            return True
        try:
            self.dest.put(key, body)
        except Exception as exc:
            self.report.problem(f"{what}: cannot write {self.dest.url(key)}: {describe(exc)}")
            return False
        return True

    def _present(self, key: str, body: bytes) -> bool:
        """Whether ``key`` already holds ``body`` (its size suffices for a key named by digest).

        A link is looked up in :attr:`present` when the run listed the mirror: a link of the
        right size may name another digest, so its ETag (the MD5 of what it holds) must match
        too, and the link is read when the ETag cannot tell. A ``current/link`` too: the runner
        never runs the command twice at once, so nothing moved it since the listing, and a
        repeat pass reads no link at all (the source is read again before any tag is written).
        """
        listed = self.present if key.startswith(self.dest.layout.repositories) else None
        try:
            if listed is None:
                return self.dest.head_size(key) == len(body)
            found = listed.get(key)
            if found is None:
                return False
            known = found.holds(body)
            if known is not None:
                return known
            return self.dest.read_small(key, len(body) + 1) == body
        except Exception:
            return False  # absent, unreadable or larger: write it

    def link(
        self, key: str, digest: str, what: str, *, unless: Callable[[], bool] | None = None
    ) -> bool:
        """Write a link file, unless the run listed the mirror and it points at ``digest``.

        ``unless``, asked only when the link is to be written, may call the write off.
        """
        body = link_body(digest)
        if self.present is not None and self._present(key, body):
            self.report.stats.add(links_kept=1)
            return True
        if unless is not None and unless():
            return True
        ok = self.put(key, body, what)
        if ok:
            self.report.stats.add(links_written=1)
            self.report.wrote(key)
        return ok

    def moved(self, item: tuple[str, str, str]) -> bool:
        """Whether --all should leave a tag alone: it moved in the source during the run.

        --all reads every tag first and writes them last, hours later for a large seed. A tag
        pushed in between has its own event, whose run may have mirrored it already: writing
        the digest read at the start would put an older image back, and no event would come
        to correct it. Only a tag about to be written is read again.
        """
        repo, tag, digest = item
        try:
            now = read_link(self.source, self.source.layout.tag_current_link(repo, tag))
        except Exception as exc:
            if not is_not_found(exc):
                return False  # cannot tell: write what the run copied
            now = "nothing (deleted)"
        if now == digest:
            return False
        self.report.skip(
            f"{repo}:{tag}: moved in the source during the run (to {now}): left to its event"
        )
        return True

    def delete_tag(self, item: tuple[str, str]) -> bool:
        """Remove a tag's every object, ``current/link`` first; False if one cannot be."""
        repo, tag = item
        prefix = self.dest.layout.tag_dir(repo, tag)
        try:
            keys = self.dest.list_keys(prefix)
            # current/link first: the tag disappears before its history does.
            keys.sort(key=lambda k: (not k.endswith("/current/link"), k))
            self.report.say(f"delete tag {repo}:{tag} ({len(keys)} objects)")
            if self.dry_run:
                return True
            for key in keys:
                self.dest.delete(key)
        except Exception as exc:
            self.report.problem(f"{repo}:{tag}: cannot delete {prefix}: {describe(exc)}")
            return False
        self.report.stats.add(links_deleted=len(keys))
        self.report.removed("tag", repo, tag)
        return True

    def delete_revision(self, item: tuple[str, str]) -> bool:
        """Remove a manifest's revision link; False if it cannot be."""
        repo, digest = item
        key = self.dest.layout.revision_link(repo, digest)
        self.report.say(f"delete revision link {repo}@{digest}")
        if self.dry_run:
            return True
        try:
            self.dest.delete(key)
        except Exception as exc:
            self.report.problem(f"{repo}@{digest}: cannot delete {key}: {describe(exc)}")
            return False
        self.report.stats.add(links_deleted=1)
        self.report.removed("revision", repo, digest)
        return True
