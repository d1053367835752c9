"""Blob bodies, source to mirror: one request up to a limit, parallel parts above it.

* Server-side, a blob up to ``server_copy_limit`` is one ``CopyObject``; a larger one is copied
  in 64 MiB ``UploadPartCopy`` parts in parallel (:mod:`.parts`).
* Streamed, a sha256 blob up to ``stream_put_limit`` is one ``PutObject`` whose body is the
  source response itself, read as it is sent and hashed on the way (:mod:`.source_stream`):
  no part of it is held in memory. A larger one is fetched in ranged GETs and uploaded in
  parts in parallel, hashed in order, and its upload completed only once its digest is right.
  So is a blob of another digest (sha384, sha512), whatever its size: no checksum header can
  carry its digest, and for a ``PutObject`` without one botocore computes a CRC32 over plain
  http by reading the whole body first, then rewinds it, which reads the source twice. A
  part's bytes are in memory, so its CRC32 costs no second read.

A sha256 blob's PutObject also carries its digest as ``x-amz-checksum-sha256``: the store
checks the bytes it receives and refuses them if they differ, so a bad copy is never written.
Once a store has confirmed a digest that way (its answer repeats the checksum), later blobs of
the run are not hashed here too. Until then, and for a store that does not confirm, each blob
is hashed as it passes and a mismatch deletes what was written.
"""

from __future__ import annotations

import base64
import threading
from collections.abc import Callable
from typing import IO, TYPE_CHECKING, Any, cast

from .layout import check_digest
from .parts import PartPool
from .sides import Side, refused_digest
from .sizes import (
    ONE_REQUEST_MAX,
    SERVER_COPY_LIMIT,
    SERVER_PART,
    STREAM_PART,
    STREAM_PUT_LIMIT,
    part_size,
)
from .source_stream import CopyMismatchError, SourceStream

if TYPE_CHECKING:
    from mypy_boto3_s3.type_defs import CopySourceTypeDef

__all__ = ["CopyMismatchError", "Transfers"]


class Transfers:
    """Copies blob bodies from ``source`` to ``dest``; :meth:`close` once the run is over."""

    def __init__(
        self,
        source: Side,
        dest: Side,
        *,
        server_side: bool,
        jobs: int,
        server_copy_limit: int = SERVER_COPY_LIMIT,
        stream_put_limit: int = STREAM_PUT_LIMIT,
    ) -> None:
        self.source, self.dest = source, dest
        self.server_side = server_side
        self.server_copy_limit = min(server_copy_limit, ONE_REQUEST_MAX)
        self.stream_put_limit = min(stream_put_limit, ONE_REQUEST_MAX)
        self.parts = PartPool(source, dest, jobs)
        self._store_checks_digest = False  # learnt from the store's first confirmed PutObject
        # a streamed blob holds two requests (its GET and its PUT): jobs / 2 of them at once
        # keep `jobs` requests in flight, as the parts do (rclone: 4 transfers)
        self._streams = threading.BoundedSemaphore(max(1, jobs // 2))

    def copy(self, digest: str, size: int) -> None:
        """Copy blob ``digest`` of ``size`` bytes; raise on an S3 error or a content mismatch."""
        src_key, dst_key = self.source.layout.blob_data(digest), self.dest.layout.blob_data(digest)
        if self.server_side and size <= self.server_copy_limit:
            source: CopySourceTypeDef = {"Bucket": self.source.bucket, "Key": src_key}
            self.dest.client.copy_object(Bucket=self.dest.bucket, Key=dst_key, CopySource=source)
        elif self.server_side:
            self.parts.server_copy(src_key, dst_key, size, part_size(size, SERVER_PART))
        elif size <= self.stream_put_limit and (digest.startswith("sha256:") or size == 0):
            with self._streams:
                self._stream_put(digest, src_key, dst_key, size)
        else:
            self.parts.stream_copy(digest, src_key, dst_key, size, part_size(size, STREAM_PART))

    def _stream_put(self, digest: str, src_key: str, dst_key: str, size: int) -> None:
        algorithm, hex_digest = check_digest(digest)
        checksum = None
        if algorithm == "sha256":
            checksum = base64.b64encode(bytes.fromhex(hex_digest)).decode()
        # a store that checks the digest itself makes hashing here too wasted work
        hashing = checksum is None or not self._store_checks_digest
        body = SourceStream(self._open_source(src_key, size), algorithm, size, hashing=hashing)
        extra: dict[str, Any] = {"ChecksumSHA256": checksum} if checksum else {}
        try:
            response = self.dest.client.put_object(
                Bucket=self.dest.bucket,
                Key=dst_key,
                Body=cast("IO[bytes]", body),
                ContentLength=size,
                **extra,
            )
        except Exception as exc:
            if hashing and body.size == size:  # the store refused what it got whole: say why
                body.check(digest, size)
            if refused_digest(exc):
                raise CopyMismatchError(
                    f"the mirror refused its content: it is not {digest}"
                ) from exc
            raise
        finally:
            body.close()
        if checksum is not None and response.get("ChecksumSHA256") == checksum:
            self._store_checks_digest = True
            return
        try:
            if hashing:
                body.check(digest, size)
            else:  # the store stopped confirming: read back what it holds
                self._check_written(digest, dst_key)
        except CopyMismatchError:
            self.dest.delete(dst_key)
            raise

    def _check_written(self, digest: str, key: str) -> None:
        written = self.dest.content_digest(key, digest.partition(":")[0])
        if written != digest:
            raise CopyMismatchError(f"the mirror holds {written}, not the blob")

    def _open_source(self, key: str, size: int) -> Callable[[], Any]:
        """Opens ``key`` of the source; CopyMismatchError unless it has ``size`` bytes."""

        def open_body() -> Any:
            response = self.source.client.get_object(Bucket=self.source.bucket, Key=key)
            if response["ContentLength"] != size:
                response["Body"].close()
                raise CopyMismatchError(f"source has {response['ContentLength']} bytes")
            return response["Body"]

        return open_body

    def close(self) -> None:
        """Wait for parts in flight and stop the pool's threads."""
        self.parts.close()
