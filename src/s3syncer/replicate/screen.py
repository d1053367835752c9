"""What of a run's pushed manifests is not copied, and is no failure: gone, or refused.

* gone: the source no longer has the manifest (deleted, or collected since its event);
* refused: its closure is past a limit (:mod:`.plan`), so no retry can copy it.

Failing on either would fail every later run too (the daemon hands a failed run's events to
the next one) and copy nothing more; each is said once instead.
"""

from __future__ import annotations

from .changes import Changes
from .plan import Plan
from .pool import Pool
from .report import RunReport
from .sides import Side

Item = tuple[str, str]


def refused(plan: Plan, changes: Changes, pushed: list[Item], report: RunReport) -> set[Item]:
    """The pushed manifests whose closure is past a limit, each named with its tags."""
    found = {(repo, d): why for repo, d in pushed if (why := plan.refusal(d))}
    tagged: dict[Item, list[str]] = {}
    for repo, tag, digest in changes.tag_pushes():
        tagged.setdefault((repo, digest), []).append(f"{repo}:{tag}")
    for (repo, digest), why in sorted(found.items()):
        for name in tagged.get((repo, digest), [f"{repo}@{digest}"]):
            report.refuse(f"{name}: refused, {why} ({digest}): not mirrored")
    return set(found)


def gone_from_source(
    source: Side, plan: Plan, pushed: list[Item], pool: Pool, report: RunReport
) -> set[Item]:
    """The pushed manifests that the source no longer has: unreadable, no revision link.

    The repository must still be there: a wrong ``--source`` has none of them, and that is
    a failure.
    """
    unreadable = [(repo, d) for repo, d in pushed if plan.manifests[d].error]
    layout = source.layout

    def gone(item: Item) -> bool:
        try:
            return source.head_size(layout.revision_link(*item)) is None and (
                source.has_keys(layout.repository_keys(item[0]))
            )
        except Exception:
            return False  # cannot tell: the manifest's own error is reported

    found = pool.map(gone, unreadable, False)
    result = {item for item, is_gone in zip(unreadable, found, strict=True) if is_gone}
    for repo, digest in sorted(result):
        report.skip(f"{repo}@{digest}: no longer in the source, skipped")
    return result
