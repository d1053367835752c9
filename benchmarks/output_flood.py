"""What a flood of output costs a real daemon: its CPU, and the bytes of log it writes.

    .venv/bin/python -m benchmarks.output_flood [--mib 256] [--json FILE]

A command writes ``--mib`` MiB of empty lines (the worst case: one log line per byte);
the daemon runs it once (``POST /run/flood``) and the script prints the daemon's CPU
seconds (user + system, from /proc) and how much its log grew over that run. Target
(issue 28): the log stays near the 1 MiB budget, and the CPU is seconds, not minutes.
Figures are printed, never asserted.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import re
import signal
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from .pending_state import TIMEOUT, Daemon

END = re.compile(r"flood: run 1 (succeeded|failed)")
WRITER = (
    "import sys\n"
    "chunk = b'\\n' * (1 << 20)\n"
    "for _ in range(int(sys.argv[1])):\n"
    "    sys.stdout.buffer.write(chunk)\n"
    "sys.stdout.buffer.flush()\n"
)


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time of ``pid`` so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def flood(directory: Path, mib: int) -> dict[str, Any]:
    """Run the flooding command once and measure the daemon."""
    script = directory / "flood.py"
    script.write_text(WRITER)
    config = directory / "config.yaml"
    item = {"name": "flood", "cmd": sys.executable, "args": [str(script), str(mib)]}
    config.write_text(f"commands:\n  - {json.dumps(item)}\n")
    running = Daemon(config, directory / "daemon.log")
    try:
        log_before = running.log_path.stat().st_size
        cpu_before = cpu_seconds(running.process.pid)
        started = time.monotonic()
        connection = http.client.HTTPConnection("127.0.0.1", running.port, timeout=TIMEOUT)
        connection.request("POST", "/run/flood")
        status = connection.getresponse().status
        connection.close()
        if status != 202:
            raise RuntimeError(f"/run/flood answered {status}")
        deadline = time.monotonic() + 1800
        while not END.search(running.log_path.read_text(errors="replace")):
            if time.monotonic() > deadline:
                raise RuntimeError("the run did not end in 30 minutes")
            time.sleep(0.2)
        elapsed = time.monotonic() - started
        return {
            "output_mib": mib,
            "daemon_cpu_s": cpu_seconds(running.process.pid) - cpu_before,
            "log_bytes": running.log_path.stat().st_size - log_before,
            "run_wall_s": elapsed,
        }
    finally:
        running.stop()


def main() -> None:
    """Measure, print, and write JSON if asked."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--mib", type=int, default=256)
    parser.add_argument("--json", type=Path)
    options = parser.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))  # stop the daemon on the way out
    with tempfile.TemporaryDirectory() as directory:
        figures = flood(Path(directory), options.mib)
    print(json.dumps(figures, indent=2))
    if options.json:
        options.json.write_text(json.dumps(figures, indent=2) + "\n")


if __name__ == "__main__":
    main()
