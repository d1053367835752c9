"""Large blobs in parts, in parallel: ``UploadPartCopy`` server-side, ranged GETs streamed.

Every part of every blob of a run goes to one pool of ``jobs`` threads (:class:`PartPool`),
so a run never has more than ``jobs`` part requests in flight, nor, streamed, more than
``jobs`` parts in memory, however many blobs and however large.

A streamed blob's parts are fetched in parallel but hashed in order (:class:`OrderedDigest`);
the upload is completed only when the whole blob has its digest, and aborted otherwise: a
blob that does not match is never written.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_EXCEPTION, Future, ThreadPoolExecutor, wait
from typing import TYPE_CHECKING, Any, Final

from .sides import Side, describe
from .source_stream import CopyMismatchError, check_content

if TYPE_CHECKING:
    from mypy_boto3_s3.type_defs import CompletedPartTypeDef

UPLOAD_CHECKSUM: Final = "CRC32"  # as s3transfer: cheap to compute, checked by the store per part


class _PartFailedError(Exception):
    """Another part of the same blob failed; this one stops waiting for its turn."""


class OrderedDigest:
    """A blob's digest over parts that arrive from several threads, taken in part order.

    Part ``n`` waits until part ``n - 1`` has been hashed. Parts are started in order (the
    pool is first in, first out), so the part waited for is always running or done.
    """

    def __init__(self, algorithm: str) -> None:
        self.size = 0
        self._hash = hashlib.new(algorithm)
        self._next = 1
        self._failed = False
        self._turn = threading.Condition()

    def add(self, number: int, data: bytes) -> None:
        """Hash part ``number`` (from 1) once every part before it has been."""
        with self._turn:
            while self._next != number and not self._failed:
                self._turn.wait()
            if self._failed:
                raise _PartFailedError
            self._hash.update(data)
            self.size += len(data)
            self._next += 1
            self._turn.notify_all()

    def fail(self) -> None:
        """Wake every part still waiting: the blob is abandoned."""
        with self._turn:
            self._failed = True
            self._turn.notify_all()

    def check(self, digest: str, size: int) -> None:
        """Raise CopyMismatchError unless the parts were ``digest`` and ``size`` bytes."""
        check_content(self._hash, self.size, digest, size)


def part_ranges(size: int, part: int) -> Iterator[tuple[int, int, int]]:
    """``(number, first byte, last byte)`` of each part of a ``size``-byte object."""
    for number, start in enumerate(range(0, size, part), start=1):
        yield number, start, min(start + part, size) - 1


class PartPool:
    """The run's ``jobs`` threads for parts; :meth:`close` once the run is over."""

    def __init__(self, source: Side, dest: Side, jobs: int) -> None:
        self.source, self.dest = source, dest
        self._executor = ThreadPoolExecutor(max_workers=max(1, jobs), thread_name_prefix="part")

    def close(self) -> None:
        """Wait for parts in flight and stop the threads."""
        self._executor.shutdown(wait=True, cancel_futures=True)

    def server_copy(self, src_key: str, dst_key: str, size: int, part: int) -> None:
        """Copy ``src_key`` to ``dst_key`` in ``part``-byte ``UploadPartCopy`` requests."""
        source = {"Bucket": self.source.bucket, "Key": src_key}

        def copy_part(upload_id: str, number: int, first: int, last: int) -> CompletedPartTypeDef:
            result = self.dest.client.upload_part_copy(
                Bucket=self.dest.bucket,
                Key=dst_key,
                UploadId=upload_id,
                PartNumber=number,
                CopySource=source,  # type: ignore[arg-type]
                CopySourceRange=f"bytes={first}-{last}",
            )
            return {"PartNumber": number, "ETag": result["CopyPartResult"]["ETag"]}

        self._multipart(dst_key, size, part, copy_part, checksum=False)

    def stream_copy(self, digest: str, src_key: str, dst_key: str, size: int, part: int) -> None:
        """Copy ``src_key`` through this process in ``part``-byte ranges; check ``digest``."""
        algorithm = digest.partition(":")[0]
        parts = OrderedDigest(algorithm)

        def stream_part(upload_id: str, number: int, first: int, last: int) -> CompletedPartTypeDef:
            try:
                data = self._read_range(src_key, first, last)
                result = self.dest.client.upload_part(
                    Bucket=self.dest.bucket,
                    Key=dst_key,
                    UploadId=upload_id,
                    PartNumber=number,
                    Body=data,
                    ChecksumAlgorithm=UPLOAD_CHECKSUM,
                )
                parts.add(number, data)
            except BaseException:
                parts.fail()
                raise
            done: CompletedPartTypeDef = {"PartNumber": number, "ETag": result["ETag"]}
            if "ChecksumCRC32" in result:
                done["ChecksumCRC32"] = result["ChecksumCRC32"]
            return done

        self._multipart(
            dst_key, size, part, stream_part, checksum=True, check=lambda: parts.check(digest, size)
        )

    def _read_range(self, key: str, first: int, last: int) -> bytes:
        data: bytes = self.source.get(key, lambda obj: obj["Body"].read(), f"bytes={first}-{last}")
        if len(data) != last - first + 1:
            raise CopyMismatchError(f"source {key} is shorter than its size")
        return data

    def _multipart(
        self,
        dst_key: str,
        size: int,
        part: int,
        send: Callable[[str, int, int, int], CompletedPartTypeDef],
        *,
        checksum: bool,
        check: Callable[[], None] | None = None,
    ) -> None:
        """Create an upload, ``send`` every part through the pool, complete it or abort it."""
        client, bucket = self.dest.client, self.dest.bucket
        extra: dict[str, Any] = {"ChecksumAlgorithm": UPLOAD_CHECKSUM} if checksum else {}
        upload_id = client.create_multipart_upload(Bucket=bucket, Key=dst_key, **extra)["UploadId"]
        futures: list[Future[CompletedPartTypeDef]] = []
        try:
            for number, first, last in part_ranges(size, part):
                futures.append(self._executor.submit(send, upload_id, number, first, last))
            wait(futures, return_when=FIRST_EXCEPTION)
            _settle(futures)
            completed = [future.result() for future in futures]
            if check is not None:
                check()
            client.complete_multipart_upload(
                Bucket=bucket,
                Key=dst_key,
                UploadId=upload_id,
                MultipartUpload={"Parts": completed},
            )
        except BaseException as exc:
            _settle(futures, quiet=True)
            try:
                client.abort_multipart_upload(Bucket=bucket, Key=dst_key, UploadId=upload_id)
            except Exception as abort:
                # What failed first is what to fix; the upload left behind holds space until
                # the lifecycle rule the README recommends removes it, so name it too.
                exc.add_note(
                    f"upload {upload_id} left open, it could not be aborted: {describe(abort)}"
                )
            raise


def _settle(futures: list[Future[CompletedPartTypeDef]], *, quiet: bool = False) -> None:
    """Cancel the parts not started, wait for the others: none may land after an abort.

    Unless ``quiet``, raise the error of the first part that failed for its own reason
    (not the parts that only stopped waiting because of it).
    """
    for future in futures:
        future.cancel()
    wait(futures)
    if quiet:
        return
    errors = [f.exception() for f in futures if not f.cancelled() and f.exception() is not None]
    own = [error for error in errors if not isinstance(error, _PartFailedError)]
    if errors:
        raise (own or errors)[0]  # type: ignore[misc]
