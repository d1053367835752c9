"""The clients: serial POSTs as a registry sends them, wrk bursts, and bounded waits."""

from __future__ import annotations

import http.client
import re
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass

from benchmarks.webhook import BenchmarkError
from benchmarks.webhook.servers import Server
from benchmarks.webhook.settings import CONTENT_TYPE, FIXTURE, PACKAGE, REQUEST_TIMEOUT

WRK_ERRORS = re.compile(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)")


def post(server: Server, path: str, body: bytes) -> tuple[int, bytes]:
    """One POST on a new connection, as a registry sends it; returns status and body."""
    conn = http.client.HTTPConnection(server.host, server.port, timeout=REQUEST_TIMEOUT)
    try:
        conn.request("POST", path, body=body, headers={"Content-Type": CONTENT_TYPE})
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def serial(server: Server, path: str, body: bytes, count: int) -> tuple[float, list[float]]:
    """``count`` POSTs one after another, a new connection each: (seconds, latencies)."""
    latencies: list[float] = []
    clock = time.perf_counter
    began = clock()
    for _ in range(count):
        sent = clock()
        status, _ = post(server, path, body)
        latencies.append(clock() - sent)
        if status != 200:
            raise BenchmarkError(f"{server.name}: POST {path} answered {status}")
    return clock() - began, latencies


@dataclass(frozen=True)
class WrkResult:
    """What wrk reports about one burst."""

    requests: int
    rate: float
    non_2xx: int
    socket_errors: int


def run_wrk(wrk: str, server: Server, path: str, seconds: int, script: str) -> WrkResult:
    """``wrk -t2 -c50 -dNs -s SCRIPT`` against ``server``; bounded by wrk's own -d."""
    argv = [
        *(wrk, "-t2", "-c50", f"-d{seconds}s", "--timeout", "2s"),
        *("-s", str(PACKAGE / script), f"http://{server.host}:{server.port}{path}"),
        *("--", str(FIXTURE)),
    ]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 30, check=True)
    return parse_wrk(done.stdout)


def parse_wrk(out: str) -> WrkResult:
    """The figures of wrk's report; a count wrk leaves out (no errors) is zero."""

    def number(pattern: str) -> float:
        found = re.search(pattern, out)
        return float(found.group(1)) if found else 0.0

    errors = WRK_ERRORS.search(out)
    return WrkResult(
        requests=int(number(r"(\d+) requests in")),
        rate=number(r"Requests/sec:\s+([\d.]+)"),
        non_2xx=int(number(r"Non-2xx or 3xx responses: (\d+)")),
        socket_errors=sum(int(g) for g in errors.groups()) if errors else 0,
    )


def wait_for(condition: Callable[[], bool], timeout: float, what: str) -> None:
    """Poll ``condition`` every 2 ms until true; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise BenchmarkError(f"timed out waiting for {what}")
        time.sleep(0.002)


def stable(condition: Callable[[], bool], hold: float) -> bool:
    """Whether ``condition`` holds now and at every look over the next ``hold`` seconds."""
    deadline = time.monotonic() + hold
    while time.monotonic() < deadline:
        if not condition():
            return False
        time.sleep(0.01)
    return condition()
