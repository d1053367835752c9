"""A run's output as ``/status`` and the page show it: the last bytes, readable while it runs.

The launcher appends each line as it comes; the runner hands the same buffer to the
status API, so a running run's card shows its output so far.
"""

from __future__ import annotations

TAIL_BYTES = 64 * 1024


class OutputTail:
    """The last ``limit`` bytes of a run's output (stdout and stderr, in the order written)."""

    def __init__(self, limit: int = TAIL_BYTES) -> None:
        self.limit = limit
        self._buffer = bytearray()

    def append(self, line: bytes) -> None:
        """Add one line (without its newline)."""
        self._buffer += line + b"\n"
        if len(self._buffer) > self.limit:
            del self._buffer[: len(self._buffer) - self.limit]

    @property
    def text(self) -> str:
        """The kept bytes as text; bytes that are not UTF-8 are replaced."""
        return bytes(self._buffer).decode("utf-8", "replace")
