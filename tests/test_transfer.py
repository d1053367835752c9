"""The pieces of a blob copy that need no store: the streamed body, ordered part hashing, sizes.

A copy through real SeaweedFS, multipart and mismatches included, is in test_mirror_proof.py.
"""

from __future__ import annotations

import hashlib
import io
import threading

import pytest

from s3syncer.replicate.parts import OrderedDigest, part_ranges
from s3syncer.replicate.sizes import MAX_PARTS, MIB, STREAM_PART, part_size
from s3syncer.replicate.source_stream import READ_CHUNK, CopyMismatchError, SourceStream

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
