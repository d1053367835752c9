"""Distribution's storage layout and what a manifest references: pure logic, no I/O.

A CNCF Distribution registry (2.x, 3.x) stores everything under
``[ROOTDIRECTORY/]docker/registry/v2/``:

* ``blobs/<alg>/<hex[:2]>/<hex>/data``: content, addressed by digest (layers, configs and
  manifests alike);
* ``repositories/<name>/_layers/<alg>/<hex>/link``: "this repository may serve blob <digest>";
* ``repositories/<name>/_manifests/revisions/<alg>/<hex>/link``: "manifest <digest> is in
  this repository" (what a pull by digest checks);
* ``repositories/<name>/_manifests/tags/<tag>/current/link``: the digest the tag points at;
* ``repositories/<name>/_manifests/tags/<tag>/index/<alg>/<hex>/link``: every digest the tag
  ever pointed at.

A link file holds the digest as text (``sha256:<hex>``, no newline).
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

V2_PREFIX = "docker/registry/v2"

_HASHES = {"sha256": 64, "sha384": 96, "sha512": 128}
# Used with fullmatch only: `$` also matches before a final newline, which let "team/app\n"
# through as a repository and into object keys.
_DIGEST_RE = re.compile(r"(sha256|sha384|sha512):([0-9a-f]+)")
# distribution/reference: path components of lowercase alphanumerics and separators.
_REPO_RE = re.compile(
    r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*"
)
_TAG_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}")
_TAGS, _CURRENT = "/_manifests/tags/", "/current/link"


class LayoutError(ValueError):
    """A digest, repository, tag or manifest that cannot be mapped to storage safely."""


def check_digest(digest: str) -> tuple[str, str]:
    """Return ``(algorithm, hex)`` of a digest, or raise LayoutError."""
    match = _DIGEST_RE.fullmatch(digest)
    if not match or len(match.group(2)) != _HASHES[match.group(1)]:
        raise LayoutError(f"not a valid digest: {digest!r}")
    return match.group(1), match.group(2)


def check_repository(name: str) -> str:
    """Return a repository name that is safe to put in a key, or raise LayoutError."""
    if len(name) > 255 or not _REPO_RE.fullmatch(name):
        raise LayoutError(f"not a valid repository name: {name!r}")
    return name


def check_tag(tag: str) -> str:
    """Return a tag that is safe to put in a key, or raise LayoutError."""
    if not _TAG_RE.fullmatch(tag):
        raise LayoutError(f"not a valid tag: {tag!r}")
    return tag


def content_digest(data: bytes, algorithm: str = "sha256") -> str:
    """The digest of ``data`` with ``algorithm``."""
    return f"{algorithm}:{hashlib.new(algorithm, data).hexdigest()}"


def link_body(digest: str) -> bytes:
    """The bytes of a link file pointing at ``digest``, as the registry writes them."""
    check_digest(digest)
    return digest.encode("ascii")


@dataclass(frozen=True)
class Layout:
    """Object keys of one registry's storage under an optional root directory."""

    root: str = ""

    @property
    def base(self) -> str:
        """``ROOT/docker/registry/v2`` (no leading or trailing slash)."""
        root = self.root.strip("/")
        return f"{root}/{V2_PREFIX}" if root else V2_PREFIX

    @property
    def repositories(self) -> str:
        """The prefix (ending in ``/``) of every repository's links: what ``--all`` lists."""
        return f"{self.base}/repositories/"

    def tag_of(self, key: str) -> tuple[str, str] | None:
        """``(repository, tag)`` when ``key`` is a tag's ``current/link``, else None."""
        if not key.startswith(self.repositories) or not key.endswith(_CURRENT):
            return None
        repo, sep, tag = key[len(self.repositories) : -len(_CURRENT)].rpartition(_TAGS)
        try:
            return (check_repository(repo), check_tag(tag)) if sep else None
        except LayoutError:
            return None

    def linked(self, key: str) -> tuple[str, str, str] | None:
        """``(kind, repository, digest)`` when ``key`` is a ``_layers`` ("layer") or
        ``_manifests/revisions`` ("revision") link, else None."""
        if not key.startswith(self.repositories) or not key.endswith("/link"):
            return None
        rest = key[len(self.repositories) : -len("/link")]
        for kind, marker in (("layer", "/_layers/"), ("revision", "/_manifests/revisions/")):
            repo, sep, digest = rest.rpartition(marker)
            if sep:
                try:
                    check_repository(repo)
                    check_digest(digest.replace("/", ":", 1))
                except LayoutError:
                    return None
                return kind, repo, digest.replace("/", ":", 1)
        return None

    def blob_of(self, key: str) -> str | None:
        """The digest whose content ``key`` holds (``blobs/ALG/HE/HEX/data``), else None."""
        prefix = f"{self.base}/blobs/"
        if not key.startswith(prefix) or not key.endswith("/data"):
            return None
        parts = key[len(prefix) : -len("/data")].split("/")
        if len(parts) != 3 or not parts[2].startswith(parts[1]) or len(parts[1]) != 2:
            return None
        digest = f"{parts[0]}:{parts[2]}"
        try:
            check_digest(digest)
        except LayoutError:
            return None
        return digest

    def blob_data(self, digest: str) -> str:
        """The key of a blob's content."""
        alg, hexpart = check_digest(digest)
        return f"{self.base}/blobs/{alg}/{hexpart[:2]}/{hexpart}/data"

    def _repo(self, repository: str) -> str:
        return f"{self.base}/repositories/{check_repository(repository)}"

    def repository_keys(self, repository: str) -> str:
        """The prefix of ``repository``'s own keys (``_layers/``, ``_manifests/``, ``_uploads/``).

        Not of the repositories nested under its name: no name component starts with ``_``.
        """
        return f"{self._repo(repository)}/_"

    def layer_link(self, repository: str, digest: str) -> str:
        """The key that lets ``repository`` serve blob ``digest``."""
        alg, hexpart = check_digest(digest)
        return f"{self._repo(repository)}/_layers/{alg}/{hexpart}/link"

    def revision_link(self, repository: str, digest: str) -> str:
        """The key that lets ``repository`` serve manifest ``digest``."""
        alg, hexpart = check_digest(digest)
        return f"{self._repo(repository)}/_manifests/revisions/{alg}/{hexpart}/link"

    def tag_dir(self, repository: str, tag: str) -> str:
        """The prefix (ending in ``/``) holding everything about one tag."""
        return f"{self._repo(repository)}{_TAGS}{check_tag(tag)}/"

    def tag_current_link(self, repository: str, tag: str) -> str:
        """The key holding the digest a tag points at."""
        return f"{self.tag_dir(repository, tag)}{_CURRENT[1:]}"

    def tag_index_link(self, repository: str, tag: str, digest: str) -> str:
        """The key recording that ``tag`` pointed at ``digest``."""
        alg, hexpart = check_digest(digest)
        return f"{self.tag_dir(repository, tag)}index/{alg}/{hexpart}/link"


# --------------------------------------------------------------------------------------------
# Manifests
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class BlobRef:
    """A blob a manifest needs: digest, size when the manifest says it, optional if foreign."""

    digest: str
    size: int | None = None
    optional: bool = False


@dataclass(frozen=True)
class ManifestRefs:
    """What one manifest references: child manifests (index / list) and blobs."""

    children: tuple[str, ...] = ()
    blobs: tuple[BlobRef, ...] = ()


def _descriptor_digest(desc: Any, where: str) -> str:
    if not isinstance(desc, Mapping) or not isinstance(desc.get("digest"), str):
        raise LayoutError(f"{where} has no digest")
    digest: str = desc["digest"]
    check_digest(digest)
    return digest


def _blob_ref(desc: Any, where: str) -> BlobRef:
    digest = _descriptor_digest(desc, where)
    size = desc.get("size")
    urls = desc.get("urls")
    return BlobRef(
        digest,
        size if isinstance(size, int) and not isinstance(size, bool) else None,
        optional=bool(urls),
    )


def parse_manifest(data: bytes) -> ManifestRefs:
    """The children and blobs of a manifest's bytes; raise LayoutError if it is not one.

    Understands OCI image manifests and indexes, Docker schema 2 manifests and manifest lists,
    and Docker schema 1 (``fsLayers``). Layers with ``urls`` (foreign / non-distributable)
    are optional: a registry serves the manifest without them.
    """
    try:
        obj = json.loads(data)
    except (ValueError, UnicodeDecodeError) as exc:
        raise LayoutError(f"manifest is not JSON: {exc}") from None
    if not isinstance(obj, dict):
        raise LayoutError("manifest is not a JSON object")
    if obj.get("schemaVersion") == 1:
        layers = obj.get("fsLayers")
        if not isinstance(layers, list):
            raise LayoutError("schema 1 manifest has no fsLayers")
        blobs = []
        for i, layer in enumerate(layers):
            if not isinstance(layer, dict) or not isinstance(layer.get("blobSum"), str):
                raise LayoutError(f"fsLayers[{i}] has no blobSum")
            check_digest(layer["blobSum"])
            blobs.append(BlobRef(layer["blobSum"]))
        return ManifestRefs(blobs=tuple(dict.fromkeys(blobs)))
    if "manifests" in obj:
        children = obj["manifests"]
        if not isinstance(children, list):
            raise LayoutError("index 'manifests' is not a list")
        digests = [_descriptor_digest(d, f"manifests[{i}]") for i, d in enumerate(children)]
        return ManifestRefs(children=tuple(dict.fromkeys(digests)))
    refs: list[BlobRef] = []
    if "config" in obj:
        refs.append(_blob_ref(obj["config"], "config"))
    layers = obj.get("layers", [])
    if not isinstance(layers, list):
        raise LayoutError("'layers' is not a list")
    refs.extend(_blob_ref(d, f"layers[{i}]") for i, d in enumerate(layers))
    if not refs:
        raise LayoutError("manifest references neither manifests, a config nor layers")
    return ManifestRefs(blobs=tuple(dict.fromkeys(refs)))
