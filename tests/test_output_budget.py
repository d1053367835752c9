"""A run's output budget is bytes of log, and output past it costs the daemon next to nothing."""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator

import pytest
import trio
import trio.testing

from s3syncer.exec import process
from s3syncer.exec.process import OutputSink, pump_lines
from s3syncer.obs.logs import JSONFormatter, TextFormatter

BUDGET = 64 * 1024


@pytest.fixture
def small_budget(monkeypatch: pytest.MonkeyPatch) -> None:
    """A 64 KiB budget, so that a test spends it in a few thousand lines."""
    monkeypatch.setattr(process, "MAX_LOGGED_BYTES", BUDGET)


@pytest.fixture(params=["json", "text"])
def log_bytes(request: pytest.FixtureRequest) -> Iterator[io.StringIO]:
    """The daemon's log, formatted as the daemon formats it, in memory."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JSONFormatter() if request.param == "json" else TextFormatter())
    output = logging.getLogger("s3syncer.output")
    old_level, output.level = output.level, logging.INFO
    output.addHandler(handler)
    try:
        yield stream
    finally:
        output.removeHandler(handler)
        output.setLevel(old_level)


def _output_log_bytes(stream: io.StringIO) -> int:
    return len(stream.getvalue().encode())


@pytest.mark.usefixtures("small_budget")
@pytest.mark.parametrize("line", [b"", b"\x01" * 100, b"ok"])
def test_the_budget_counts_what_the_log_holds_not_what_the_command_wrote(
    log_bytes: io.StringIO, line: bytes
) -> None:
    # 256 MiB of empty lines once wrote 44 MB of log against a "1 MiB" budget.
    sink = OutputSink("push", 1)
    for _ in range(20_000):
        sink.feed("output", line)
    written = _output_log_bytes(log_bytes)
    assert BUDGET // 8 < written <= BUDGET, written  # text lines are shorter than JSON ones
    assert not sink.logging


class Collect(logging.Handler):
    """Keeps every record it is handed."""

    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


class CountingSink(OutputSink):
    """Counts the lines handed to it one by one."""

    feeds = 0

    def feed(self, stream: str, line: bytes) -> None:
        self.feeds += 1
        super().feed(stream, line)


@pytest.mark.usefixtures("small_budget")
async def test_output_past_the_budget_is_not_split_into_lines() -> None:
    # Once nothing is logged, splitting 256 MiB of empty lines cost 170 s of daemon CPU.
    send, receive = trio.testing.memory_stream_one_way_pair()
    sink = CountingSink("push", 1)
    chunk = b"\n" * 65536
    chunks = 64  # 4 MiB of empty lines

    async def write() -> None:
        async with send:
            for _ in range(chunks):
                await send.send_all(chunk)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(write)
        nursery.start_soon(pump_lines, receive, "output", sink)
    assert sink.feeds < len(chunk)  # a chunk's worth at most, not 4 million
    assert sink.tail == "\n" * len(sink.tail) and len(sink.tail) > 0


@pytest.mark.usefixtures("small_budget")
async def test_lines_not_logged_are_counted_exactly_and_the_tail_keeps_the_end() -> None:
    send, receive = trio.testing.memory_stream_one_way_pair()
    sink = OutputSink("push", 1)
    lines = [f"line {i}".encode() for i in range(10_000)]
    data = b"\n".join(lines) + b"\nno newline at the end"
    handler = Collect()
    records = handler.records
    logging.getLogger("s3syncer.process").addHandler(handler)
    try:

        async def write() -> None:
            async with send:
                for start in range(0, len(data), 1000):  # chunks that cut lines in two
                    await send.send_all(data[start : start + 1000])

        async with trio.open_nursery() as nursery:
            nursery.start_soon(write)
            nursery.start_soon(pump_lines, receive, "output", sink)
        logged = sum(1 for r in records if "wrote over" in r.getMessage())
        sink.close()
    finally:
        logging.getLogger("s3syncer.process").removeHandler(handler)
    assert logged == 1
    [dropped] = [r.getMessage() for r in records if "lines not logged" in r.getMessage()]
    count = int(dropped.split(": ")[-1].split()[0])
    assert 0 < count < len(lines) + 1
    assert sink.tail.endswith("line 9999\nno newline at the end\n")
