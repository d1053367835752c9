"""The rules of one connection, under trio's MockClock, with fake sockets.

A client that stops reading its answers, or pipelines without end, or whose answer
never ends, loses its connection within a bound; the server never waits on it.
"""

from __future__ import annotations

import math
from typing import Any, cast

import pytest
import trio
import trio.testing

from s3syncer.web.connection import MAX_PIPELINED, SEND_CHUNK, Connection, WatchedStream

SEND_TIMEOUT = 2.0
ANSWER_TIMEOUT = 30.0


class StalledSocket:
    """A socket whose peer reads ``readable`` bytes, then nothing more."""

    socket = None

    def __init__(self, readable: int = 0, broken: bool = False) -> None:
        self.readable = readable
        self.broken = broken
        self.sent = 0

    async def send_all(self, data: bytes | memoryview) -> None:
        if self.broken:
            raise trio.BrokenResourceError("connection reset by peer")
        if self.sent + len(data) > self.readable:
            await trio.sleep_forever()
        self.sent += len(data)


def connection_on(sock: StalledSocket) -> Connection:
    return Connection(
        cast(Any, sock),
        keep_alive=5.0,
        request_timeout=SEND_TIMEOUT,
        answer_timeout=ANSWER_TIMEOUT,
    )


@pytest.fixture
def autojump_clock() -> trio.testing.MockClock:
    return trio.testing.MockClock(autojump_threshold=0)


async def test_an_answer_the_client_stops_reading_closes_the_connection_after_the_send_timeout(
    autojump_clock: trio.testing.MockClock,
) -> None:
    connection = connection_on(StalledSocket(readable=3 * SEND_CHUNK))
    stream = WatchedStream(connection)
    started = trio.current_time()
    # Shielded, as Hypercorn sends.
    with connection.scope, trio.CancelScope(shield=True), pytest.raises(trio.BrokenResourceError):
        await stream.send_all(b"x" * (10 * SEND_CHUNK))
    # Three chunks went; the fourth made no progress for SEND_TIMEOUT.
    assert trio.current_time() - started == pytest.approx(SEND_TIMEOUT)
    assert connection.broken == "stalled"
    assert connection.scope.cancel_called


async def test_a_slow_reader_that_keeps_up_is_not_cut(
    autojump_clock: trio.testing.MockClock,
) -> None:
    class Slow(StalledSocket):
        async def send_all(self, data: bytes | memoryview) -> None:
            await trio.sleep(SEND_TIMEOUT / 2)  # each chunk takes half the timeout
            self.sent += len(data)

    sock = Slow()
    connection = connection_on(sock)
    await WatchedStream(connection).send_all(b"x" * (8 * SEND_CHUNK))
    assert sock.sent == 8 * SEND_CHUNK
    assert not connection.broken


async def test_a_failed_write_closes_the_connection_at_once() -> None:
    connection = connection_on(StalledSocket(broken=True))
    with pytest.raises(trio.BrokenResourceError):
        await WatchedStream(connection).send_all(b"HTTP/1.1 200 \r\n\r\n")
    assert connection.broken == "failed"
    assert connection.scope.cancel_called


async def test_answering_has_a_deadline(autojump_clock: trio.testing.MockClock) -> None:
    connection = connection_on(StalledSocket())
    connection.data_received()
    connection.request_started()
    connection.request_received()
    assert connection.scope.deadline == pytest.approx(trio.current_time() + ANSWER_TIMEOUT)
    with connection.scope:
        await trio.sleep_forever()  # an answer that never ends
    assert connection.answer_timed_out
    assert not connection.timed_out_in_headers


async def test_pipelining_is_bounded() -> None:
    connection = connection_on(StalledSocket())
    connection.data_received()  # the whole pipeline arrives in one read
    # The first request, then MAX_PIPELINED queued behind it; the next one is the last.
    for number in range(MAX_PIPELINED + 2):
        connection.request_started()
        connection.request_received()
        assert connection.closing is (number == MAX_PIPELINED + 1), number
        connection.response_sent()
    assert connection.scope.cancel_called  # closed after the answer over the bound


async def test_requests_that_wait_for_their_answers_are_never_cut() -> None:
    connection = connection_on(StalledSocket())
    for _ in range(10 * MAX_PIPELINED):
        connection.data_received()  # each request comes after the last answer
        connection.request_started()
        connection.request_received()
        connection.response_sent()
    assert not connection.closing
    assert connection.scope.deadline != math.inf  # idle: keep-alive


async def test_a_keep_alive_client_whose_next_request_beats_our_bookkeeping_is_not_cut() -> None:
    # A client reads its answer and sends the next request at once; the server may read
    # those bytes before it notes that the answer went out. That is not pipelining.
    connection = connection_on(StalledSocket())
    connection.data_received()
    for _ in range(10 * MAX_PIPELINED):
        connection.request_started()
        connection.request_received()
        connection.data_received()  # the next request, while this answer is being noted
        connection.response_sent()
    assert not connection.closing
