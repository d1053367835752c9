"""What pending events cost a real daemon with ``stateDir``: webhook latency, and memory.

    .venv/bin/python -m benchmarks.pending_state [--webhook] [--memory] [--json FILE]

* ``--webhook``: the p50 and p99 of sequential single-event webhooks with no event
  pending, then with 10,000 ordinary events pending in the journal (a command whose
  ``delay`` has not passed), and their ratio. Target (issue 28): p50 within 2x.
* ``--memory``: the daemon's resident memory after 300 pending events of 1 MiB each,
  and its peak (VmHWM) over a restart that reads the journal they left. Target: both
  under 256 MB.

Both by default. Everything is on 127.0.0.1, sequential, with a timeout on every request
and every wait; the daemon is stopped (SIGTERM, then SIGKILL) however the run ends.
Figures are printed, never asserted: compare them with the targets by eye.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

LISTENING = re.compile(rb"listening on http://127\.0\.0\.1:(\d+)")
CONTENT_TYPE = "application/vnd.docker.distribution.events.v1+json"
TIMEOUT = 30.0
MIB = 1024 * 1024


class Daemon:
    """A ``s3syncer serve`` process on 127.0.0.1, and plain HTTP to it."""

    def __init__(self, config: Path, log: Path) -> None:
        self._log = log.open("wb")
        argv = [sys.executable, "-m", "s3syncer", "serve", "--config", str(config)]
        self.process = subprocess.Popen(
            [*argv, "--listen", "127.0.0.1:0"],
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.log_path = log
        self.port = self._wait_port()
        self.connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=TIMEOUT)

    def _wait_port(self) -> int:
        deadline = time.monotonic() + TIMEOUT
        while time.monotonic() < deadline:
            found = LISTENING.search(self.log_path.read_bytes())
            if found:
                return int(found.group(1))
            if self.process.poll() is not None:
                break
            time.sleep(0.05)
        raise RuntimeError(f"the daemon did not listen: {self.log_path.read_text()[-2000:]}")

    def post(self, body: bytes) -> float:
        """POST ``body`` to /trigger/push; the seconds until the answer, which must be 200."""
        started = time.perf_counter()
        self.connection.request(
            "POST", "/trigger/push", body, {"Content-Type": CONTENT_TYPE, "Connection": "close"}
        )
        response = self.connection.getresponse()
        answer = response.read()
        elapsed = time.perf_counter() - started
        self.connection.close()
        if response.status != 200:
            raise RuntimeError(f"answer {response.status}: {answer[:200]!r}")
        return elapsed

    def memory(self) -> dict[str, float]:
        """VmRSS and VmHWM of the daemon, in MB (10^6 bytes)."""
        figures = {}
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            name, _, value = line.partition(":")
            if name in ("VmRSS", "VmHWM"):
                figures[name] = int(value.split()[0]) * 1024 / 1e6
        return figures

    def wait_log(self, text: str) -> None:
        """Wait (bounded) until the log holds ``text``."""
        deadline = time.monotonic() + TIMEOUT
        while text not in self.log_path.read_text(errors="replace"):
            if time.monotonic() > deadline or self.process.poll() is not None:
                raise RuntimeError(f"no {text!r} in the log")
            time.sleep(0.05)

    def stop(self) -> None:
        """SIGTERM, then SIGKILL after the timeout."""
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(TIMEOUT)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        self._log.close()


@contextlib.contextmanager
def daemon(directory: Path, name: str) -> Iterator[Daemon]:
    """A daemon with ``stateDir`` in ``directory``, whose one command waits an hour."""
    config = directory / "config.yaml"
    config.write_text(
        f"stateDir: {directory / 'state'}\n"
        "commands:\n"
        '  - {name: push, cmd: /bin/sleep, args: ["3600"], delay: 1h, maxDelay: 1h}\n'
    )
    running = Daemon(config, directory / f"{name}.log")
    try:
        yield running
    finally:
        running.stop()


def envelope(first: int, count: int, padding: int = 0) -> bytes:
    """A Distribution envelope of ``count`` tagged manifest pushes with unique ids."""
    events = []
    for number in range(first, first + count):
        event: dict[str, Any] = {
            "id": f"bench-{number}",
            "timestamp": "2026-11-29T04:01:41.83806954Z",
            "action": "push",
            "target": {
                "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "size": 419,
                "digest": f"sha256:{number:064x}",
                "length": 419,
                "repository": "team/app",
                "url": f"http://127.0.0.1:15002/v2/team/app/manifests/sha256:{number:064x}",
                "tag": f"v{number}",
            },
            "request": {"id": f"req-{number}", "addr": "127.0.0.1:42758", "method": "PUT"},
            "actor": {},
            "source": {"addr": "vm:15002", "instanceID": "ee75bb9d-c030-4494-9b51-2efff7d0435e"},
        }
        if padding:
            event["request"]["useragent"] = "x" * padding
        events.append(event)
    return json.dumps({"events": events}).encode()


def latencies(running: Daemon, first: int, count: int) -> dict[str, float]:
    """p50 and p99 in ms of ``count`` sequential single-event webhooks."""
    times = sorted(running.post(envelope(first + i, 1)) * 1000 for i in range(count))
    return {"p50_ms": statistics.median(times), "p99_ms": times[int(len(times) * 0.99) - 1]}


def webhook(directory: Path) -> dict[str, Any]:
    """Webhook latency with none, then 10,000 events pending."""
    with daemon(directory, "webhook") as running:
        latencies(running, 10_000_000, 50)  # warm up: imports, first journal write
        running.post(b'{"events": []}')
        none = latencies(running, 20_000_000, 300)
        for batch in range(100):
            running.post(envelope(batch * 100, 100))
        journal = directory / "state" / "push.json"
        pending = latencies(running, 30_000_000, 300)
        size = journal.stat().st_size
    return {
        "none_pending": none,
        "pending_10000": pending,
        "journal_bytes": size,
        "p50_ratio": pending["p50_ms"] / none["p50_ms"],
    }


def memory(directory: Path) -> dict[str, Any]:
    """RSS with 300 pending 1 MiB events, and the peak over the restart that reads them."""
    padding = MIB - 2048  # one event, just inside the 1 MiB body limit
    with daemon(directory, "memory-first") as running:
        before = running.memory()
        for number in range(300):
            running.post(envelope(number, 1, padding))
        after = running.memory()
    journal_bytes = (directory / "state" / "push.json").stat().st_size
    with daemon(directory, "memory-restart") as running:
        running.wait_log("running now")
        restart = running.memory()
    return {
        "idle_rss_mb": before["VmRSS"],
        "rss_after_300_mb": after["VmRSS"],
        "peak_before_restart_mb": after["VmHWM"],
        "journal_bytes": journal_bytes,
        "restart_peak_mb": restart["VmHWM"],
        "restart_rss_mb": restart["VmRSS"],
    }


def main() -> None:
    """Run the chosen measurements, print them, and write them as JSON if asked."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--webhook", action="store_true")
    parser.add_argument("--memory", action="store_true")
    parser.add_argument("--json", type=Path)
    options = parser.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))  # stop the daemon on the way out
    both = not (options.webhook or options.memory)
    figures: dict[str, Any] = {}
    if options.webhook or both:
        with tempfile.TemporaryDirectory() as directory:
            figures["webhook"] = webhook(Path(directory))
    if options.memory or both:
        with tempfile.TemporaryDirectory() as directory:
            figures["memory"] = memory(Path(directory))
    print(json.dumps(figures, indent=2))
    if options.json:
        options.json.write_text(json.dumps(figures, indent=2) + "\n")


if __name__ == "__main__":
    main()
