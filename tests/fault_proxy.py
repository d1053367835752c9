"""A loopback HTTP proxy in front of an S3 endpoint that misbehaves on purpose.

Point ``--source-endpoint``/``--dest-endpoint`` at :attr:`FaultProxy.endpoint`; every request
is forwarded to the real store (SeaweedFS in the tests) unless a :class:`Fault` matches it
(method, a regular expression searched in the path with its query, optionally a header that
must be present) and still has hits left. A fault then, instead of the store's answer:

* ``status``: answers ``status`` with an S3 XML error body (503 SlowDown, 500 InternalError,
  403 AccessDenied);
* ``reset``: resets the connection before the request reaches the store;
* ``lost``: forwards the request, then resets the connection instead of answering;
* ``cut``: forwards it and sends the headers and only the first half of the body;
* ``stall``: accepts and never answers, for ``seconds`` (or until the proxy closes);
* ``delay``: waits ``seconds``, then forwards it.

Requests are read whole into memory: the tests move a few MiB at a time.
"""

from __future__ import annotations

import http.client
import re
import socket
import struct
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from email.message import Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Literal
from urllib.parse import urlsplit
from xml.sax.saxutils import escape

Kind = Literal["status", "reset", "lost", "cut", "stall", "delay"]
_CODES = {403: "AccessDenied", 500: "InternalError", 503: "SlowDown"}
_HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "expect", "proxy-connection"}


@dataclass
class Fault:
    """What to do instead of forwarding, to at most ``times`` matching requests (None: all)."""

    method: str
    path: str  # a regular expression, searched in the path and query
    kind: Kind
    times: int | None = 1
    status: int = 503
    seconds: float = 0.0
    header: str | None = None  # e.g. "x-amz-copy-source": only copies match
    hits: int = 0
    _pattern: re.Pattern[str] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._pattern = re.compile(self.path)

    def matches(self, method: str, target: str, headers: Message[str, str]) -> bool:
        """Whether this fault applies to the request (not counting hits)."""
        return (
            self.method in (method, "*")
            and self._pattern.search(target) is not None
            and (self.header is None or self.header in headers)
        )


class FaultProxy:
    """The proxy's faults, and the requests it saw; a context manager (:func:`fault_proxy`)."""

    def __init__(self, upstream: str) -> None:
        parts = urlsplit(upstream)
        self.upstream = (parts.hostname or "127.0.0.1", parts.port or 80)
        self.faults: list[Fault] = []
        self.seen: list[tuple[str, str]] = []
        self.closing = threading.Event()
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self._server.daemon_threads = True
        self.endpoint = f"http://127.0.0.1:{self._server.server_address[1]}"

    def add(self, *faults: Fault) -> None:
        """Apply ``faults`` from now on, in order: the first that matches wins."""
        with self._lock:
            self.faults.extend(faults)

    def clear(self) -> None:
        """Forward everything again, and forget the requests seen."""
        with self._lock:
            self.faults.clear()
            self.seen.clear()

    def take(self, method: str, target: str, headers: Message[str, str]) -> Fault | None:
        """The fault to apply to this request, counting the hit; None to forward it."""
        with self._lock:
            self.seen.append((method, target))
            for fault in self.faults:
                if fault.matches(method, target, headers) and (
                    fault.times is None or fault.hits < fault.times
                ):
                    fault.hits += 1
                    return fault
        return None

    def serve(self) -> None:
        """Serve until :meth:`close` (run in a thread)."""
        self._server.serve_forever(poll_interval=0.05)

    def close(self) -> None:
        """Stop serving; stalled requests end now."""
        self.closing.set()
        self._server.shutdown()
        self._server.server_close()


def _handler(proxy: FaultProxy) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, as a real store; and 100-continue

        def do_request(self) -> None:
            length = int(self.headers.get("Content-Length", "0"))
            body = self.rfile.read(length) if length else b""
            if len(body) < length:  # the client gave up mid-body: nothing to forward
                self.close_connection = True
                return
            fault = proxy.take(self.command, self.path, self.headers)
            kind = fault.kind if fault else None
            if fault is not None and kind in ("stall", "delay"):
                proxy.closing.wait(fault.seconds or None)
            if fault is not None and kind == "status":
                self._error(fault.status)
            elif kind in ("reset", "stall"):
                self._reset()
            else:
                self._forward(body, kind)

        def do_GET(self) -> None:
            self.do_request()

        def do_HEAD(self) -> None:
            self.do_request()

        def do_PUT(self) -> None:
            self.do_request()

        def do_POST(self) -> None:
            self.do_request()

        def do_DELETE(self) -> None:
            self.do_request()

        def _forward(self, body: bytes, kind: Kind | None) -> None:
            upstream = http.client.HTTPConnection(*proxy.upstream, timeout=120)
            try:
                headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP_BY_HOP}
                upstream.request(self.command, self.path, body=body, headers=headers)
                response = upstream.getresponse()
                data = response.read()
            finally:
                upstream.close()
            if kind == "lost":
                self._reset()
                return
            self.send_response(response.status, response.reason)
            for name, value in response.getheaders():
                if name.lower() not in _HOP_BY_HOP and name.lower() != "content-length":
                    self.send_header(name, value)
            declared = response.getheader("Content-Length")
            if self.command == "HEAD" and declared is not None:
                self.send_header("Content-Length", declared)
            else:
                self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            if kind == "cut" and self.command != "HEAD":
                self.wfile.write(data[: len(data) // 2])
                self.wfile.flush()
                self._reset()
                return
            if self.command != "HEAD":
                self.wfile.write(data)

        def _error(self, status: int) -> None:
            code = _CODES.get(status, "InternalError")
            body = (
                '<?xml version="1.0" encoding="UTF-8"?>\n'
                f"<Error><Code>{code}</Code><Message>injected by the test proxy</Message>"
                f"<Resource>{escape(self.path)}</Resource><RequestId>fault</RequestId></Error>"
            ).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/xml")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

        def _reset(self) -> None:
            # SO_LINGER 0: close sends RST, as a store or load balancer dropping the connection
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.close_connection = True
            self.rfile.close()  # its reference would keep the socket open past close()
            self.connection.close()

        def log_message(self, format: str, *args: object) -> None:
            pass

    return Handler


@contextmanager
def fault_proxy(upstream: str) -> Iterator[FaultProxy]:
    """A :class:`FaultProxy` to ``upstream``, serving on a free loopback port."""
    proxy = FaultProxy(upstream)
    thread = threading.Thread(target=proxy.serve, daemon=True)
    thread.start()
    try:
        yield proxy
    finally:
        proxy.close()
        thread.join(timeout=10)
