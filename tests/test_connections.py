"""Connections against a real ``s3syncer serve``: they close, they time out, floods pass.

Raw sockets, because what is tested is the connection itself: that the server
closes it when it should (``Connection: close``, HTTP/1.0, idle keep-alive), that a
request which never arrives whole is answered 408, and that hostile connections
by the thousand neither starve the registry's triggers nor the runs of
descriptors, nor fill the log.
"""

from __future__ import annotations

import contextlib
import json
import re
import resource
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from conftest import fixture_body
from daemon import Daemon, Recorder, start_daemon
from test_serve import REGISTRY_HEADERS, TAG_V1, config_for
from waiting import wait_until

pytestmark = pytest.mark.integration

# A run's own lines (start, coalesced triggers, end, output): they grow with runs, not requests.
RUN_LINE = re.compile(r" push(: (.* )?run \d+\b| \| )")
TOKEN = "connection-test-token"
AUTH = f"Authorization: Bearer {TOKEN}\r\n"
KEEP_ALIVE = 5.0  # the server's idle keep-alive
CLOSE_BOUND = 3.0  # how long a connection the server must close may take to close


def connect(daemon: Daemon, timeout: float = 20.0) -> socket.socket:
    """A raw TCP connection to the daemon."""
    sock = socket.create_connection(("127.0.0.1", daemon.port), timeout=timeout)
    sock.settimeout(timeout)
    return sock


def read_until_closed(sock: socket.socket) -> tuple[bytes, float]:
    """Everything the server sends until it closes the connection, and how long that took."""
    started = time.monotonic()
    data = b""
    while chunk := sock.recv(65536):
        data += chunk
    return data, time.monotonic() - started


def request_bytes(
    method: str, path: str, *, version: str = "1.1", headers: str = "", body: bytes = b""
) -> bytes:
    """One HTTP/1.x request, with the token."""
    head = f"{method} {path} HTTP/{version}\r\nHost: s3syncer\r\n{AUTH}{headers}"
    if body or method == "POST":
        head += f"Content-Length: {len(body)}\r\nContent-Type: application/json\r\n"
    return head.encode() + b"\r\n" + body


ROUTES = [
    ("GET", "/health", b""),
    ("GET", "/ready", b""),
    ("GET", "/metrics", b""),
    ("GET", "/status", b""),
    ("GET", "/", b""),
    ("POST", "/run/push", b""),
    ("POST", "/trigger/push", b'{"events": []}'),
]


@pytest.fixture
def daemon(tmp_path: Path) -> Iterator[Daemon]:
    """A daemon with a token and a command that does nothing, asking 1 s for a request."""
    recorder = Recorder(tmp_path / "push")
    config = config_for(
        recorder.command_yaml("push", delay="1h"), auth={"token": TOKEN}, requestTimeout="1s"
    )
    with start_daemon(tmp_path, config) as running:
        yield running


@pytest.mark.parametrize(("method", "path", "body"), ROUTES)
def test_every_route_closes_on_connection_close_and_http_1_0(
    daemon: Daemon, method: str, path: str, body: bytes
) -> None:
    for version, headers in (("1.1", "Connection: close\r\n"), ("1.0", "")):
        with connect(daemon) as sock:
            sock.sendall(request_bytes(method, path, version=version, headers=headers, body=body))
            data, took = read_until_closed(sock)
        status = data.split(b"\r\n", 1)[0]
        assert status.split()[1:2] in ([b"200"], [b"202"]), (version, data[:200])
        # Before the fix the Quart routes held the socket until the client gave up.
        assert took < CLOSE_BOUND, f"{method} {path} HTTP/{version}: closed after {took:.1f}s"


def test_idle_keep_alive_connections_close_on_every_route(daemon: Daemon) -> None:
    sockets = []
    try:
        for method, path, body in ROUTES:
            sock = connect(daemon)
            sockets.append(sock)
            sock.sendall(request_bytes(method, path, body=body))
        started = time.monotonic()
        for (method, path, _), sock in zip(ROUTES, sockets, strict=True):
            data, _ = read_until_closed(sock)
            assert data.startswith(b"HTTP/1.1 20"), (path, data[:100])
            took = time.monotonic() - started
            assert took < KEEP_ALIVE + CLOSE_BOUND, f"{method} {path} kept alive {took:.1f}s"
    finally:
        for sock in sockets:
            sock.close()


def test_requests_that_do_not_arrive_in_time_get_408_and_a_closed_connection(
    daemon: Daemon,
) -> None:
    stalls = {
        "headers": b"GET /health HTTP/1.1\r\nHost: s3syncer\r\n",
        "body": request_bytes("POST", "/trigger/push", body=b'{"events": []}')[:-5],
        "chunked body": (
            f"POST /trigger/push HTTP/1.1\r\nHost: s3syncer\r\n{AUTH}"
            "Transfer-Encoding: chunked\r\n\r\n1\r\n{\r\n"
        ).encode(),
    }
    for what, stalled in stalls.items():
        with connect(daemon) as sock:
            sock.sendall(stalled)
            data, took = read_until_closed(sock)
        assert data.startswith(b"HTTP/1.1 408"), (what, data)
        assert b"connection: close" in data.lower(), (what, data)
        assert 0.8 < took < 1 + CLOSE_BOUND, f"{what}: answered after {took:.1f}s"
    # The deadline is for the request's arrival only: a whole request is answered at once.
    with connect(daemon) as sock:
        sock.sendall(request_bytes("GET", "/health", headers="Connection: close\r\n"))
        data, _ = read_until_closed(sock)
    assert data.startswith(b"HTTP/1.1 200")


def test_status_lines_carry_their_reason_phrase(daemon: Daemon) -> None:
    # "HTTP/1.1 401 \r\n" is legal, but proxies and curl -i show the phrase to operators.
    answers = {
        b"HTTP/1.1 401 Unauthorized\r\n": b"GET /status HTTP/1.1\r\nHost: s3syncer\r\n\r\n",
        b"HTTP/1.1 200 OK\r\n": request_bytes("GET", "/health"),
        b"HTTP/1.1 404 Not Found\r\n": request_bytes("GET", "/nowhere"),
        b"HTTP/1.1 202 Accepted\r\n": request_bytes("POST", "/run/push"),
    }
    for status_line, request in answers.items():
        with connect(daemon) as sock:
            sock.sendall(request)
            data = b""
            while b"\r\n" not in data:
                data += sock.recv(65536)
        assert data.startswith(status_line), (status_line, data[:100])


def test_a_flood_of_expect_100_continue_hang_ups_costs_a_line_or_two(tmp_path: Path) -> None:
    recorder = Recorder(tmp_path / "push")
    with start_daemon(tmp_path, config_for(recorder.command_yaml("push"))) as daemon:
        before = len(daemon.log_text().splitlines())
        for _ in range(300):
            with connect(daemon) as sock:
                sock.sendall(
                    b"POST /trigger/push HTTP/1.1\r\nHost: s3syncer\r\n"
                    b"Content-Type: application/json\r\nExpect: 100-continue\r\n"
                    b"Content-Length: 50000000\r\n\r\n"
                )
                sock.recv(64)  # the answer's first bytes, then hang up
        assert daemon.get("/health")[0] == 200
        lines = daemon.log_text().splitlines()[before:]
        assert len(lines) <= 2, lines
        assert not any("Traceback" in line or "Error in ASGI" in line for line in lines), lines


@contextmanager
def open_files_for_this_test(count: int) -> Iterator[None]:
    """Let the test process hold ``count`` sockets; put its limits back afterwards."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = max(soft, count)
    resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, max(hard, wanted)))
    try:
        yield
    finally:
        resource.setrlimit(
            resource.RLIMIT_NOFILE, (soft, resource.getrlimit(resource.RLIMIT_NOFILE)[1])
        )


HOSTILE = 1100
TRIGGERS = 20


def push_status(daemon: Daemon) -> dict[str, Any]:
    """The ``push`` command's ``/status``, asked with the token."""
    code, _, body = daemon.get("/status", {"Authorization": f"Bearer {TOKEN}"})
    assert code == 200, body
    status: dict[str, Any] = json.loads(body)["commands"][0]
    return status


def hostile_connections(daemon: Daemon, count: int) -> list[socket.socket]:
    """Half hold a /health keep-alive connection, half send headers that never end."""
    held = []
    for number in range(count):
        try:
            sock = connect(daemon, timeout=5)
        except OSError:
            continue  # the backlog is full for a moment: a flood does not retry politely
        if number % 2:
            sock.sendall(b"GET /health HTTP/1.1\r\nHost: s3syncer\r\n\r\n")
        else:
            sock.sendall(b"GET /health HTTP/1.1\r\nHost: s3syncer\r\nX-Slow: ")
        held.append(sock)
    return held


def test_a_connection_flood_at_nofile_1024_lets_triggers_and_runs_through(
    tmp_path: Path,
) -> None:
    recorder = Recorder(tmp_path / "push")
    config = config_for(recorder.command_yaml("push", delay="50ms"), auth={"token": TOKEN})
    prefix = ["prlimit", "--nofile=1024:1024", "--"]
    with (
        open_files_for_this_test(HOSTILE + 200),
        start_daemon(tmp_path, config, argv_prefix=prefix) as daemon,
    ):
        budget = daemon.wait_for_log("open files limit 1024: at most")
        before = len(daemon.log_text().splitlines())
        held = hostile_connections(daemon, HOSTILE)
        try:
            latencies = []
            for _ in range(TRIGGERS):
                started = time.monotonic()
                status, _, body = daemon.post(
                    "/trigger/push",
                    fixture_body(TAG_V1),
                    {**REGISTRY_HEADERS, "Authorization": f"Bearer {TOKEN}"},
                )
                latencies.append(time.monotonic() - started)
                assert status == 200, body
                assert json.loads(body) == {"accepted": 1, "ignored": 0}
            # The runs happen during the flood too: their events files and pipes need fds.
            runs = wait_until(
                lambda: (s := push_status(daemon))["state"] == "idle" and s["runs"] and s,
                timeout=20,
                message=lambda: f"runs did not settle: {push_status(daemon)}",
            )
        finally:
            for sock in held:
                sock.close()
        assert runs["failures"] == 0, runs["lastRun"]
        assert runs["runs"] >= 1
        logged = [
            line for line in daemon.log_text().splitlines()[before:] if not RUN_LINE.search(line)
        ]
        assert len(logged) <= 5, logged
        # Latency is measured in benchmarks/connection_flood.py; here only that nothing waits
        # for a hostile connection to time out.
        assert max(latencies) < 5, (budget.group(0), sorted(latencies))


PIPELINERS = 100
PIPELINED = b"GET /health HTTP/1.1\r\nHost: s3syncer\r\n\r\n" * 2000


def pipeliners(daemon: Daemon, count: int) -> list[socket.socket]:
    """Connections that each pipeline 2,000 GET /health and never read an answer."""
    held = []
    for _ in range(count):
        sock = socket.create_connection(("127.0.0.1", daemon.port), timeout=5)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # fills at once
        sock.setblocking(False)
        with contextlib.suppress(BlockingIOError):
            sock.sendall(PIPELINED)
        held.append(sock)
    return held


def open_sockets(daemon: Daemon) -> int:
    """How many sockets the daemon holds (its listener included)."""
    fds = Path(f"/proc/{daemon.pid}/fd")
    return sum(1 for fd in fds.iterdir() if _is_socket(fd))


def _is_socket(fd: Path) -> bool:
    try:
        return fd.readlink().name.startswith("socket:")
    except OSError:
        return False  # closed while we looked


@pytest.mark.slow
def test_clients_that_pipeline_and_never_read_are_let_go(tmp_path: Path) -> None:
    # nginx's send_timeout, Go's closing on a failed write: a client that stops reading (or
    # hangs up mid-answer) must not keep its connection, or its slot, for ever. At nofile 256
    # the server takes about 80 connections at once, fewer than the pipeliners.
    recorder = Recorder(tmp_path / "push")
    config = config_for(
        recorder.command_yaml("push", delay="1h"), auth={"token": TOKEN}, requestTimeout="1s"
    )
    prefix = ["prlimit", "--nofile=256:256", "--"]
    with start_daemon(tmp_path, config, argv_prefix=prefix) as daemon:
        daemon.wait_for_log("open files limit 256: at most")
        quiet = open_sockets(daemon)
        before = len(daemon.log_text().splitlines())
        hung_up = pipeliners(daemon, PIPELINERS // 2)
        held = pipeliners(daemon, PIPELINERS // 2)
        try:
            for sock in hung_up:
                sock.close()  # unread answers: the kernel resets the connection
            # Each stalled answer is cut after requestTimeout (1 s) without progress.
            wait_until(
                lambda: open_sockets(daemon) <= quiet,
                timeout=15,
                message=lambda: f"{open_sockets(daemon)} sockets held, {quiet} when quiet",
            )
            status, _, body = daemon.post(
                "/trigger/push",
                fixture_body(TAG_V1),
                {**REGISTRY_HEADERS, "Authorization": f"Bearer {TOKEN}"},
                timeout=10,
            )
            assert status == 200, body
        finally:
            for sock in held:
                sock.close()
        logged = [
            line for line in daemon.log_text().splitlines()[before:] if not RUN_LINE.search(line)
        ]
        assert len(logged) <= 3, logged


def test_a_token_file_with_a_byte_order_mark_accepts_the_token(tmp_path: Path) -> None:
    token_file = tmp_path / "token"
    token_file.write_bytes(b"\xef\xbb\xbf" + TOKEN.encode() + b"\r\n")
    recorder = Recorder(tmp_path / "push")
    config = config_for(recorder.command_yaml("push"), auth={"tokenFile": str(token_file)})
    with start_daemon(tmp_path, config) as daemon:
        assert "starts with a UTF-8 byte order mark" in daemon.log_text()
        headers = {**REGISTRY_HEADERS, "Authorization": f"Bearer {TOKEN}"}
        assert daemon.post("/trigger/push", fixture_body(TAG_V1), headers)[0] == 200
        assert daemon.post("/trigger/push", fixture_body(TAG_V1), REGISTRY_HEADERS)[0] == 401


def test_the_daemon_raises_its_open_files_limit_and_commands_get_the_old_one(
    tmp_path: Path,
) -> None:
    seen = tmp_path / "nofile"
    command = {
        "name": "limit",
        "cmd": "/bin/sh",
        "args": ["-c", f"ulimit -n > {seen}"],
        "runOnStart": True,
    }
    config = f"commands:\n  - {json.dumps(command)}\n"
    prefix = ["prlimit", "--nofile=1024:4096", "--"]
    with start_daemon(tmp_path, config, argv_prefix=prefix) as daemon:
        daemon.wait_for_log("open files limit raised from 1024 to 4096")
        limits = Path(f"/proc/{daemon.pid}/limits").read_text()
        assert re.search(r"Max open files\s+4096\s+4096", limits), limits
        daemon.wait_for_log("limit: run 1 succeeded")
        assert seen.read_text().strip() == "1024"
