"""What one run copies: the manifests it reads, their closures, and what succeeded so far.

A manifest's closure is every child manifest and blob reachable from it. The copier writes a
revision link only once the whole closure is in the mirror, and a tag only after that; the
verifier checks the same closure. Both read manifests through :func:`fetch_manifest`.

Anyone who may push may push a hostile closure: a chain of a thousand indexes each listing the
previous one, or an index of many 4 MiB manifests. The walk is iterative (no recursion limit
to hit), reads no deeper than :data:`MAX_DEPTH` levels, keeps each manifest's references but
not its bytes, and parses one large manifest at a time; a closure past a limit is *refused*:
that tag alone is named and left out, and every other tag is copied.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar, cast

from .cache import ClosureCache
from .layout import BlobRef, LayoutError, check_digest, content_digest, parse_manifest
from .sides import Listed, Side, TooLargeError, describe

MAX_MANIFEST_BYTES = 4 * 1024 * 1024  # Distribution's own limit on a manifest PUT
MAX_LINK_BYTES = 1024
# Real images nest two or three levels (an index, its platforms, an attestation index).
MAX_DEPTH = 16
# A closure's manifests together; real indexes of dozens of platforms hold well under 1 MiB.
MAX_CLOSURE_BYTES = 32 * 1024 * 1024
# Parsing JSON takes several times its size in memory: above this, one parse at a time.
LARGE_MANIFEST = 256 * 1024
_large_parse = threading.Lock()


@dataclass(slots=True)
class Manifest:
    """One manifest as read from a side: its size and references, or why it is unusable."""

    digest: str
    size: int = 0
    children: tuple[str, ...] = ()
    blobs: tuple[BlobRef, ...] = ()
    error: str | None = None
    # its bytes themselves cannot be mirrored (too large, not a manifest this tool reads):
    # no retry helps, so a closure with it is refused rather than failed
    unusable: bool = False


def read_manifest(side: Side, digest: str) -> tuple[bytes | None, str | None]:
    """A manifest's bytes from ``side`` checked against ``digest``; or why they cannot be."""
    key = side.layout.blob_data(digest)
    try:
        data = side.read_small(key, MAX_MANIFEST_BYTES)
    except TooLargeError:
        return None, f"manifest {digest} is larger than {MAX_MANIFEST_BYTES} bytes"
    except Exception as exc:
        return None, f"manifest {digest}: {side.location.bucket} {key}: {describe(exc)}"
    algorithm, _ = check_digest(digest)
    if content_digest(data, algorithm) != digest:
        return None, f"manifest {digest}: {key} does not match its digest"
    return data, None


def fetch_manifest(side: Side, digest: str) -> Manifest:
    """Read a manifest from ``side``, check it against ``digest``, keep what it references."""
    data, error = read_manifest(side, digest)
    if data is None:
        too_large = error is not None and error.endswith(f"larger than {MAX_MANIFEST_BYTES} bytes")
        return Manifest(digest, error=error, unusable=too_large)
    try:
        if len(data) > LARGE_MANIFEST:
            with _large_parse:
                refs = parse_manifest(data)
        else:
            refs = parse_manifest(data)
    except LayoutError as exc:
        return Manifest(digest, len(data), error=f"manifest {digest}: {exc}", unusable=True)
    return Manifest(digest, len(data), refs.children, refs.blobs)


Mapper = Callable[[Callable[[str], Manifest], list[str], Manifest | None], list[Manifest | None]]


def discover(
    side: Side,
    roots: Iterable[str],
    map_: Mapper,
    cache: ClosureCache | None = None,
    listed: Mapping[str, Listed] | None = None,
) -> dict[str, Manifest]:
    """Fetch the manifests reachable from ``roots``, level by level, ``map_`` in parallel.

    No deeper than :data:`MAX_DEPTH` levels below a root: a closure that goes on is refused
    by :meth:`Plan.closure`, which finds the level past it unread. A manifest in ``cache`` is
    not read, when ``listed`` (the side's ``blobs/`` tree, if the run listed it) shows it.
    """
    found: dict[str, Manifest] = {}
    # one object for each digest and each blob reference, however many manifests name it:
    # the tags of a registry share their base layers, and a full pass holds every manifest
    shared: dict[object, object] = {}
    level = list(dict.fromkeys(roots))
    for _depth in range(MAX_DEPTH + 1):
        if not level:
            break
        results = map_(lambda digest: _cached_or_fetched(side, digest, cache, listed), level, None)
        for digest, manifest in zip(level, results, strict=True):
            if manifest is None:
                found[digest] = Manifest(digest, error=f"manifest {digest}: failed")
            else:
                found[digest] = _share(manifest, shared)
        level = list(
            dict.fromkeys(child for d in level for child in found[d].children if child not in found)
        )
    return found


def _share(manifest: Manifest, shared: dict[object, object]) -> Manifest:
    """``manifest`` with its children and blob references replaced by equal ones already
    held, if any (``shared`` maps each to itself)."""
    manifest.children = tuple(cast("str", shared.setdefault(c, c)) for c in manifest.children)
    manifest.blobs = tuple(cast("BlobRef", shared.setdefault(b, b)) for b in manifest.blobs)
    return manifest


def _cached_or_fetched(
    side: Side, digest: str, cache: ClosureCache | None, listed: Mapping[str, Listed] | None
) -> Manifest:
    """A manifest from the cache (a digest's references never change), or read and cached."""
    if cache is None:
        return fetch_manifest(side, digest)
    refs = cache.manifest(digest)
    if refs is not None:
        there = None if listed is None else listed.get(side.layout.blob_data(digest))
        if listed is None or (there is not None and there.size == refs[0]):
            return Manifest(digest, *refs)
    manifest = fetch_manifest(side, digest)
    if manifest.error is None:
        cache.put_manifest(digest, (manifest.size, manifest.children, manifest.blobs))
    return manifest


def read_link(side: Side, key: str) -> str:
    """The digest a link file holds; LayoutError when it holds something else."""
    return parse_link(side.read_small(key, MAX_LINK_BYTES))


def parse_link(data: bytes) -> str:
    """The digest a link file's bytes hold; LayoutError when they hold something else."""
    text = data.decode("ascii", "replace").strip()
    check_digest(text)
    return text


Closure = tuple[set[str], set[BlobRef]]
T = TypeVar("T", bound=tuple[Any, ...])


@dataclass
class Plan:
    """The state of one run: fetched manifests, closures, and what succeeded so far."""

    manifests: dict[str, Manifest]
    wanted: list[tuple[str, str, Closure | None]] = field(default_factory=list)
    blob_state: dict[str, str] = field(default_factory=dict)
    link_ok: dict[tuple[str, str], bool] = field(default_factory=dict)
    revision_ok: dict[tuple[str, str], bool] = field(default_factory=dict)
    _closures: dict[str, Closure | None] = field(default_factory=dict)
    _refused: dict[str, str] = field(default_factory=dict)

    def closure(self, digest: str) -> Closure | None:
        """Every manifest digest and blob reachable from ``digest``; None if any is unknown,
        or if the closure is past a limit (:meth:`refusal` then says which)."""
        if digest not in self._closures:
            self._closures[digest] = self._walk(digest)
        return self._closures[digest]

    def refusal(self, digest: str) -> str | None:
        """Why the closure of ``digest`` is refused (past a limit), or None."""
        self.closure(digest)
        return self._refused.get(digest)

    def _walk(self, root: str) -> Closure | None:
        """Breadth first, so each manifest is first met at its least depth."""
        manifests: set[str] = set()
        blobs: set[BlobRef] = set()
        size, queue = 0, deque([(root, 0)])
        while queue:
            digest, depth = queue.popleft()
            if digest in manifests:
                continue
            manifest = self.manifests.get(digest)
            if manifest is not None and manifest.unusable:
                self._refused[root] = f"{manifest.error}, which no retry can mirror"
                return None
            if manifest is None or manifest.error:
                return None  # unreadable: errors() says why
            size += manifest.size
            if manifest.children and depth >= MAX_DEPTH:
                self._refused[root] = f"manifests nested more than {MAX_DEPTH} levels deep"
                return None
            if size > MAX_CLOSURE_BYTES:
                self._refused[root] = f"its manifests hold more than {MAX_CLOSURE_BYTES} bytes"
                return None
            manifests.add(digest)
            blobs.update(manifest.blobs)
            queue.extend((child, depth + 1) for child in manifest.children)
        return manifests, blobs

    def forget(self) -> None:
        """Drop the closures walked so far and the links' state, keeping which blobs are done
        (``blob_state``): a later run walks its own closures again, from ``manifests``."""
        self._closures.clear()
        self.wanted, self.link_ok, self.revision_ok = [], {}, {}

    def errors(self, digest: str) -> list[str]:
        """Why the closure of ``digest`` is unknown: the errors of the manifests it reaches."""
        seen: set[str] = set()
        stack, errors = [digest], []
        while stack:
            manifest = self.manifests.get(stack.pop())
            if manifest is None or manifest.digest in seen:
                continue
            seen.add(manifest.digest)
            if manifest.error:
                errors.append(manifest.error)
            stack.extend(manifest.children)
        return errors

    def complete(self, item: tuple[str, str]) -> bool:
        """Whether a manifest's bytes and its blobs' layer links are in the destination."""
        repo, digest = item
        return self.blob_state.get(digest) == "ok" and all(
            self.link_ok.get((repo, ref.digest), False)
            or (ref.optional and self.blob_state[ref.digest] == "absent")
            for ref in self.manifests[digest].blobs
        )

    def blob_refs(self) -> list[BlobRef]:
        """Every config and layer of the wanted closures, once, preferring a known size."""
        refs: dict[str, BlobRef] = {}
        for _r, _d, c in self.wanted:
            for ref in c[1] if c else ():
                old = refs.get(ref.digest)
                refs[ref.digest] = ref if old is None or old.size is None else old
        return list(refs.values())

    def manifest_digests(self) -> list[str]:
        """Every manifest of the wanted closures, sorted."""
        return sorted({m for _r, _d, c in self.wanted if c for m in c[0]})


def runs_of_repositories(items: Iterable[T], size: int) -> Iterator[list[T]]:
    """``items`` (each a tuple whose first element is a repository) in runs of about ``size``,
    each of whole repositories: the items of one repository are gathered into one run, in
    the order the repositories first come. A repository larger than ``size`` is one run."""
    by_repository: dict[str, list[T]] = {}
    for item in items:
        by_repository.setdefault(item[0], []).append(item)
    run: list[T] = []
    for group in by_repository.values():
        if run and len(run) + len(group) > size:
            yield run
            run = []
        run.extend(group)
    if run:
        yield run
