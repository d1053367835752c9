"""The three servers under test, each in its own process, and what /proc says about them."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from benchmarks.webhook import BenchmarkError
from benchmarks.webhook.settings import (
    BURST_DELAY,
    BURST_SLEEP,
    HOST,
    LATENCY_DELAY,
    REPO,
    SERVER_START_TIMEOUT,
)

LISTENING = re.compile(r"listening on http://([^\s:/]+):(\d+)")


@dataclass
class Server:
    """One server process under test, with its stderr (and stdout) in ``log_path``."""

    name: str
    proc: subprocess.Popen[bytes]
    log_path: Path
    host: str = HOST
    port: int = 0

    @property
    def pid(self) -> int:
        """The server's process id (the Python interpreter itself, not a wrapper)."""
        return self.proc.pid

    def log_size(self) -> int:
        """Bytes the server has written to stdout and stderr so far."""
        return self.log_path.stat().st_size

    def stop(self) -> None:
        """SIGTERM, wait a little, then SIGKILL."""
        if self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=5)


def start_server(name: str, argv: Sequence[str], workdir: Path) -> Server:
    """Start ``argv`` and wait for its ``listening on http://HOST:PORT`` line."""
    log_path = workdir / f"{name}.log"
    with log_path.open("wb") as log_file:
        proc = subprocess.Popen(
            list(argv),
            cwd=REPO,
            stdin=subprocess.DEVNULL,
            stdout=log_file,
            stderr=log_file,
            start_new_session=True,
        )
    server = Server(name, proc, log_path)
    deadline = time.monotonic() + SERVER_START_TIMEOUT
    while time.monotonic() < deadline:
        found = LISTENING.search(log_path.read_text(errors="replace"))
        if found:
            server.host, server.port = found.group(1), int(found.group(2))
            return server
        if proc.poll() is not None:
            break
        time.sleep(0.02)
    server.stop()
    tail = log_path.read_text(errors="replace")[-2000:]
    raise BenchmarkError(f"{name} did not start listening:\n{tail}")


@contextmanager
def servers_running(workdir: Path, config: Path) -> Iterator[dict[str, Server]]:
    """s3syncer, the baseline and the Quart-Trio route; all stopped however the block ends."""
    python = sys.executable
    started: dict[str, Server] = {}
    try:
        started["s3syncer"] = start_server(
            "s3syncer",
            [python, "-m", "s3syncer", "serve", "--config", str(config), "--listen", f"{HOST}:0"],
            workdir,
        )
        started["baseline"] = start_server(
            "baseline", [python, "-m", "benchmarks.webhook.baseline_app", f"{HOST}:0"], workdir
        )
        started["quart"] = start_server(
            "quart", [python, "-m", "benchmarks.webhook.quart_app", f"{HOST}:0"], workdir
        )
        yield started
    finally:
        for server in started.values():
            server.stop()


def write_daemon_config(workdir: Path) -> dict[str, Path]:
    """The s3syncer config of this benchmark; returns the files its commands write."""
    files = {
        "burst": workdir / "burst-runs.txt",
        "unique": workdir / "unique-runs.txt",
        "latency": workdir / "latency-starts.txt",
    }
    for path in files.values():
        path.touch()
    sleeper = f'echo start >> "$0"; sleep {BURST_SLEEP}; echo end >> "$0"'
    stamp = 'exec date +%s.%N >> "$0"'

    def command(name: str, script: str, delay: float) -> dict[str, object]:
        return {
            "name": name,
            "cmd": "/bin/sh",
            "args": ["-c", script, str(files[name])],
            "delay": f"{round(delay * 1000)}ms",
        }

    config = {
        "shutdownGrace": "2s",
        "commands": [
            # Figure 1: nothing runs while it is measured (delay 1h); only the webhook counts.
            {"name": "serial", "cmd": "true", "delay": "1h"},
            # Figure 2: a run that lasts BURST_SLEEP, so the burst lands on a running command.
            command("burst", sleeper, BURST_DELAY),
            command("unique", sleeper, BURST_DELAY),
            # Figure 3: the command stamps the wall clock the moment it starts.
            command("latency", stamp, LATENCY_DELAY),
        ],
    }
    # JSON is YAML: no YAML writer needed.
    (workdir / "config.yaml").write_text(json.dumps(config, indent=2))
    return files


def rss_kib(pid: int) -> int:
    """Resident memory of ``pid`` in KiB, from /proc/PID/status VmRSS."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise BenchmarkError(f"no VmRSS for pid {pid}")


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time of ``pid`` (not of its children), from /proc/PID/stat."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2 :].split()
    # After "pid (comm) ", field 3 (state) is fields[0]; utime is 14, stime 15.
    utime, stime = int(fields[11]), int(fields[12])
    return (utime + stime) / os.sysconf("SC_CLK_TCK")
