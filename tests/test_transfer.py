"""The pieces of a blob copy that need no store: the streamed body, ordered part hashing, sizes.

A copy through real SeaweedFS, multipart and mismatches included, is in test_mirror_proof.py.
"""

from __future__ import annotations

import base64
import hashlib
import io
import threading
from typing import TYPE_CHECKING, Any, cast

import pytest
from botocore.response import StreamingBody

from s3syncer.replicate.arguments import Location
from s3syncer.replicate.parts import OrderedDigest, part_ranges
from s3syncer.replicate.sides import Side
from s3syncer.replicate.sizes import MAX_PARTS, MIB, STREAM_PART, part_size
from s3syncer.replicate.source_stream import READ_CHUNK, CopyMismatchError, SourceStream
from s3syncer.replicate.transfer import Transfers

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

DATA = bytes(range(256)) * (3 * READ_CHUNK // 256 + 7)  # three chunks and a bit
DIGEST = "sha256:" + hashlib.sha256(DATA).hexdigest()


class _Source:
    """Opens a fresh response over ``data`` each time, as a GET does; counts them."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.opened = 0
        self.closed = 0

    def __call__(self) -> _Source.Body:
        self.opened += 1
        return _Source.Body(self)

    class Body(io.BytesIO):
        def __init__(self, source: _Source) -> None:
            super().__init__(source.data)
            self.source = source

        def close(self) -> None:
            self.source.closed += 1
            super().close()


def _send(stream: SourceStream, block: int = 16384) -> bytes:
    """Read ``stream`` the way urllib3 sends a body: ``block`` bytes at a time until empty."""
    sent = bytearray()
    while piece := stream.read(block):
        assert len(piece) <= block
        sent += piece
    return bytes(sent)


def test_a_source_stream_sends_every_byte_and_checks_the_digest() -> None:
    source = _Source(DATA)
    stream = SourceStream(source, "sha256", len(DATA))
    assert _send(stream) == DATA
    assert stream.tell() == len(DATA)
    stream.check(DIGEST, len(DATA))
    stream.close()
    assert (source.opened, source.closed) == (1, 1)


def test_rewinding_a_source_stream_opens_the_source_again() -> None:
    """botocore rewinds a body to retry a request: the retry must send the blob whole."""
    source = _Source(DATA)
    stream = SourceStream(source, "sha256", len(DATA))
    stream.read(5000)
    stream.read(READ_CHUNK)  # into the second chunk
    assert stream.seek(0) == 0
    assert _send(stream, 65536) == DATA
    stream.check(DIGEST, len(DATA))  # the hash starts over with the bytes
    assert (source.opened, source.closed) == (2, 1)
    with pytest.raises(io.UnsupportedOperation):
        stream.seek(10)


def test_a_source_response_that_broke_before_its_first_byte_is_opened_again_on_rewind() -> None:
    """A connection cut before any byte arrived: botocore's retry must not reuse its response."""

    class Broken(io.BytesIO):
        def read(self, size: int | None = -1, /) -> bytes:
            raise ConnectionResetError("connection reset by peer")

    bodies: list[io.BytesIO] = [Broken(), io.BytesIO(DATA)]
    stream = SourceStream(lambda: bodies.pop(0), "sha256", len(DATA))
    with pytest.raises(ConnectionResetError):
        stream.read(16384)
    assert stream.tell() == 0
    assert stream.seek(0) == 0
    assert _send(stream) == DATA
    stream.check(DIGEST, len(DATA))
    assert not bodies  # the source was opened a second time


def test_content_that_is_not_the_digest_is_a_mismatch() -> None:
    tampered = b"X" + DATA[1:]
    stream = SourceStream(_Source(tampered), "sha256", len(DATA))
    assert _send(stream) == tampered
    with pytest.raises(CopyMismatchError, match="source content has digest sha256:"):
        stream.check(DIGEST, len(DATA))


def test_a_source_shorter_than_its_size_fails_instead_of_leaving_the_request_waiting() -> None:
    stream = SourceStream(_Source(DATA[:-10]), "sha256", len(DATA))
    with pytest.raises(CopyMismatchError, match="ended after"):
        _send(stream)


def test_a_source_longer_than_its_size_sends_only_its_size() -> None:
    stream = SourceStream(_Source(DATA + b"more"), "sha256", len(DATA))
    assert _send(stream) == DATA
    stream.check(DIGEST, len(DATA))


def test_parts_hash_in_order_whatever_order_they_arrive_in() -> None:
    cut = len(DATA) // 12 + 1
    parts = [DATA[i : i + cut] for i in range(0, len(DATA), cut)]
    digest = OrderedDigest("sha256")
    # start the last part first: each must wait for the one before it
    threads = [
        threading.Thread(target=digest.add, args=(number, data))
        for number, data in reversed(list(enumerate(parts, start=1)))
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=10)
        assert not thread.is_alive()
    digest.check(DIGEST, len(DATA))


def test_a_failed_part_releases_the_parts_waiting_for_it() -> None:
    digest = OrderedDigest("sha256")
    errors: list[BaseException] = []

    def third() -> None:
        try:
            digest.add(3, b"c")
        except Exception as exc:
            errors.append(exc)

    waiting = threading.Thread(target=third)
    waiting.start()
    digest.add(1, b"a")
    digest.fail()  # part 2 failed
    waiting.join(timeout=10)
    assert not waiting.is_alive()
    assert len(errors) == 1
    with pytest.raises(CopyMismatchError):
        digest.check("sha256:" + hashlib.sha256(b"abc").hexdigest(), 3)


def test_part_ranges_cover_the_object_exactly() -> None:
    assert list(part_ranges(10, 4)) == [(1, 0, 3), (2, 4, 7), (3, 8, 9)]
    assert list(part_ranges(8, 4)) == [(1, 0, 3), (2, 4, 7)]


def test_parts_grow_past_the_default_only_when_10000_would_not_do() -> None:
    assert part_size(1024 * MIB, STREAM_PART) == STREAM_PART
    huge = 200 * 1024 * MIB
    size = part_size(huge, STREAM_PART)
    assert size % MIB == 0 and size > STREAM_PART
    assert -(-huge // size) <= MAX_PARTS


class _Store:
    """A store for :class:`Transfers`' streamed PutObject: it confirms a sha256 or it does not.

    ``confirms``: it checks ``ChecksumSHA256`` and repeats it, as S3, MinIO and SeaweedFS do;
    otherwise it keeps whatever it is sent, as a store that ignores the header would.
    """

    def __init__(self, objects: dict[str, bytes], *, confirms: bool) -> None:
        self.objects = objects
        self.confirms = confirms
        self.gets: list[str] = []

    def get_object(self, *, Bucket: str, Key: str) -> dict[str, Any]:  # noqa: N803
        self.gets.append(Key)
        data = self.objects[Key]
        return {"ContentLength": len(data), "Body": StreamingBody(io.BytesIO(data), len(data))}

    def put_object(self, *, Key: str, Body: Any, ContentLength: int, **extra: Any) -> Any:  # noqa: N803
        data = _send(Body)
        assert len(data) == ContentLength
        checksum = extra.get("ChecksumSHA256")
        if self.confirms and checksum is not None:
            if base64.b64encode(hashlib.sha256(data).digest()).decode() != checksum:
                raise _BadDigestError
            self.objects[Key] = data
            return {"ChecksumSHA256": checksum}
        self.objects[Key] = data
        return {}

    def delete_object(self, *, Bucket: str, Key: str) -> None:  # noqa: N803
        del self.objects[Key]


class _BadDigestError(Exception):
    def __init__(self) -> None:
        super().__init__("BadDigest")
        self.response = {
            "Error": {"Code": "BadDigest"},
            "ResponseMetadata": {"HTTPStatusCode": 400},
        }


def _blobs(*contents: bytes) -> tuple[dict[str, bytes], list[tuple[str, int, str]]]:
    """Source objects for ``contents``: their keys, and (digest, size, key) of each."""
    objects, blobs = {}, []
    for data in contents:
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        key = Side(cast("S3Client", None), Location("b")).layout.blob_data(digest)
        objects[key] = data
        blobs.append((digest, len(data), key))
    return objects, blobs


def _transfers(store: _Store) -> Transfers:
    client = cast("S3Client", store)
    return Transfers(
        Side(client, Location("b")),
        Side(client, Location("b", "mirror")),
        server_side=False,
        jobs=1,
    )


def test_once_the_store_confirms_a_digest_blobs_are_not_hashed_twice() -> None:
    objects, blobs = _blobs(b"first blob", b"second blob")
    store = _Store(objects, confirms=True)
    transfers = _transfers(store)
    for digest, size, _key in blobs:
        transfers.copy(digest, size)
    transfers.close()
    mirror = {k: v for k, v in store.objects.items() if k.startswith("mirror/")}
    assert sorted(mirror.values()) == [b"first blob", b"second blob"]
    assert transfers._store_checks_digest


def test_a_store_that_refuses_a_digest_gets_a_clear_mismatch_even_when_not_hashing() -> None:
    objects, blobs = _blobs(b"good blob", b"second blob")
    store = _Store(objects, confirms=True)
    transfers = _transfers(store)
    transfers.copy(*blobs[0][:2])  # the store shows it checks: the next one is not hashed here
    objects[blobs[1][2]] = b"other blob!"  # same size, other bytes
    with pytest.raises(CopyMismatchError, match="the mirror refused its content"):
        transfers.copy(*blobs[1][:2])
    assert not any(k.startswith("mirror/") and v == b"other blob!" for k, v in objects.items())


def test_a_store_that_does_not_confirm_gets_every_blob_hashed_here() -> None:
    objects, blobs = _blobs(b"good blob", b"second blob")
    store = _Store(objects, confirms=False)
    transfers = _transfers(store)
    transfers.copy(*blobs[0][:2])
    assert not transfers._store_checks_digest
    objects[blobs[1][2]] = b"other blob!"
    with pytest.raises(CopyMismatchError, match="source content has digest"):
        transfers.copy(*blobs[1][:2])
    dst = Side(cast("S3Client", store), Location("b", "mirror")).layout.blob_data(blobs[1][0])
    assert dst not in objects  # written, then deleted again


def test_a_store_that_stops_confirming_has_the_blob_read_back() -> None:
    objects, blobs = _blobs(b"good blob", b"second blob")
    store = _Store(objects, confirms=True)
    transfers = _transfers(store)
    transfers.copy(*blobs[0][:2])
    store.confirms = False
    objects[blobs[1][2]] = b"other blob!"
    dst = Side(cast("S3Client", store), Location("b", "mirror")).layout.blob_data(blobs[1][0])
    with pytest.raises(CopyMismatchError):
        transfers.copy(*blobs[1][:2])
    assert store.gets[-1] == dst  # read back from the mirror, since nothing was hashed
    assert dst not in objects
