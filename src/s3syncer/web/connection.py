"""One client connection: how long it may idle, how long a request may take to arrive,
and how long its answer may take to leave.

Hypercorn leaves all three open: a connection that sends half a request, or a
body one byte a minute, or that never reads its answers, holds its socket for
ever (Hypercorn's writes are shielded from cancellation, and after a failed one
its reader waits for a "can read" that never comes). The rules here, as in
Node's HTTP server, nginx's ``send_timeout`` and Go's ``net/http``:

- idle (no byte of a request yet): closed after ``keep_alive`` seconds;
- a request arriving: its headers and body must all be in within
  ``request_timeout`` seconds of its first byte, or it is answered 408 and the
  connection closed;
- a request being answered: closed after ``answer_timeout`` seconds (the answer
  never waits on a command; this only ends one that went wrong);
- an answer leaving: each ``SEND_CHUNK`` bytes must go within ``send_timeout``
  seconds, and a write that fails or stalls closes the connection at once;
- pipelining: after ``MAX_PIPELINED`` requests in a row that came before their
  predecessor was answered, the connection closes after its answer, so a client
  cannot queue answers without end.

:class:`Exchange` is the ASGI side of the same rules: it tells the connection
when the app has the whole request and when the answer has gone out.
"""

from __future__ import annotations

import math
import re
from http import HTTPStatus
from typing import Literal

import trio

from .asgi import ASGIApp, Message, Receive, Scope, Send

Phase = Literal["idle", "headers", "body", "handling"]

STATE_KEY = "s3syncer.connection"
"""Where a request's ASGI ``scope["state"]`` carries its :class:`Connection`."""

KEEP_ALIVE = 5.0
BACKSTOP = 2.0  # after the request deadline, in case the app never read the body
ANSWER_TIMEOUT = 30.0
SEND_CHUNK = 64 * 1024  # the unit of progress a stalled reader must make in send_timeout
MAX_PIPELINED = 32

TIMEOUT_ANSWER = b"request not received in time\n"
RAW_TIMEOUT_RESPONSE = (
    b"HTTP/1.1 408 Request Timeout\r\ncontent-type: text/plain; charset=utf-8\r\n"
    b"content-length: %d\r\nconnection: close\r\n\r\n%s" % (len(TIMEOUT_ANSWER), TIMEOUT_ANSWER)
)


# h11 writes the status line with the reason phrase it is given, and Hypercorn gives none.
BARE_STATUS_LINE = re.compile(rb"HTTP/1\.[01] (\d{3}) \r\n")


def with_reason_phrase(head: bytes) -> bytes:
    """``head`` with its bare status line (``HTTP/1.1 401 \\r\\n``) given its phrase."""
    match = BARE_STATUS_LINE.match(head)
    if match is None:
        return head
    try:
        phrase = HTTPStatus(int(match[1])).phrase.encode()
    except ValueError:
        return head  # a status without a standard phrase keeps an empty one
    return head[: match.end() - 2] + phrase + head[match.end() - 2 :]


class Connection:
    """The deadlines of one client connection; its :attr:`scope` wraps the protocol's task."""

    def __init__(
        self,
        stream: trio.SocketStream,
        *,
        keep_alive: float,
        request_timeout: float,
        send_timeout: float | None = None,
        answer_timeout: float = ANSWER_TIMEOUT,
    ) -> None:
        self.stream = stream
        self.keep_alive = keep_alive
        self.request_timeout = request_timeout
        self.send_timeout = request_timeout if send_timeout is None else send_timeout
        self.answer_timeout = answer_timeout
        self.phase: Phase = "idle"
        self.request_deadline = math.inf
        self.scope = trio.CancelScope(deadline=trio.current_time() + keep_alive)
        self.evicted = False
        self.closing = False
        self.head_next = False  # the next bytes sent begin an answer: its status line
        self.pipelined = 0  # requests in a row whose bytes came before the last answer ended
        self.sent_after_answer = False  # bytes came in while the last answer went out
        self.broken: Literal["", "failed", "stalled"] = ""

    @property
    def evictable(self) -> bool:
        """Whether closing it now would cut an answer short (it would not, unless handling)."""
        return self.phase != "handling"

    def data_received(self) -> None:
        """A byte came in: the first one of a request starts its deadline."""
        if self.phase == "idle":
            self.phase = "headers"
            self.request_deadline = trio.current_time() + self.request_timeout
            self.scope.deadline = self.request_deadline
        elif self.phase == "handling":
            # Bytes read while an answer goes out: a keep-alive client that read its answer
            # and sent the next request before we noted the answer's end. Not pipelining.
            self.sent_after_answer = True

    def request_started(self) -> None:
        """The headers are in and the app has the request; the body may still be coming."""
        if self.phase in ("idle", "headers"):
            self.phase = "body"
            queued = self.request_deadline == math.inf  # its bytes came before it was idle
            if queued:
                self.request_deadline = trio.current_time() + self.request_timeout
            if queued and not self.sent_after_answer:
                self.pipelined += 1  # it came with an earlier read: queued behind the last
                if self.pipelined > MAX_PIPELINED:
                    self.closing = True  # answer this one, then close
            else:
                self.pipelined = 0
            self.sent_after_answer = False
            # The app answers 408 itself at the deadline; this only catches an app that
            # never reads the body it was sent.
            self.scope.deadline = self.request_deadline + BACKSTOP

    def request_received(self) -> None:
        """The whole request is in: it must be answered within ``answer_timeout``."""
        self.phase = "handling"
        self.scope.deadline = trio.current_time() + self.answer_timeout

    def response_sent(self) -> None:
        """The answer is out: wait ``keep_alive`` for the next request."""
        self.phase = "idle"
        self.request_deadline = math.inf
        if self.closing:
            self.scope.cancel()
        else:
            self.scope.deadline = trio.current_time() + self.keep_alive

    def write_failed(self, why: Literal["failed", "stalled"]) -> None:
        """A write failed, or made no progress in ``send_timeout``: close it now.

        Cancels every task of the connection (the reader too, which would otherwise wait
        for ever for the answer it can no longer finish).
        """
        if not self.broken:
            self.broken = why
        self.scope.cancel()

    def evict(self) -> None:
        """Close it to make room for a new one."""
        self.evicted = True
        self.scope.cancel()

    def shut_down(self, grace: float) -> None:
        """The server stops: one more answer within ``grace`` seconds, then close.

        A registry that sends its next event on an open connection then hears 503 and
        redelivers it elsewhere, instead of meeting a closed socket mid-request.
        """
        self.closing = True
        self.scope.deadline = min(self.scope.deadline, trio.current_time() + grace)

    @property
    def timed_out_in_headers(self) -> bool:
        """Whether its deadline passed while a request's headers were still coming."""
        return (
            self.scope.cancelled_caught
            and not self.evicted
            and not self.broken
            and self.phase == "headers"
        )

    @property
    def answer_timed_out(self) -> bool:
        """Whether it was closed because an answer took over ``answer_timeout``."""
        return (
            self.scope.cancelled_caught
            and not self.evicted
            and not self.broken
            and not self.closing
            and self.phase == "handling"
        )


class WatchedStream(trio.abc.HalfCloseableStream):
    """The socket stream Hypercorn reads, telling the :class:`Connection` when bytes arrive."""

    def __init__(self, connection: Connection) -> None:
        self.connection = connection
        self.socket = connection.stream.socket  # Hypercorn reads the addresses from it
        # Hypercorn sends from the app's task but shuts the socket down from the reader's,
        # and trio lets one task at a time send: a client that hung up mid-answer turned that
        # into BusyResourceError and an "Error in ASGI Framework" traceback per request.
        self._sending = trio.Lock()

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        data = await self.connection.stream.receive_some(max_bytes)
        if data:
            self.connection.data_received()
        return bytes(data)

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        if self.connection.head_next:
            self.connection.head_next = False
            data = with_reason_phrase(bytes(data))
        async with self._sending:
            try:
                await self._send_in_time(memoryview(data))
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                self.connection.write_failed("failed")
                raise

    async def _send_in_time(self, data: memoryview) -> None:
        # Hypercorn sends in a shielded scope, so only a deadline set in here ends a stall.
        for start in range(0, max(len(data), 1), SEND_CHUNK):
            with trio.move_on_after(self.connection.send_timeout) as stall:
                await self.connection.stream.send_all(data[start : start + SEND_CHUNK])
            if stall.cancelled_caught:
                self.connection.write_failed("stalled")
                raise trio.BrokenResourceError("the client stopped reading its answer")

    async def wait_send_all_might_not_block(self) -> None:
        async with self._sending:
            await self.connection.stream.wait_send_all_might_not_block()

    async def send_eof(self) -> None:
        async with self._sending:
            await self.connection.stream.send_eof()

    async def aclose(self) -> None:
        await self.connection.stream.aclose()


class Exchange:
    """One request and its answer, as the app sees them: receive and send with the rules."""

    def __init__(self, connection: Connection, receive: Receive, send: Send) -> None:
        self.connection = connection
        self._receive = receive
        self._send = send
        self.complete = False
        self.answered = False
        self.timed_out = False
        self._finishing: trio.Event | None = None
        connection.request_started()

    async def receive(self) -> Message:
        """The next request message; at the deadline, answer 408 and say the client left."""
        if self.timed_out:
            return {"type": "http.disconnect"}
        if self.complete:
            return await self._hold_disconnect(await self._receive())
        with trio.move_on_at(self.connection.request_deadline):
            message = await self._receive()
            if message["type"] == "http.request" and not message.get("more_body", False):
                self.complete = True
                self.connection.request_received()
            return await self._hold_disconnect(message)
        self.timed_out = True
        if not self.answered:
            await self._finish(
                {
                    "type": "http.response.start",
                    "status": 408,
                    "headers": [
                        (b"content-type", b"text/plain; charset=utf-8"),
                        (b"content-length", str(len(TIMEOUT_ANSWER)).encode()),
                        (b"connection", b"close"),
                    ],
                },
                {"type": "http.response.body", "body": TIMEOUT_ANSWER},
            )
        return {"type": "http.disconnect"}

    async def _hold_disconnect(self, message: Message) -> Message:
        # Hypercorn closes or recycles the connection inside the answer's last send, and
        # says http.disconnect half-way through. Quart-Trio cancels the request when it
        # hears that, which cut the close short after shutdown() and before close(): the
        # socket stayed open until the client gave up, and a kept-alive connection never
        # restarted its idle timer. So the app hears it once the last send is done.
        if message["type"] == "http.disconnect" and self._finishing is not None:
            await self._finishing.wait()
        return message

    async def send(self, message: Message) -> None:
        """Pass the app's answer on (nothing after a 408 this layer sent)."""
        if self.timed_out:
            return
        if message["type"] == "http.response.start":
            self.answered = True
            self.connection.head_next = True
        if message["type"] == "http.response.body" and not message.get("more_body", False):
            await self._finish(message)
        else:
            await self._send(message)

    async def _finish(self, *messages: Message) -> None:
        self._finishing = trio.Event()
        try:
            for message in messages:
                await self._send(message)
        finally:
            self._finishing.set()
        self.connection.response_sent()


class ConnectionRules:
    """ASGI middleware: applies each request's connection's rules (see :class:`Exchange`)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Serve one request under its connection's rules."""
        connection = scope.get("state", {}).get(STATE_KEY) if scope["type"] == "http" else None
        if not isinstance(connection, Connection):
            await self.app(scope, receive, send)
            return
        exchange = Exchange(connection, receive, send)
        await self.app(scope, exchange.receive, exchange.send)
