"""The copy itself: manifests' closures and the links that serve them, in a safe order.

From the source registry storage to the destination, in an order that never lets the
destination point at content it does not have:

1. every blob (child manifests, configs, layers; each manifest's own bytes);
2. the repository's ``_layers`` links for those blobs;
3. ``_manifests/revisions`` links, children before the index that lists them;
4. the tag's ``index`` link, and 5. the tag's ``current/link`` last.

A full pass of many tags takes them a run of whole repositories at a time (about 2,000 tags),
each run through the five steps: layer, revision and tag links are each one repository's, so
the order holds for each of them; a blob copied by an earlier run is not copied again.

A manifest whose closure is not complete (missing source object, permission error, failed
copy) gets no revision link and no tag; each problem is one line of the run's
:class:`~.report.RunReport`, which counts and prints what the run did.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import TracebackType
from typing import IO

from .cache import ClosureCache
from .changes import Changes
from .layout import BlobRef
from .plan import Plan, discover, runs_of_repositories
from .pool import Pool
from .report import RunReport, Stats, repaired
from .screen import gone_from_source, refused
from .sides import Listed, Side, describe, etags_are_md5
from .sizes import SERVER_COPY_LIMIT, STREAM_PUT_LIMIT
from .transfer import CopyMismatchError, Transfers
from .writes import MirrorWriter

# Tags a run copies at once: what the run holds of each (its closure, its links' state) is
# held for one run at a time, not for every tag of a large registry
RUN_TAGS = 2000


class Replicator:
    """Copies manifests' closures and their links from one registry storage to another.

    A context manager: it owns the run's worker pool and its pool for blob parts.
    """

    def __init__(
        self,
        source: Side,
        dest: Side,
        *,
        jobs: int = 8,
        server_side: bool = False,
        server_copy_limit: int = SERVER_COPY_LIMIT,
        stream_put_limit: int = STREAM_PUT_LIMIT,
        dry_run: bool = False,
        verbose: bool = False,
        present: Mapping[str, Listed] | None = None,
        blobs: tuple[Mapping[str, Listed], Mapping[str, Listed]] | None = None,
        cache: ClosureCache | None = None,
        out: IO[str] | None = None,
    ) -> None:
        self.source, self.dest = source, dest
        self.present = present  # the mirror's repositories/ tree, when a full pass listed it
        self.blobs = blobs  # the blobs/ trees of the source and the mirror, likewise
        self.cache = cache  # manifests' references and links' digests from earlier runs
        self.plan: Plan | None = None  # the last replicate() call's: its manifests, for the sweep
        self.server_side = server_side
        self.dry_run = dry_run
        self.report = RunReport(dry_run=dry_run, verbose=verbose, out=out)
        self._problem, self._skip, self._say = (
            self.report.problem,
            self.report.skip,
            self.report.say,
        )
        self.writer = MirrorWriter(source, dest, self.report, present=present, dry_run=dry_run)
        self.pool = Pool(
            jobs, lambda item, exc: self._problem(f"{item}: unexpected {describe(exc)}")
        )
        self.transfers = Transfers(
            source,
            dest,
            server_side=server_side,
            jobs=jobs,
            server_copy_limit=server_copy_limit,
            stream_put_limit=stream_put_limit,
        )

    def __enter__(self) -> Replicator:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.transfers.close()
        self.pool.close()

    @property
    def stats(self) -> Stats:
        """What the run did so far."""
        return self.report.stats

    @property
    def problems(self) -> list[str]:
        """What failed so far, one line each."""
        return self.report.problems

    @property
    def skipped(self) -> list[str]:
        """What was left alone on purpose, one line each."""
        return self.report.skipped

    # -- the run -------------------------------------------------------------------------

    def replicate(self, changes: Changes, *, delete: bool = False) -> bool:
        """Apply ``changes`` to the destination. True when everything succeeded."""
        pushed = changes.pushed_manifests()
        listed = self.blobs[0] if self.blobs is not None else None
        roots = (d for _r, d in pushed)
        plan = self.plan = Plan(discover(self.source, roots, self.pool.map, self.cache, listed))
        gone = gone_from_source(self.source, plan, pushed, self.pool, self.report)
        past = refused(plan, changes, pushed, self.report)
        pushed = [item for item in pushed if item not in gone and item not in past]
        for error in dict.fromkeys(e for _r, digest in pushed for e in plan.errors(digest)):
            self._problem(error)
        tags: dict[str, list[tuple[str, str, str]]] = {}
        for repo, tag, d in changes.tag_pushes():
            if (repo, d) not in gone and (repo, d) not in past:
                tags.setdefault(repo, []).append((repo, tag, d))
        plan.forget()  # the screening walked every closure: each run walks its own again
        self.report.repaired = 0
        for run in runs_of_repositories(pushed, RUN_TAGS):
            repositories = dict.fromkeys(repo for repo, _d in run)
            self._copy_run(plan, run, [t for repo in repositories for t in tags.pop(repo, [])])
        if tags:  # a tag of no pushed manifest cannot be: reported as not complete, if so
            self._copy_run(plan, [], [t for repo_tags in tags.values() for t in repo_tags])
        if delete:
            self.pool.map(self.writer.delete_tag, changes.tag_deletes(), False)
            self.pool.map(self.writer.delete_revision, changes.manifest_deletes(), False)
        return not self.problems

    def _copy_run(
        self, plan: Plan, run: list[tuple[str, str]], tags: list[tuple[str, str, str]]
    ) -> None:
        """Steps 1. to 5. for the manifests ``run`` pushes (whole repositories) and their
        ``tags``; then forget all but which blobs are done, for the next run."""
        plan.wanted = [(repo, digest, plan.closure(digest)) for repo, digest in run]
        self._copy_blobs(plan)  # 1.
        self._write_layer_links(plan)  # 2.
        self._write_revision_links(plan)  # 3.
        for repo, digest, closure in plan.wanted:
            if closure is not None and not plan.revision_ok.get((repo, digest)):
                self._problem(f"{repo}@{digest}: incomplete in the destination, not linked")
        self._write_tags(plan, tags)  # 4. and 5.
        self.report.repaired += repaired(plan, self.report, self.dest.layout, tags)
        # every link is one repository's, and no later run has a tag of these: what they
        # wrote tells no later tag anything (the blobs copied, any repository's, still do)
        self.report.written.clear()
        plan.forget()

    def _copy_blob(self, ref: BlobRef, *, manifest: bool = False) -> str:
        """Copy one blob unless present with the same size: "ok", "failed" or "absent".

        "absent" is an optional (foreign) layer that the source does not have either. A
        ``manifest``'s bytes are a blob too, but it counts as a manifest copied.
        """
        digest = ref.digest
        src_key, dst_key = self.source.layout.blob_data(digest), self.dest.layout.blob_data(digest)
        # what a failure names: the side and object of the request that failed
        doing = f"cannot read {self.dest.url(dst_key)}"
        try:
            dst_size, size = self._sizes(src_key, dst_key, ref.size)
            if size is None or dst_size != size:
                doing = f"cannot read {self.source.url(src_key)}"
                size = self.source.head_size(src_key)
                if size is None:
                    if ref.optional:
                        return "absent"
                    self._problem(f"blob {digest}: source {src_key} does not exist")
                    return "failed"
            if dst_size == size:
                if not manifest:
                    self.stats.add(blobs_skipped=1)
                return "ok"
            self._say(f"copy {'manifest' if manifest else 'blob'} {digest} ({size} bytes)")
            if not self.dry_run:  # a dry run counts what it would copy, like the run it previews
                doing = f"cannot copy {self.source.url(src_key)} to {self.dest.url(dst_key)}"
                self.transfers.copy(digest, size)
        except CopyMismatchError as exc:
            self._problem(f"blob {digest}: {exc}")
            return "failed"
        except Exception as exc:
            self._problem(f"blob {digest}: {doing}: {describe(exc)}")
            return "failed"
        if manifest:
            self.stats.add(manifests_copied=1, bytes_copied=size)
        else:
            self.stats.add(blobs_copied=1, bytes_copied=size)
        self.report.copied_blob(digest)
        return "ok"

    def _sizes(self, src_key: str, dst_key: str, size: int | None) -> tuple[int | None, int | None]:
        """The mirror's size of a blob and the source's (None: unknown or absent).

        From the full pass's listings when the source's is there (no request at all); a
        mirror blob whose ETag shows other bytes than the source's counts as absent, so it is
        copied again. Otherwise from a HEAD of the mirror's.
        """
        if self.blobs is not None and (src := self.blobs[0].get(src_key)) is not None:
            dst = self.blobs[1].get(dst_key)
            if dst is not None and dst.differs(src) and etags_are_md5(self.source, self.dest, (
                src_key, dst_key)):  # fmt: skip
                self._say(f"copy again {dst_key}: its ETag shows other bytes than the source's")
                return None, src.size
            return (dst.size if dst is not None else None), src.size
        return self.dest.head_size(dst_key), size

    def _copy_blobs(self, plan: Plan) -> None:
        """Copy the blobs and manifests of ``plan.wanted`` that no earlier run has done."""
        manifest_digests = [d for d in plan.manifest_digests() if d not in plan.blob_state]
        self.stats.manifests += len(manifest_digests)

        def put_manifest(digest: str) -> bool:
            # copied like any blob, not written from memory: a run keeps no manifest's bytes
            ref = BlobRef(digest, plan.manifests[digest].size)
            return self._copy_blob(ref, manifest=True) == "ok"

        refs = [ref for ref in plan.blob_refs() if ref.digest not in plan.blob_state]
        results = self.pool.map(self._copy_blob, refs, "failed")
        plan.blob_state.update(
            (ref.digest, state) for ref, state in zip(refs, results, strict=True)
        )
        manifest_results = self.pool.map(put_manifest, manifest_digests, False)
        for digest, ok in zip(manifest_digests, manifest_results, strict=True):
            plan.blob_state[digest] = "ok" if ok else "failed"

    def _write_layer_links(self, plan: Plan) -> None:
        layer_links = sorted(
            {
                (repo, ref.digest)
                for repo, _d, c in plan.wanted
                if c
                for ref in c[1]
                if plan.blob_state[ref.digest] != "absent"
            }
        )

        def write_layer_link(item: tuple[str, str]) -> bool:
            repo, digest = item
            if plan.blob_state[digest] != "ok":
                return False
            key = self.dest.layout.layer_link(repo, digest)
            return self.writer.link(key, digest, f"layer link {repo}@{digest}")

        results = self.pool.map(write_layer_link, layer_links, False)
        plan.link_ok = dict(zip(layer_links, results, strict=True))

    def _write_revision_links(self, plan: Plan) -> None:
        """Leaves first, then each index once all its children are linked."""
        pending = sorted({(repo, m) for repo, _d, c in plan.wanted if c for m in c[0]})

        def write_revision(item: tuple[str, str]) -> bool:
            repo, digest = item
            children = plan.manifests[digest].children
            if not (all(plan.revision_ok[(repo, c)] for c in children) and plan.complete(item)):
                return False
            key = self.dest.layout.revision_link(repo, digest)
            return self.writer.link(key, digest, f"revision link {repo}@{digest}")

        while pending:
            ready = [
                (repo, m)
                for repo, m in pending
                if all((repo, child) in plan.revision_ok for child in plan.manifests[m].children)
            ]
            if not ready:  # digests cannot form a cycle, so this cannot happen; be safe anyway
                break
            results = self.pool.map(write_revision, ready, False)
            plan.revision_ok.update(zip(ready, results, strict=True))
            pending = [item for item in pending if item not in plan.revision_ok]

    def _write_tags(self, plan: Plan, tag_pushes: list[tuple[str, str, str]]) -> None:
        tags = []
        for repo, tag, digest in tag_pushes:
            if plan.revision_ok.get((repo, digest)):
                tags.append((repo, tag, digest))
            else:
                self._problem(f"{repo}:{tag}: not updated, {digest} is not complete")

        def write_tag_index(item: tuple[str, str, str]) -> bool:
            repo, tag, digest = item
            key = self.dest.layout.tag_index_link(repo, tag, digest)
            return self.writer.link(key, digest, f"tag index link {repo}:{tag}@{digest}")

        def write_tag_current(item: tuple[str, str, str]) -> bool:
            repo, tag, digest = item
            key = self.dest.layout.tag_current_link(repo, tag)
            moved = (lambda: self.writer.moved(item)) if self.present is not None else None
            return self.writer.link(key, digest, f"tag {repo}:{tag} -> {digest}", unless=moved)

        index_ok = self.pool.map(write_tag_index, tags, False)
        current = [t for t, ok in zip(tags, index_ok, strict=True) if ok]
        self.pool.map(write_tag_current, current, False)
