"""Blob bodies, source to mirror: one request up to a limit, parallel parts above it.

* Server-side, a blob up to ``server_copy_limit`` is one ``CopyObject``; a larger one is copied
  in 64 MiB ``UploadPartCopy`` parts in parallel (:mod:`.parts`).
* Streamed, a blob up to ``stream_put_limit`` is one ``PutObject`` whose body is the source
  response itself, read as it is sent and hashed on the way (:mod:`.source_stream`): no part
  of it is held in memory. A larger one is fetched in ranged GETs and uploaded in parts in
  parallel, hashed in order, and its upload completed only once its digest is right.

A sha256 blob's PutObject also carries its digest as ``x-amz-checksum-sha256``: the store
checks the bytes it receives and refuses them if they differ, so a bad copy is never written.
Without a check on the store's side, the digest computed here still catches it, and the object
is deleted again.
"""

from __future__ import annotations

import base64
from typing import IO, TYPE_CHECKING, Any, cast

from .layout import check_digest
from .parts import PartPool
from .sides import Side
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

    def copy(self, digest: str, size: int) -> None:
        """Copy blob ``digest`` of ``size`` bytes; raise on an S3 error or a content mismatch."""
        src_key, dst_key = self.source.layout.blob_data(digest), self.dest.layout.blob_data(digest)
        if self.server_side and size <= self.server_copy_limit:
            source: CopySourceTypeDef = {"Bucket": self.source.bucket, "Key": src_key}
            self.dest.client.copy_object(Bucket=self.dest.bucket, Key=dst_key, CopySource=source)
        elif self.server_side:
            self.parts.server_copy(src_key, dst_key, size, part_size(size, SERVER_PART))
        elif size <= self.stream_put_limit:
            self._stream_put(digest, src_key, dst_key, size)
        else:
            self.parts.stream_copy(digest, src_key, dst_key, size, part_size(size, STREAM_PART))

    def _stream_put(self, digest: str, src_key: str, dst_key: str, size: int) -> None:
        algorithm, hex_digest = check_digest(digest)
        extra: dict[str, Any] = {}
        if algorithm == "sha256":
            extra["ChecksumSHA256"] = base64.b64encode(bytes.fromhex(hex_digest)).decode()

        def open_body() -> Any:
            response = self.source.client.get_object(Bucket=self.source.bucket, Key=src_key)
            if response["ContentLength"] != size:
                response["Body"].close()
                raise CopyMismatchError(f"source has {response['ContentLength']} bytes")
            return response["Body"]

        body = SourceStream(open_body, algorithm, size)
        try:
            self.dest.client.put_object(
                Bucket=self.dest.bucket,
                Key=dst_key,
                Body=cast("IO[bytes]", body),
                ContentLength=size,
                **extra,
            )
        except Exception:
            if body.size == size:  # the store refused what it got whole: say why if we know
                body.check(digest, size)
            raise
        finally:
            body.close()
        try:
            body.check(digest, size)
        except CopyMismatchError:
            self.dest.delete(dst_key)
            raise

    def close(self) -> None:
        """Wait for parts in flight and stop the pool's threads."""
        self.parts.close()
