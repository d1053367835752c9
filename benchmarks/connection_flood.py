"""Triggers under a connection flood, and what held connections cost.

Figures for issues 16 and 28, each against a baseline measured in the same run:

1. **Trigger latency under a flood.** A daemon under ``prlimit --nofile=1024:1024`` (a common
   container default) with a token. Baseline: ``--triggers`` authorized webhooks, one
   connection each, on a quiet server. Flood: the same while ``--hostile`` connections are
   held open (half a kept-alive ``GET /health``, half headers that never end). Reported: p50,
   p99 and the ratio, failed runs, the daemon's open descriptors and the log lines the flood
   caused.
2. **Held connections.** ``--held`` connections that each sent ``GET /metrics`` and never read
   nor close: the daemon's open descriptors and RSS before, while held, and 8 s later.
3. **Pipeliners** (issue 28). ``--pipeliners`` connections that each pipeline 2,000
   ``GET /health`` and never read; half hang up at once. The daemon's open descriptors
   before, and 2 s and 15 s later, and whether an authorized trigger is answered meanwhile.

``--src DIR`` runs another checkout's code (``PYTHONPATH``), e.g. ``--src /work/main/src`` for
the figures before the fix. Run: ``.venv/bin/python benchmarks/connection_flood.py``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import resource
import socket
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from daemon import Daemon, Recorder, start_daemon  # noqa: E402
from waiting import wait_until  # noqa: E402

# A run's own lines (start, coalesced triggers, end, output): they grow with runs, not requests.
RUN_LINE = re.compile(r" push(: (.* )?run \d+\b| \| )")
TOKEN = "benchmark-token"
FIXTURE = ROOT / "tests" / "fixtures" / "distribution-2.8" / "02-push-manifest-tag-v1.json"
HEADERS = {
    "Content-Type": "application/vnd.docker.distribution.events.v1+json",
    "Authorization": f"Bearer {TOKEN}",
}


def percentile(values: list[float], fraction: float) -> float:
    """The ``fraction`` quantile of ``values`` (nearest rank)."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


def daemon_figures(daemon: Daemon) -> dict[str, float]:
    """The daemon's open descriptors and resident memory (MiB)."""
    fds = len(os.listdir(f"/proc/{daemon.pid}/fd"))
    status = Path(f"/proc/{daemon.pid}/status").read_text()
    rss_kib = next(int(line.split()[1]) for line in status.splitlines() if line.startswith("VmRSS"))
    return {"fds": fds, "rss_mib": round(rss_kib / 1024, 1)}


def trigger_latencies(daemon: Daemon, count: int, body: bytes) -> list[float]:
    """Seconds each of ``count`` authorized webhooks took, one connection each; any non-200
    counts as infinitely slow."""
    latencies = []
    for _ in range(count):
        started = time.monotonic()
        try:
            status = daemon.post("/trigger/push", body, HEADERS, timeout=30)[0]
        except OSError:
            status = 0
        elapsed = time.monotonic() - started
        latencies.append(elapsed if status == 200 else float("inf"))
    return latencies


def hold(daemon: Daemon, count: int, requests: list[bytes]) -> list[socket.socket]:
    """Open ``count`` connections, sending the requests in turn on them; never read."""
    held = []
    for number in range(count):
        try:
            sock = socket.create_connection(("127.0.0.1", daemon.port), timeout=5)
            sock.sendall(requests[number % len(requests)])
        except OSError:
            continue
        held.append(sock)
    return held


def status_of(daemon: Daemon) -> dict[str, Any]:
    """``/status`` of the ``push`` command, with the token."""
    body = daemon.get("/status", {"Authorization": f"Bearer {TOKEN}"}, timeout=30)[2]
    result: dict[str, Any] = json.loads(body)["commands"][0]
    return result


def flood(work: Path, args: argparse.Namespace, env: dict[str, str]) -> dict[str, Any]:
    """Figure 1: trigger latency with and without hostile connections, at nofile 1024."""
    recorder = Recorder(work / "push")
    config = f"auth: {{token: {TOKEN}}}\ncommands:\n" + recorder.command_yaml("push", delay="50ms")
    body = FIXTURE.read_bytes()
    prefix = ["prlimit", "--nofile=1024:1024", "--"]
    with start_daemon(work, config, env=env, argv_prefix=prefix) as daemon:
        baseline = trigger_latencies(daemon, args.triggers, body)
        before_lines = len(daemon.log_text().splitlines())
        held = hold(
            daemon,
            args.hostile,
            [
                b"GET /health HTTP/1.1\r\nHost: s3syncer\r\n\r\n",
                b"GET /health HTTP/1.1\r\nHost: s3syncer\r\nX-Slow: ",
            ],
        )
        during = daemon_figures(daemon)
        flooded = trigger_latencies(daemon, args.triggers, body)
        for sock in held:
            sock.close()
        settled = wait_until(lambda: (s := status_of(daemon))["state"] == "idle" and s, timeout=60)
        flood_lines = [
            line
            for line in daemon.log_text().splitlines()[before_lines:]
            if not RUN_LINE.search(line)
        ]
    return {
        "hostile connections opened": len(held),
        "baseline p50 ms": round(percentile(baseline, 0.5) * 1000, 1),
        "baseline p99 ms": round(percentile(baseline, 0.99) * 1000, 1),
        "flood p50 ms": round(percentile(flooded, 0.5) * 1000, 1),
        "flood p99 ms": round(percentile(flooded, 0.99) * 1000, 1),
        "p99 ratio": round(percentile(flooded, 0.99) / percentile(baseline, 0.99), 2),
        "triggers not answered 200": sum(1 for t in baseline + flooded if t == float("inf")),
        "runs": settled["runs"],
        "failed runs": settled["failures"],
        "daemon during flood": during,
        "log lines about the flood": len(flood_lines),
        "first of them": flood_lines[:5],
    }


def held_connections(work: Path, args: argparse.Namespace, env: dict[str, str]) -> dict[str, Any]:
    """Figure 2: what ``--held`` never-read ``GET /metrics`` connections cost."""
    recorder = Recorder(work / "held")
    config = "commands:\n" + recorder.command_yaml("push", delay="1h")
    with start_daemon(work, config, env=env) as daemon:
        daemon.get("/metrics")
        before = daemon_figures(daemon)
        held = hold(daemon, args.held, [b"GET /metrics HTTP/1.1\r\nHost: s3syncer\r\n\r\n"])
        time.sleep(1)  # a fixed look, not a condition: this is a measurement
        holding = daemon_figures(daemon)
        time.sleep(8)
        later = daemon_figures(daemon)
        for sock in held:
            sock.close()
    return {
        "connections opened": len(held),
        "before": before,
        "1 s after opening": holding,
        "9 s after opening": later,
    }


PIPELINED = b"GET /health HTTP/1.1\r\nHost: s3syncer\r\n\r\n" * 2000


def pipeliners(work: Path, args: argparse.Namespace, env: dict[str, str]) -> dict[str, Any]:
    """Figure 3: what ``--pipeliners`` clients that never read their answers hold, and when."""
    recorder = Recorder(work / "pipelined")
    config = f"auth: {{token: {TOKEN}}}\ncommands:\n" + recorder.command_yaml("push", delay="1h")
    with start_daemon(work, config, env=env) as daemon:
        before = daemon_figures(daemon)
        held = []
        for _ in range(args.pipeliners):
            sock = socket.create_connection(("127.0.0.1", daemon.port), timeout=5)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            sock.setblocking(False)
            # What does not fit stays unsent: the daemon stopped reading, as it should.
            with contextlib.suppress(BlockingIOError):
                sock.sendall(PIPELINED)
            held.append(sock)
        for sock in held[: len(held) // 2]:
            sock.close()
        time.sleep(2)  # fixed looks, not conditions: this is a measurement
        after_2s = daemon_figures(daemon)
        latency = trigger_latencies(daemon, 5, FIXTURE.read_bytes())
        time.sleep(13)
        after_15s = daemon_figures(daemon)
        for sock in held[len(held) // 2 :]:
            sock.close()
    return {
        "pipelining connections": len(held),
        "before": before,
        "2 s after": after_2s,
        "15 s after": after_15s,
        "trigger latencies ms": [round(t * 1000, 1) for t in latency],
    }


def main() -> None:
    """Run both measurements and print them as JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hostile", type=int, default=1100)
    parser.add_argument("--triggers", type=int, default=200)
    parser.add_argument("--held", type=int, default=5000)
    parser.add_argument("--pipeliners", type=int, default=500)
    parser.add_argument("--only-pipeliners", action="store_true", help="figure 3 alone")
    parser.add_argument("--src", help="run the daemon from this source directory instead")
    args = parser.parse_args()
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(
        resource.RLIMIT_NOFILE, (min(hard, max(args.held, args.hostile) + 500), hard)
    )
    env = {"PYTHONPATH": args.src} if args.src else {}
    with tempfile.TemporaryDirectory(prefix="s3syncer-flood-") as work:
        results: dict[str, Any] = {"code": args.src or str(ROOT / "src")}
        if not args.only_pipeliners:
            results["flood at nofile 1024"] = flood(Path(work) / "flood", args, env)
            results["held GET /metrics"] = held_connections(Path(work) / "held", args, env)
        results["pipeliners that never read"] = pipeliners(Path(work) / "pipelined", args, env)
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
