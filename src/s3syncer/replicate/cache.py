"""A content-addressed cache that turns a repeat full pass into listings alone.

Two facts never change, so they can be kept from one run to the next:

* what a manifest references, by its digest (a digest names its bytes, and its bytes their
  references): a cached manifest is not read again;
* which digest a link file holds, by the MD5 of its bytes: a link's plain ETag is that MD5, so
  the listing alone says what a cached link holds, and it is not read again.

The cache lives in ``$S3SYNCER_STATE_DIR/closures.sqlite3`` (a directory the command's
environment names; without it, nothing is cached). It holds no secret and no state that a
run depends on: a missing, unreadable or corrupt file is rebuilt from scratch. Only what a run
checked is stored: a manifest's bytes hashed to its digest, a link read whole.
"""

from __future__ import annotations

import json
import sqlite3
import sys
import threading
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType

from .layout import BlobRef

ENV = "S3SYNCER_STATE_DIR"
FILE = "closures.sqlite3"
_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS links (md5 TEXT PRIMARY KEY, digest TEXT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS manifests (digest TEXT PRIMARY KEY, size INTEGER NOT NULL, "
    "children TEXT NOT NULL, blobs TEXT NOT NULL)",
)
Refs = tuple[int, tuple[str, ...], tuple[BlobRef, ...]]  # size, children, blobs


class ClosureCache:
    """Manifests' references and links' digests, kept across runs (thread-safe)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._db = self._open(path)

    @staticmethod
    def _open(path: Path) -> sqlite3.Connection:
        try:
            db = sqlite3.connect(path, timeout=30, check_same_thread=False)
            for statement in _SCHEMA:
                db.execute(statement)
            db.execute("SELECT count(*) FROM manifests").fetchone()
        except sqlite3.DatabaseError:
            path.unlink(missing_ok=True)  # corrupt: it only ever saves reads, rebuild it
            db = sqlite3.connect(path, timeout=30, check_same_thread=False)
            for statement in _SCHEMA:
                db.execute(statement)
        return db

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> ClosureCache | None:
        """The cache in ``$S3SYNCER_STATE_DIR``, or None when it is unset or unusable."""
        directory = environ.get(ENV)
        if not directory:
            return None
        try:
            Path(directory).mkdir(parents=True, exist_ok=True)
            return cls(Path(directory) / FILE)
        except (OSError, sqlite3.Error) as exc:
            print(f"s3syncer: no closure cache in {directory}: {exc}", file=sys.stderr)
            return None

    def link(self, md5: str) -> str | None:
        """The digest a link whose bytes have MD5 ``md5`` holds, if known."""
        with self._lock:
            row = self._db.execute("SELECT digest FROM links WHERE md5 = ?", (md5,)).fetchone()
        return None if row is None else str(row[0])

    def put_link(self, md5: str, digest: str) -> None:
        """Remember that a link with MD5 ``md5`` holds ``digest``."""
        with self._lock:
            self._db.execute("INSERT OR IGNORE INTO links VALUES (?, ?)", (md5, digest))

    def manifest(self, digest: str) -> Refs | None:
        """The size and references of manifest ``digest``, if known."""
        with self._lock:
            row = self._db.execute(
                "SELECT size, children, blobs FROM manifests WHERE digest = ?", (digest,)
            ).fetchone()
        if row is None:
            return None
        blobs = tuple(BlobRef(d, s, bool(o)) for d, s, o in json.loads(row[2]))
        return int(row[0]), tuple(json.loads(row[1])), blobs

    def put_manifest(self, digest: str, refs: Refs) -> None:
        """Remember manifest ``digest``'s size and references (its bytes were checked)."""
        size, children, blobs = refs
        encoded = json.dumps([[b.digest, b.size, b.optional] for b in blobs])
        with self._lock:
            self._db.execute(
                "INSERT OR IGNORE INTO manifests VALUES (?, ?, ?, ?)",
                (digest, size, json.dumps(children), encoded),
            )

    def close(self) -> None:
        """Keep what the run learnt."""
        with self._lock:
            try:
                self._db.commit()
            finally:
                self._db.close()

    def __enter__(self) -> ClosureCache:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
