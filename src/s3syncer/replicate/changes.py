"""What a run must change in the mirror: registry events replayed to their net effect.

Pure logic, no I/O. ``replicate`` turns an events file into :class:`Changes` with
:func:`replay`; ``replicate --all`` fills :attr:`Changes.tags` from the source's tags.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ..model.event import MANIFEST_MEDIA_TYPES
from .layout import LayoutError, check_digest, check_repository, check_tag


@dataclass
class Changes:
    """The net effect of a list of registry events, replayed in order.

    ``tags`` maps ``(repository, tag)`` to the digest it points at, or None once deleted;
    ``manifests`` maps ``(repository, digest)`` to True (pushed) or False (deleted). The last
    event about a tag or a manifest wins, so a push then a delete in one batch is a delete.
    """

    tags: dict[tuple[str, str], str | None] = field(default_factory=dict)
    manifests: dict[tuple[str, str], bool] = field(default_factory=dict)
    ignored: int = 0
    problems: list[str] = field(default_factory=list)
    # repositories deleted whole (Distribution 3): each of their mirror tags not named since
    repositories: list[str] = field(default_factory=list)

    def pushed_manifests(self) -> list[tuple[str, str]]:
        """``(repository, digest)`` of every manifest to copy, in first-seen order."""
        wanted = dict.fromkeys(key for key, present in self.manifests.items() if present)
        for (repo, _tag), digest in self.tags.items():
            if digest is not None:
                wanted[(repo, digest)] = None
        return list(wanted)

    def tag_pushes(self) -> list[tuple[str, str, str]]:
        """``(repository, tag, digest)`` for every tag to write."""
        return [(r, t, d) for (r, t), d in self.tags.items() if d is not None]

    def tag_deletes(self) -> list[tuple[str, str]]:
        """``(repository, tag)`` for every tag to remove."""
        return [key for key, digest in self.tags.items() if digest is None]

    def manifest_deletes(self) -> list[tuple[str, str]]:
        """``(repository, digest)`` for every revision link to remove."""
        return [key for key, present in self.manifests.items() if not present]


def _is_manifest_target(target: Mapping[str, Any]) -> bool:
    # s3syncer's events file says "kind" for every format (a Harbor push names no media type).
    kind = target.get("kind")
    if isinstance(kind, str) and kind in ("manifest", "blob"):
        return kind == "manifest"
    media_type = target.get("mediaType")
    if isinstance(media_type, str) and media_type in MANIFEST_MEDIA_TYPES:
        return True
    url = target.get("url")
    return isinstance(url, str) and "/manifests/" in url


def _whole_repository(target: Mapping[str, Any]) -> bool:
    """A delete that names a repository and nothing in it: the repository is gone."""
    return not any(target.get(name) for name in ("tag", "digest", "url"))


def replay(events: Iterable[Any]) -> Changes:
    """Reduce raw registry events (as in the events file) to :class:`Changes`.

    * push of a manifest (by tag or by digest): the manifest, and the tag if any;
    * delete with a tag: the tag is deleted;
    * delete with a digest and no tag: the manifest's revision is deleted (Distribution 2.8
      sends the same shape for a blob deleted through the API; only the revision link is
      touched, which a blob never has);
    * delete with neither (Distribution 3's repository delete): every tag of the repository,
      each one the run finds in the mirror, unless a later event names it;
    * blob pushes, pulls, mounts and anything else: ignored (a manifest push brings its blobs).

    An event that names an invalid repository, tag or digest is a problem, not an exception.
    """
    changes = Changes()
    for index, event in enumerate(events):
        target = event.get("target") if isinstance(event, Mapping) else None
        action = event.get("action") if isinstance(event, Mapping) else None
        if not isinstance(target, Mapping) or not isinstance(action, str):
            changes.problems.append(f"event {index}: no action or target")
            continue
        repo, tag, digest = target.get("repository"), target.get("tag"), target.get("digest")
        try:
            if not isinstance(repo, str):
                raise LayoutError("no repository")
            check_repository(repo)
            if tag is not None and tag != "":
                if not isinstance(tag, str):
                    raise LayoutError("tag is not a string")
                check_tag(tag)
            else:
                tag = None
            if digest is not None and digest != "":
                if not isinstance(digest, str):
                    raise LayoutError("digest is not a string")
                check_digest(digest)
            else:
                digest = None
        except LayoutError as exc:
            changes.problems.append(f"event {index} ({action}): {exc}")
            continue
        if action == "push" and digest and _is_manifest_target(target):
            changes.manifests[(repo, digest)] = True
            if tag:
                changes.tags[(repo, tag)] = digest
        elif action == "delete" and tag:
            changes.tags[(repo, tag)] = None
        elif action == "delete" and digest:
            changes.manifests[(repo, digest)] = False
            for key, tagged in list(changes.tags.items()):
                if key[0] == repo and tagged == digest:
                    changes.tags[key] = None
        elif action == "delete" and _whole_repository(target):
            changes.repositories.append(repo)
            for key in list(changes.tags):
                if key[0] == repo:
                    changes.tags[key] = None
        else:
            changes.ignored += 1
    return changes
