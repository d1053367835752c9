"""A source blob as the body of one PutObject: read as it is sent, hashed on the way.

Nothing of the blob is held but the chunk being sent, whatever its size. botocore rewinds a
body to retry a request: :meth:`SourceStream.seek` to 0 opens the source object again.
"""

from __future__ import annotations

import hashlib
import io
from collections.abc import Callable
from typing import Any

READ_CHUNK = 1024 * 1024  # one read of the source response per MiB, not per 16 KiB sent


class CopyMismatchError(Exception):
    """Copied content does not match its digest or size."""


def check_content(hasher: Any, read: int, digest: str, size: int) -> None:
    """Raise CopyMismatchError unless ``read`` bytes hashed into ``hasher`` are ``digest``."""
    got = f"{hasher.name}:{hasher.hexdigest()}"
    if got != digest or read != size:
        raise CopyMismatchError(f"source content has digest {got} and {read} bytes")


class SourceStream:
    """A read-only file over the ``size`` bytes of ``open_body()``, hashed as they pass.

    ``open_body`` returns the source's response body, or raises. A source that ends early
    raises CopyMismatchError rather than leave the request waiting for its last bytes. Without
    ``hashing`` (the store checks the digest itself), the bytes only pass through.
    """

    def __init__(
        self, open_body: Callable[[], Any], algorithm: str, size: int, *, hashing: bool = True
    ) -> None:
        self._open_body = open_body
        self._algorithm = algorithm
        self.hashing = hashing
        self._expected = size
        self._body: Any = None
        self._chunk = memoryview(b"")
        self._hash = hashlib.new(algorithm)
        self.size = 0

    def read(self, size: int = -1, /) -> bytes | memoryview:
        """Up to ``size`` bytes (a view of the current chunk); all that is left when negative."""
        if size < 0:
            return b"".join(iter(lambda: bytes(self.read(READ_CHUNK)), b""))
        if not self._chunk:
            if self.size == self._expected:
                return b""
            if self._body is None:
                self._body = self._open_body()
            data: bytes = self._body.read(min(READ_CHUNK, self._expected - self.size))
            if not data and self.size < self._expected:
                raise CopyMismatchError(
                    f"source ended after {self.size} of its {self._expected} bytes"
                )
            if self.hashing:
                self._hash.update(data)
            self.size += len(data)
            self._chunk = memoryview(data)
        piece, self._chunk = self._chunk[:size], self._chunk[size:]
        return piece

    def tell(self) -> int:
        return self.size - len(self._chunk)

    def seek(self, offset: int, whence: int = io.SEEK_SET, /) -> int:
        """Only back to the start, for a retry: the next read opens the source again.

        Even from the start: a source response that broke before its first byte (a connection
        reset) would break every retry of the request too if it were kept.
        """
        if (offset, whence) != (0, io.SEEK_SET):
            if (offset, whence) in ((self.tell(), io.SEEK_SET), (0, io.SEEK_CUR)):
                return self.tell()
            raise io.UnsupportedOperation("a source stream only rewinds to its start")
        self._drop_body()
        self._chunk = memoryview(b"")
        self._hash = hashlib.new(self._algorithm)
        self.size = 0
        return 0

    def close(self) -> None:
        """Release the source response (its connection goes back to the pool)."""
        self._drop_body()

    def _drop_body(self) -> None:
        if self._body is not None:
            self._body.close()
            self._body = None

    def check(self, digest: str, size: int) -> None:
        """Raise CopyMismatchError unless what was read is ``digest`` and ``size`` bytes."""
        if not self.hashing:
            raise RuntimeError("a stream that does not hash cannot check a digest")
        check_content(self._hash, self.size, digest, size)
