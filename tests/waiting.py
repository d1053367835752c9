"""Waiting for the real world in tests: a bounded poll, and a free loopback port.

Every kind of test that starts a real process uses these; none sleeps and hopes.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that was free a moment ago (bind to port 0, then close)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def wait_until(
    predicate: Callable[[], T | None],
    *,
    timeout: float = 20.0,
    interval: float = 0.05,
    message: str | Callable[[], str] = "condition not met",
) -> T:
    """Poll ``predicate`` until it returns a truthy value and return that value.

    Raises :class:`TimeoutError` (with ``message``, which may be a callable evaluated lazily so it
    can describe the state at the deadline) if the deadline of ``timeout`` seconds passes first.
    The predicate is always evaluated at least once, and once more right at the deadline.
    """
    deadline = time.monotonic() + timeout
    while True:
        result = predicate()
        if result:
            return result
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            text = message() if callable(message) else message
            raise TimeoutError(f"timed out after {timeout:.1f}s: {text}")
        time.sleep(min(interval, remaining))
