"""Events are hints, the source is the truth: what a run writes is what the source holds.

An event says where to look, never what to write. Anyone with the webhook's token (or anyone
at all, with no auth configured) can send one, and a registry replays old ones; so before a
run writes or deletes anything an event names, it reads the source:

* a pushed tag is written as the source's ``current/link`` holds it now (a replayed old push
  writes the current digest, not the old one); a tag the source does not have is left alone;
* a deleted tag is deleted only when the source no longer has it; when it has, the mirror
  gets what it holds;
* a manifest pushed by digest is copied only when the source's repository has its revision
  link (a forged push cannot make another repository serve it); one deleted by digest is
  deleted only when that link is gone from the source.

A forged or replayed event costs a read, never the mirror's content. A read that fails for
any reason but "not there" is a problem: the run fails and its events come back next run.
"""

from __future__ import annotations

from .catalog import Tag
from .changes import Changes
from .plan import read_link
from .pool import Pool
from .report import RunReport
from .sides import Side, describe, is_not_found

_UNREAD = "unread"  # a source read that failed: neither there nor absent


def _source_tag(source: Side, tag: Tag) -> str | None:
    """The digest the source's tag points at; None when it has no such tag; raise otherwise."""
    try:
        return read_link(source, source.layout.tag_current_link(*tag))
    except Exception as exc:
        if is_not_found(exc):
            return None
        raise


def heed(
    source: Side, changes: Changes, pool: Pool, report: RunReport, *, tags: bool = True
) -> Changes:
    """``changes`` as the source bears them out; what it does not, said in ``report``.

    With ``tags`` false (a full pass, whose tags were read from the source just before) only
    tag deletes and the manifests named by digest are checked.
    """
    checked = [t for t, d in changes.tags.items() if tags or d is None]

    def read(tag: Tag) -> str | None:
        try:
            return _source_tag(source, tag)
        except Exception as exc:
            report.problem(f"{tag[0]}:{tag[1]}: cannot read the source's tag: {describe(exc)}")
            return _UNREAD

    unread: str | None = _UNREAD
    for tag, now in zip(checked, pool.map(read, checked, unread), strict=True):
        _settle_tag(changes, tag, now, report)
    by_tag = _pushed_by_tag(changes)  # a tag the source holds vouches for its manifest
    manifests = [item for item in changes.manifests if item not in by_tag]
    found = pool.map(lambda item: _has_revision(source, item, report), manifests, None)
    for item, there in zip(manifests, found, strict=True):
        _settle_manifest(changes, item, there, report)
    return changes


def _settle_tag(changes: Changes, tag: Tag, now: str | None, report: RunReport) -> None:
    """Make ``changes.tags[tag]`` what the source holds (``now``), or drop it."""
    said, name = changes.tags[tag], f"{tag[0]}:{tag[1]}"
    if now == _UNREAD:
        del changes.tags[tag]
    elif now is None and said is not None:
        report.skip(f"{name}: not in the source (an old or forged push event): left alone")
        del changes.tags[tag]
    elif now is not None and said is None:
        report.skip(f"{name}: still in the source (at {now}), not deleted: mirrored as it is")
        changes.tags[tag] = now
        changes.manifests[(tag[0], now)] = True
    elif now is not None and now != said:
        report.skip(f"{name}: the source points at {now}, not the event's {said}: {now} mirrored")
        changes.tags[tag] = now
        changes.manifests[(tag[0], now)] = True


def _has_revision(source: Side, item: tuple[str, str], report: RunReport) -> bool | None:
    """Whether the source's repository has manifest ``item``; None when it cannot tell."""
    try:
        return source.head_size(source.layout.revision_link(*item)) is not None
    except Exception as exc:
        report.problem(f"{item[0]}@{item[1]}: cannot read the source: {describe(exc)}")
        return None


def _settle_manifest(
    changes: Changes, item: tuple[str, str], there: bool | None, report: RunReport
) -> None:
    """Keep a manifest push or delete only when the source bears it out."""
    pushed, name = changes.manifests[item], f"{item[0]}@{item[1]}"
    if there is None:
        del changes.manifests[item]
    elif pushed and not there:
        report.skip(
            f"{name}: no longer in the source, skipped (deleted or collected since its event, "
            "or a forged event)"
        )
        del changes.manifests[item]
    elif not pushed and there:
        report.skip(f"{name}: still in the source, not deleted")
        del changes.manifests[item]


def _pushed_by_tag(changes: Changes) -> set[tuple[str, str]]:
    """The manifests that the tags to write point at (each read from the source)."""
    return {(repo, digest) for (repo, _t), digest in changes.tags.items() if digest}
