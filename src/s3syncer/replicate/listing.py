"""A listing entry (:class:`Listed`) and a whole listing held compactly (:class:`ListedTree`).

A full pass and ``verify`` hold both sides' listings whole: about ten keys a tag. As a dict of
key strings to objects, each entry cost about 400 bytes (the key, its dict slot, an object, its
ETag string and LastModified float), which past a few tens of thousands of tags was most of the
run's memory. A :class:`ListedTree` keeps the keys, less the listing's prefix, a thousand to a
string, and the rest in flat arrays (an MD5 ETag as its 16 bytes): about the key's own
characters and 45 bytes an entry. It is a read-only ``Mapping[str, Listed]`` in key order;
each lookup builds the small :class:`Listed` it returns.
"""

from __future__ import annotations

import hashlib
from array import array
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import TypeVar, overload

_T = TypeVar("_T")
_HEX = frozenset("0123456789abcdef")


def _is_md5(text: str) -> bool:
    return len(text) == 32 and all(c in _HEX for c in text)


def md5_form(etag: str) -> str | None:
    """An ETag as a value that differs exactly when the bytes do, or None when it cannot be.

    A plain ETag is the MD5 of the bytes: what S3 gives an object written in one request,
    unencrypted or SSE-S3. A one-part multipart ETag (``X-1``) is the MD5 of that MD5, as a
    registry's upload often leaves a blob: so a plain one is turned into that form to compare.
    Other multipart ETags depend on where the parts were cut: no comparison.
    """
    if _is_md5(etag):
        return hashlib.md5(bytes.fromhex(etag), usedforsecurity=False).hexdigest()
    head, _, parts = etag.partition("-")
    return head if parts == "1" and _is_md5(head) else None


@dataclass(frozen=True, slots=True)
class Listed:
    """One key as a listing shows it: its size, its ETag (without the quotes), its archive."""

    size: int
    etag: str
    archive: str | None = None
    tiered: bool = False  # INTELLIGENT_TIERING: only a HEAD tells if it sits in an archive tier
    # the store's LastModified (POSIX seconds, its clock): what the sweep compares with the
    # previous full pass, never with this host's clock
    modified: float = 0.0

    def differs(self, other: Listed | None) -> bool:
        """Whether the listings prove the two objects hold other bytes: their sizes, or ETags
        that both derive from the MD5 of the bytes (:func:`md5_form`) and differ. Same-size
        corruption is caught without reading a byte."""
        if other is None:
            return False
        if self.size != other.size:
            return True
        mine, theirs = md5_form(self.etag), md5_form(other.etag)
        return mine is not None and theirs is not None and mine != theirs

    def holds(self, body: bytes) -> bool | None:
        """Whether the object holds exactly ``body``, as far as the listing tells.

        False when the size differs; True when the ETag is ``body``'s MD5 (what S3 gives an
        object written in one PUT, unencrypted or SSE-S3); None when the ETag cannot tell
        (SSE-KMS, SSE-C and multipart ETags are not the MD5): read the object to know.
        """
        if self.size != len(body):
            return False
        return self.etag == hashlib.md5(body, usedforsecurity=False).hexdigest() or None


# How an entry's ETag is kept (its ``_form``): PLAIN is 32 lowercase hex digits, kept as their
# 16 bytes; 1 to MAX_PARTS is ``HEX-N``, a multipart upload's, its hex kept the same way;
# OTHER (an encrypted object's, a store's own) is kept whole, in a dict: rare.
PLAIN, OTHER = 0, 0xFFFFFFFF
MAX_PARTS = 10_000  # S3's limit on an upload's parts
_TIERED = 1
CHUNK = 1024  # keys to a string


class ListedTree(Mapping[str, Listed]):
    """Every key under ``prefix`` as one listing shows it, in key order, read-only.

    Built by :meth:`add` (in listing order: S3 lists keys in UTF-8 binary order, which is
    Python's order of ``str``) and :meth:`done`; keys that come out of order are sorted by
    :meth:`done`, and a key listed twice keeps its last entry, as a dict would. A lookup is a
    binary search of the keys.
    """

    __slots__ = (
        "_archives",
        "_chunks",
        "_cut",
        "_ends",
        "_etags",
        "_flags",
        "_forms",
        "_last",
        "_modified",
        "_odd",
        "_pending",
        "_sizes",
        "_sorted",
        "prefix",
    )

    def __init__(self, prefix: str = "") -> None:
        self.prefix = prefix
        self._cut = len(prefix)
        # the keys less the prefix, CHUNK to a string: joined as they come, so that a listing
        # never holds each key as a string of its own (about 50 bytes more each), nor all of
        # them twice to join them at its end
        self._chunks: list[str] = []
        self._pending: list[str] = []  # the keys of the chunk being filled
        self._last = ""
        self._ends = array("Q")  # where each key ends in its chunk
        self._sizes = array("q")
        self._modified = array("d")
        self._etags = bytearray()  # 16 bytes an entry
        self._forms = array("I")  # PLAIN, a part count, or OTHER
        self._flags = bytearray()
        self._odd: dict[int, str] = {}  # the ETags kept whole, by entry
        self._archives: dict[int, str] = {}  # the archive an entry sits in, if any: rare
        self._sorted = True

    @classmethod
    def of(cls, entries: Mapping[str, Listed], prefix: str = "") -> ListedTree:
        """A tree holding ``entries`` (any order), every key of which starts with ``prefix``."""
        tree = cls(prefix)
        for key, listed in entries.items():
            tree.add(key, listed)
        return tree.done()

    def add(self, key: str, listed: Listed) -> None:
        """Append ``key``'s entry; ValueError if ``key`` is not under the tree's prefix."""
        if not key.startswith(self.prefix):
            raise ValueError(f"{key!r} is not under {self.prefix!r}")
        rel = key[self._cut :]
        index = len(self._sizes)
        if index and self._sorted and rel <= self._last:
            self._sorted = False
        self._last = rel
        self._ends.append((self._ends[-1] if index % CHUNK else 0) + len(rel))
        self._pending.append(rel)
        if len(self._pending) == CHUNK:
            self._chunks.append("".join(self._pending))
            self._pending = []
        self._sizes.append(listed.size)
        self._modified.append(listed.modified)
        self._flags.append(_TIERED if listed.tiered else 0)
        if listed.archive is not None:
            self._archives[index] = listed.archive
        head, dash, parts = listed.etag.partition("-")
        if _is_md5(head) and not dash:
            form = PLAIN
        elif _is_md5(head) and parts.isdigit() and str(int(parts)) == parts:
            form = int(parts) if 0 < int(parts) <= MAX_PARTS else OTHER
        else:
            form = OTHER
        if form == OTHER:
            self._odd[index] = listed.etag
            self._etags += bytes(16)
        else:
            self._etags += bytes.fromhex(head)
        self._forms.append(form)

    def done(self) -> ListedTree:
        """Join the keys added (sorting them if they came out of order); the tree itself."""
        if not self._sorted:
            self._resort()
        if self._pending:
            self._chunks.append("".join(self._pending))
            self._pending = []
        return self

    def _resort(self) -> None:
        """Rebuild in key order, the last entry of a key listed twice kept: rare, so simple."""
        entries = {self._key(i): self._listed(i) for i in range(len(self._sizes))}  # last wins
        fresh = ListedTree(self.prefix)
        for rel in sorted(entries):
            fresh.add(self.prefix + rel, entries[rel])
        for name in self.__slots__:
            setattr(self, name, getattr(fresh, name))

    def _key(self, i: int) -> str:
        chunk, j = divmod(i, CHUNK)
        if chunk == len(self._chunks):  # not yet joined
            return self._pending[j]
        return self._chunks[chunk][self._ends[i - 1] if j else 0 : self._ends[i]]

    def _listed(self, i: int) -> Listed:
        form = self._forms[i]
        if form == OTHER:
            etag = self._odd[i]
        else:
            etag = self._etags[16 * i : 16 * i + 16].hex()
            if form != PLAIN:
                etag = f"{etag}-{form}"
        tiered = bool(self._flags[i] & _TIERED)
        return Listed(self._sizes[i], etag, self._archives.get(i), tiered, self._modified[i])

    def _find(self, key: object) -> int:
        """The index of ``key``, or -1."""
        if not isinstance(key, str) or not key.startswith(self.prefix):
            return -1
        rel, at = key[self._cut :], self._key
        lo, hi = 0, len(self._ends)
        while lo < hi:
            mid = (lo + hi) // 2
            if at(mid) < rel:
                lo = mid + 1
            else:
                hi = mid
        return lo if lo < len(self._ends) and at(lo) == rel else -1

    def __getitem__(self, key: str) -> Listed:
        i = self._find(key)
        if i < 0:
            raise KeyError(key)
        return self._listed(i)

    @overload
    def get(self, key: str, /) -> Listed | None: ...
    @overload
    def get(self, key: str, default: Listed, /) -> Listed: ...
    @overload
    def get(self, key: str, default: _T, /) -> Listed | _T: ...

    def get(self, key: str, default: object = None, /) -> object:
        """``key``'s entry, or ``default``: one search, no exception."""
        i = self._find(key)
        return default if i < 0 else self._listed(i)

    def __contains__(self, key: object) -> bool:
        return self._find(key) >= 0

    def __iter__(self) -> Iterator[str]:
        prefix = self.prefix
        for i in range(len(self._ends)):
            yield prefix + self._key(i)

    def __len__(self) -> int:
        return len(self._ends)

    def __repr__(self) -> str:
        return f"ListedTree({self.prefix!r}, {len(self)} keys)"
