"""Blob bodies, source to mirror: one transfer manager per run, bounded in requests and memory.

Small blobs take one request from the run's worker thread: ``CopyObject`` server-side, or a
GET whose bytes are hashed before the PUT. Larger ones go to one s3transfer
``TransferManager`` for the whole run, so multipart parts of every blob share its
``jobs`` request threads instead of each blob starting a pool of its own:

* server-side, one ``CopyObject`` up to ``server_copy_limit`` (5 GiB, S3's largest; like
  ``rclone copy``: one request, no part bookkeeping), ``UploadPartCopy`` of 64 MiB parts above;
* streamed, the source body is read in 5 MiB parts and hashed as it passes; about twice
  ``jobs`` parts are in memory at most, so a 1 GiB layer costs no more memory than a 50 MiB
  one. The digest is known only at the end: a mismatch deletes what was written.
"""

from __future__ import annotations

import hashlib
import threading
from typing import TYPE_CHECKING, Any, cast

from .layout import check_digest
from .sides import Side
from .sizes import SERVER_COPY_LIMIT, SERVER_PART, STREAM_PART

if TYPE_CHECKING:
    from mypy_boto3_s3.type_defs import CopySourceTypeDef
    from s3transfer.futures import TransferFuture
    from s3transfer.manager import TransferManager
    from s3transfer.subscribers import BaseSubscriber


class CopyMismatchError(Exception):
    """Copied content does not match its digest or size."""


class _HashingReader:
    """A read-only, unseekable file object that hashes and counts what passes through it."""

    def __init__(self, raw: Any, algorithm: str) -> None:
        self._raw = raw
        self.hash = hashlib.new(algorithm)
        self.size = 0

    def read(self, amount: int = -1) -> bytes:
        data: bytes = self._raw.read(amount if amount >= 0 else None)
        self.hash.update(data)
        self.size += len(data)
        return data

    def check(self, digest: str, size: int) -> None:
        """Raise CopyMismatchError unless what was read is ``digest`` and ``size`` bytes."""
        got = f"{digest.partition(':')[0]}:{self.hash.hexdigest()}"
        if got != digest or self.size != size:
            raise CopyMismatchError(f"source content has digest {got} and {self.size} bytes")


class _KnownSize:
    """Tells s3transfer a copy's size, so that it does not HEAD the source again.

    Shaped like s3transfer's ``BaseSubscriber`` without importing it: boto3 is optional.
    """

    def __init__(self, size: int) -> None:
        self._size = size

    def on_queued(self, future: TransferFuture, **_kwargs: Any) -> None:
        future.meta.provide_transfer_size(self._size)

    def on_progress(self, **_kwargs: Any) -> None:
        pass

    def on_done(self, **_kwargs: Any) -> None:
        pass


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
    ) -> None:
        self.source, self.dest = source, dest
        self.server_side = server_side
        self.server_copy_limit = min(server_copy_limit, SERVER_COPY_LIMIT)
        self.part = SERVER_PART if server_side else STREAM_PART
        self.jobs = max(1, jobs)
        self._manager: TransferManager | None = None
        self._lock = threading.Lock()

    def copy(self, digest: str, size: int) -> None:
        """Copy blob ``digest`` of ``size`` bytes; raise on an S3 error or a content mismatch."""
        src_key, dst_key = self.source.layout.blob_data(digest), self.dest.layout.blob_data(digest)
        if self.server_side:
            self._server_copy(src_key, dst_key, size)
        else:
            self._stream_copy(digest, src_key, dst_key, size)

    def _server_copy(self, src_key: str, dst_key: str, size: int) -> None:
        source: CopySourceTypeDef = {"Bucket": self.source.bucket, "Key": src_key}
        if size <= self.server_copy_limit:
            self.dest.client.copy_object(Bucket=self.dest.bucket, Key=dst_key, CopySource=source)
            return
        future = self._transfer_manager().copy(
            source,
            self.dest.bucket,
            dst_key,
            subscribers=[cast("BaseSubscriber", _KnownSize(size))],
            source_client=self.source.client,
        )
        future.result()

    def _stream_copy(self, digest: str, src_key: str, dst_key: str, size: int) -> None:
        algorithm, _ = check_digest(digest)
        body = self.source.client.get_object(Bucket=self.source.bucket, Key=src_key)["Body"]
        reader = _HashingReader(body, algorithm)
        if size < self.part:  # at most one part in memory, checked before it is written
            data = reader.read()
            reader.check(digest, size)
            self.dest.put(dst_key, data)
            return
        upload = self._transfer_manager().upload
        # the known size lets s3transfer grow the part past 5 MiB when 10,000 would not do
        known = [cast("BaseSubscriber", _KnownSize(size))]
        future = upload(reader, self.dest.bucket, dst_key, subscribers=known)  # type: ignore[arg-type]
        future.result()
        try:
            reader.check(digest, size)
        except CopyMismatchError:
            self.dest.delete(dst_key)
            raise

    def _transfer_manager(self) -> TransferManager:
        """The run's one manager, made when the first large blob needs it."""
        with self._lock:
            if self._manager is None:
                from s3transfer.manager import (  # noqa: PLC0415 - boto3 is optional
                    TransferConfig,
                    TransferManager,
                )

                # A streamed blob holds a submission thread for its whole transfer, and each
                # such thread needs about two parts while it reads one (http.client copies);
                # the parts read and not yet sent are the rest. An upload waits on its
                # requests, not on the CPU, so `jobs` parts in flight from `jobs / 2` blobs
                # (rclone: 4 x 4 of 5 MiB) keep the link busy in about 2 x jobs parts of
                # memory, whatever the size and number of blobs.
                config = TransferConfig(
                    multipart_threshold=self._multipart_threshold(),
                    multipart_chunksize=self.part,
                    max_request_concurrency=self.jobs,
                    max_submission_concurrency=max(1, self.jobs // 2),
                    max_in_memory_upload_chunks=self.jobs,
                )
                self._manager = TransferManager(self.dest.client, config)
            return self._manager

    def _multipart_threshold(self) -> int:
        """Where s3transfer starts cutting parts: past one CopyObject, or past one part."""
        return self.server_copy_limit + 1 if self.server_side else self.part

    def close(self) -> None:
        """Wait for transfers in flight and stop the manager's threads."""
        with self._lock:
            if self._manager is not None:
                self._manager.shutdown()
                self._manager = None
