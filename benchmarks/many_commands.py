"""What 10,000 commands cost the daemon's one event loop: /metrics, /status pollers, a reload.

Three figures for issue 28, on a daemon configured with ``--commands`` commands (each
``/bin/true``, never run: ``delay: 1h``) and a token:

1. **/metrics.** Its size, how long one scrape takes, and the longest a ``GET /health``
   waited while it was rendered (the loop time the scrape took from everyone else).
2. **Triggers while /status is polled.** ``--triggers`` authorized webhooks to one command,
   one connection each, first on a quiet daemon, then while ``--pollers`` clients fetch
   ``/status`` back to back. Reported: p50, p99 and the number of /status answers.
3. **A reload of every command.** The config rewritten with every command's ``delay``
   changed, then SIGHUP, while one client sends triggers back to back: the longest a
   trigger took until the reload was logged, and how long the reload took.

Targets (issue 28): /metrics under 1 s of loop time; trigger p99 under 100 ms while
4 clients poll /status. ``--src DIR`` runs another checkout's code (``PYTHONPATH``), for the
figures before a change. Run: ``.venv/bin/python benchmarks/many_commands.py``.
"""

from __future__ import annotations

import argparse
import http.client
import json
import signal
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from daemon import Daemon, spawn_s3syncer  # noqa: E402
from waiting import wait_until  # noqa: E402

TOKEN = "benchmark-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
FIXTURE = ROOT / "tests" / "fixtures" / "distribution-2.8" / "02-push-manifest-tag-v1.json"
HEADERS = {"Content-Type": "application/vnd.docker.distribution.events.v1+json", **AUTH}


def percentile(values: list[float], fraction: float) -> float:
    """The ``fraction`` quantile of ``values`` (nearest rank)."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


def ms(seconds: float) -> float:
    """Seconds as milliseconds, rounded for a table."""
    return round(seconds * 1000, 1)


def config_text(commands: int, delay: str) -> str:
    """A config of ``commands`` commands that never run within the benchmark."""
    items = "".join(
        f"  - {{name: c{i}, cmd: /bin/true, delay: {delay}}}\n" for i in range(commands)
    )
    return f"auth: {{token: {TOKEN}}}\ncommands:\n{items}"


def timed(call: Callable[[], Any]) -> tuple[float, Any]:
    """How long ``call()`` took, and what it returned."""
    started = time.monotonic()
    result = call()
    return time.monotonic() - started, result


class Background:
    """Runs ``action`` in a loop on threads until stopped; records how long each took."""

    def __init__(self, action: Callable[[], Any], threads: int = 1) -> None:
        self.action = action
        self.times: list[float] = []
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._loop, daemon=True) for _ in range(threads)]

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                elapsed, _ = timed(self.action)
            except (OSError, http.client.HTTPException):
                elapsed = float("inf")
            self.times.append(elapsed)

    def __enter__(self) -> Background:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=120)


def trigger(daemon: Daemon, body: bytes) -> float:
    """Seconds one webhook to ``c0`` took; anything but 200 counts as infinitely slow."""
    try:
        elapsed, (status, _, _) = timed(
            lambda: daemon.post("/trigger/c0", body, HEADERS, timeout=60)
        )
    except (OSError, http.client.HTTPException):
        return float("inf")
    return elapsed if status == 200 else float("inf")


def metrics_figures(daemon: Daemon) -> dict[str, Any]:
    """Figure 1: one scrape, and the longest /health wait during it."""
    daemon.get("/metrics", timeout=120)  # warm: the first scrape pays for imports
    with Background(lambda: daemon.get("/health", timeout=120)) as health:
        time.sleep(0.2)
        took, (_, _, body) = timed(lambda: daemon.get("/metrics", timeout=120))
        time.sleep(0.2)
    return {
        "size MB": round(len(body) / 1e6, 1),
        "scrape s": round(took, 2),
        "longest /health wait during it ms": ms(max(health.times)),
    }


def polling_figures(daemon: Daemon, args: argparse.Namespace, body: bytes) -> dict[str, Any]:
    """Figure 2: triggers on a quiet daemon, then while /status is polled."""
    quiet = [trigger(daemon, body) for _ in range(args.triggers)]
    with Background(lambda: daemon.get("/status", AUTH, timeout=120), args.pollers) as polls:
        polled = [trigger(daemon, body) for _ in range(args.triggers)]
    return {
        "quiet p50 ms": ms(percentile(quiet, 0.5)),
        "quiet p99 ms": ms(percentile(quiet, 0.99)),
        "polled p50 ms": ms(percentile(polled, 0.5)),
        "polled p99 ms": ms(percentile(polled, 0.99)),
        "/status answers during it": len(polls.times),
        "/status p50 ms": ms(percentile(polls.times, 0.5)),
    }


def reload_figures(daemon: Daemon, config: Path, commands: int, body: bytes) -> dict[str, Any]:
    """Figure 3: the longest trigger while every command's delay changes on SIGHUP."""
    logged = len(daemon.log_text().splitlines())
    config.write_text(config_text(commands, "2h"), encoding="utf-8")
    with Background(lambda: trigger(daemon, body)) as triggers:
        time.sleep(0.5)
        started = time.monotonic()
        daemon.signal(signal.SIGHUP)
        wait_until(
            lambda: any("reloaded" in line for line in daemon.log_text().splitlines()[logged:]),
            timeout=300,
            message="no 'reloaded' line",
        )
        reload_took = time.monotonic() - started
        time.sleep(0.5)
    return {
        "reload s": round(reload_took, 2),
        "longest trigger during it ms": ms(max(triggers.times)),
        "triggers during it": len(triggers.times),
    }


def main() -> None:
    """Measure the three figures and print them as JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--commands", type=int, default=10_000)
    parser.add_argument("--triggers", type=int, default=200)
    parser.add_argument("--pollers", type=int, default=4)
    parser.add_argument("--src", help="run the daemon from this source directory instead")
    args = parser.parse_args()
    env = {"PYTHONPATH": args.src} if args.src else {}
    body = FIXTURE.read_bytes()
    with tempfile.TemporaryDirectory(prefix="s3syncer-many-") as work:
        config = Path(work) / "config.yaml"
        config.write_text(config_text(args.commands, "1h"), encoding="utf-8")
        cli = ["serve", "--config", str(config), "--listen", "127.0.0.1:0"]
        started, daemon = timed(lambda: spawn_s3syncer(Path(work), cli, env=env, ready_timeout=300))
        with daemon:
            try:
                results = measure(daemon, config, args, body)
            finally:
                if daemon.returncode is not None:
                    print(daemon.log_text()[-3000:], file=sys.stderr)
        results = {
            "code": args.src or str(ROOT / "src"),
            "start to listening s": round(started, 1),
            **results,
        }
    print(json.dumps(results, indent=2))


def measure(daemon: Daemon, config: Path, args: argparse.Namespace, body: bytes) -> dict[str, Any]:
    """The three figures; one that cannot be measured says why instead."""
    return {
        "commands": args.commands,
        "/metrics": attempt(lambda: metrics_figures(daemon)),
        f"triggers, {args.pollers} clients polling /status": attempt(
            lambda: polling_figures(daemon, args, body)
        ),
        "reload of every command": attempt(
            lambda: reload_figures(daemon, config, args.commands, body)
        ),
    }


def attempt(figures: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """``figures()``, or the error that stopped it (the code before a fix may fail)."""
    try:
        return figures()
    except (OSError, http.client.HTTPException, TimeoutError) as exc:
        return {"failed": f"{type(exc).__name__}: {exc}"}


if __name__ == "__main__":
    main()
