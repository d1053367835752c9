"""What one run copies: the manifests it reads, their closures, and what succeeded so far.

A manifest's closure is every child manifest and blob reachable from it. The copier writes a
revision link only once the whole closure is in the mirror, and a tag only after that; the
verifier checks the same closure. Both read manifests through :func:`fetch_manifest`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from .layout import BlobRef, LayoutError, check_digest, content_digest, parse_manifest
from .sides import Side, TooLargeError, describe

MAX_MANIFEST_BYTES = 4 * 1024 * 1024
MAX_LINK_BYTES = 1024


@dataclass
class Manifest:
    """One manifest as read from a side: its bytes and references, or why it is unusable."""

    digest: str
    data: bytes | None = None
    children: tuple[str, ...] = ()
    blobs: tuple[BlobRef, ...] = ()
    error: str | None = None


def fetch_manifest(side: Side, digest: str) -> Manifest:
    """Read a manifest's bytes from ``side``, check them against ``digest`` and parse them."""
    key = side.layout.blob_data(digest)
    manifest = Manifest(digest)
    try:
        data = side.read_small(key, MAX_MANIFEST_BYTES)
    except TooLargeError:
        manifest.error = f"manifest {digest} is larger than {MAX_MANIFEST_BYTES} bytes"
        return manifest
    except Exception as exc:
        manifest.error = f"manifest {digest}: {side.location.bucket} {key}: {describe(exc)}"
        return manifest
    algorithm, _ = check_digest(digest)
    if content_digest(data, algorithm) != digest:
        manifest.error = f"manifest {digest}: {key} does not match its digest"
        return manifest
    try:
        refs = parse_manifest(data)
    except LayoutError as exc:
        manifest.error = f"manifest {digest}: {exc}"
        return manifest
    manifest.data, manifest.children, manifest.blobs = data, refs.children, refs.blobs
    return manifest


Mapper = Callable[[Callable[[str], Manifest], list[str], Manifest | None], list[Manifest | None]]


def discover(side: Side, roots: Iterable[str], map_: Mapper) -> dict[str, Manifest]:
    """Fetch every manifest reachable from ``roots``, level by level, ``map_`` in parallel."""
    found: dict[str, Manifest] = {}
    level = list(dict.fromkeys(roots))
    while level:
        results = map_(lambda digest: fetch_manifest(side, digest), level, None)
        for digest, manifest in zip(level, results, strict=True):
            found[digest] = manifest or Manifest(digest, error=f"manifest {digest}: failed")
        level = list(
            dict.fromkeys(child for d in level for child in found[d].children if child not in found)
        )
    return found


def read_link(side: Side, key: str) -> str:
    """The digest a link file holds; LayoutError when it holds something else."""
    text = side.read_small(key, MAX_LINK_BYTES).decode("ascii", "replace").strip()
    check_digest(text)
    return text


Closure = tuple[set[str], set[BlobRef]]


@dataclass
class Plan:
    """The state of one run: fetched manifests, closures, and what succeeded so far."""

    manifests: dict[str, Manifest]
    wanted: list[tuple[str, str, Closure | None]] = field(default_factory=list)
    blob_state: dict[str, str] = field(default_factory=dict)
    link_ok: dict[tuple[str, str], bool] = field(default_factory=dict)
    revision_ok: dict[tuple[str, str], bool] = field(default_factory=dict)
    _closures: dict[str, Closure | None] = field(default_factory=dict)

    def closure(self, digest: str, path: tuple[str, ...] = ()) -> Closure | None:
        """Every manifest digest and blob reachable from ``digest``; None if any is unknown."""
        if digest in self._closures:
            return self._closures[digest]
        manifest = self.manifests.get(digest)
        result: Closure | None = None
        if manifest is not None and not manifest.error and digest not in path:
            result = ({digest}, set(manifest.blobs))
            for child in manifest.children:
                sub = self.closure(child, (*path, digest))
                if sub is None:
                    result = None
                    break
                result[0].update(sub[0])
                result[1].update(sub[1])
        self._closures[digest] = result
        return result

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
