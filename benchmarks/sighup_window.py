"""How long a freshly started ``s3syncer serve`` dies of a SIGHUP (issue 28).

``systemctl start && systemctl reload`` sends SIGHUP right after the start. Until the
daemon handles SIGHUP, the signal's default action ends it. For ``--runs`` starts this
measures, from the moment the process exists (``Popen`` returned) until /proc shows a
handler for SIGHUP, and until it logs ``listening on``; then it sends one SIGHUP at a
random instant inside that start and counts the daemons it killed.

``--src DIR`` runs another checkout's code (``PYTHONPATH``), e.g. the code before the fix:
``git archive 32fc114 src | tar -x -C /tmp/before`` then ``--src /tmp/before/src``.
Run: ``.venv/bin/python benchmarks/sighup_window.py``.
"""

from __future__ import annotations

import argparse
import os
import random
import signal
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from daemon import Daemon, start_daemon  # noqa: E402

CONFIG = "commands:\n  - {name: push, cmd: /bin/true}\n"


def handles_sighup(pid: int) -> bool:
    """Whether ``pid`` has a handler of its own for SIGHUP."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False
    lines = status.splitlines()
    mask = next(int(line.split()[1], 16) for line in lines if line.startswith("SigCgt:"))
    return bool(mask & 1 << (signal.SIGHUP - 1))


def measure_start(tmp: Path, env: dict[str, str]) -> tuple[float, float]:
    """Seconds from spawn to a SIGHUP handler, and to ``listening on``."""
    started = time.monotonic()
    with start_daemon(tmp, CONFIG, env=env, wait_listening=False) as daemon:
        handled = listening = None
        while listening is None and time.monotonic() - started < 30:
            now = time.monotonic() - started
            if handled is None and handles_sighup(daemon.pid):
                handled = now
            if "listening on" in daemon.log_text():
                listening = now
            time.sleep(0.0005)
    assert listening is not None, "never listened"
    return (handled if handled is not None else listening), listening


def killed_by_a_sighup(tmp: Path, env: dict[str, str], at: float) -> bool:
    """Start, SIGHUP ``at`` seconds later: did it die of it?"""
    daemon: Daemon = start_daemon(tmp, CONFIG, env=env, wait_listening=False)
    with daemon:
        time.sleep(at)
        os.kill(daemon.pid, signal.SIGHUP)
        try:
            daemon.wait_listening(timeout=30)
        except RuntimeError:
            return daemon.returncode == -signal.SIGHUP
    return False


def spread(values: list[float]) -> str:
    """Median and max of seconds, in milliseconds."""
    return f"median {statistics.median(values) * 1000:.0f} ms, max {max(values) * 1000:.0f} ms"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--src", help="run this src/ instead of the installed package")
    args = parser.parse_args()
    env = {"PYTHONPATH": args.src} if args.src else {}
    handled: list[float] = []
    listening: list[float] = []
    deaths = 0
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        for _ in range(args.runs):
            to_handler, to_listen = measure_start(tmp, env)
            handled.append(to_handler)
            listening.append(to_listen)
            deaths += killed_by_a_sighup(tmp, env, random.uniform(0, to_listen))
    print(f"code: {args.src or 'installed'}; {args.runs} starts; load {os.getloadavg()[0]:.2f}")
    print(f"spawn -> SIGHUP handled (the fatal window): {spread(handled)}")
    print(f"spawn -> listening:                        {spread(listening)}")
    print(f"one SIGHUP at a random instant of the start: {deaths}/{args.runs} daemons killed")


if __name__ == "__main__":
    main()
