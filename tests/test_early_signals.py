"""A SIGHUP in the first moments of ``serve`` must not kill the daemon (issue 28).

``systemctl start && systemctl reload`` sends SIGHUP while the daemon is still importing
its stack (0.5 s, 1.6 s under load). It used to catch only SIGTERM and SIGINT that
early, so the SIGHUP killed it, and systemd counts a death by SIGHUP as clean: no
restart. The handlers for all three are now installed before anything else of ours
runs, and a SIGHUP that arrives before the loop listens becomes a reload.

The tests send SIGHUP the moment the process shows (in /proc, SigCgt) that it handles
any signal at all: that is the earliest instant a Python program can defend itself,
and where the old code, catching SIGTERM but not SIGHUP, died.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest

from daemon import Daemon, Recorder, start_daemon
from waiting import wait_until

pytestmark = [pytest.mark.integration, pytest.mark.slow]

ATTEMPTS = 4


def caught_signals(pid: int) -> int:
    """The mask of signals ``pid`` has a handler for (0 once it is gone)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return 0
    for line in status.splitlines():
        if line.startswith("SigCgt:"):
            return int(line.split()[1], 16)
    return 0


def handles(pid: int, sig: signal.Signals) -> bool:
    """Whether ``pid`` has a handler of its own for ``sig``."""
    return bool(caught_signals(pid) >> (sig - 1) & 1)


def start(tmp_path: Path) -> tuple[Daemon, Recorder]:
    """A daemon of one command, returned as soon as it handles any signal (not listening yet)."""
    recorder = Recorder(tmp_path / f"push-{time.monotonic_ns()}")
    config = f"commands:\n{recorder.command_yaml('push', delay='100ms')}"
    daemon = start_daemon(tmp_path, config, wait_listening=False)
    wait_until(
        lambda: handles(daemon.pid, signal.SIGTERM) or daemon.returncode is not None,
        timeout=15,
        interval=0.0005,
        message="the daemon never installed a signal handler",
    )
    return daemon, recorder


def assert_serves_and_stops_cleanly(daemon: Daemon, recorder: Recorder) -> None:
    """It is alive, listening and runs a command; SIGTERM ends it with exit code 0."""
    daemon.wait_listening()
    assert daemon.post("/run/push")[0] == 202
    recorder.wait_ends(1)
    daemon.signal(signal.SIGTERM)
    assert daemon.wait(15) == 0, daemon.log_text()


def test_a_sighup_the_moment_signals_are_handled_is_a_reload(tmp_path: Path) -> None:
    for _ in range(ATTEMPTS):
        daemon, recorder = start(tmp_path)
        with daemon:
            os.kill(daemon.pid, signal.SIGHUP)
            assert_serves_and_stops_cleanly(daemon, recorder)
            assert "SIGHUP received while starting: reloading" in daemon.log_text()


def sighup_until_listening(daemon: Daemon) -> int:
    """Send SIGHUP after SIGHUP until the daemon listens; how many were sent."""
    sent = 0

    def listening_after_another_sighup() -> bool:
        nonlocal sent
        if daemon.returncode is not None:
            raise AssertionError(f"died after {sent} SIGHUP(s):\n{daemon.log_text()}")
        os.kill(daemon.pid, signal.SIGHUP)
        sent += 1
        return "listening on" in daemon.log_text()

    wait_until(listening_after_another_sighup, timeout=15, interval=0.005)
    return sent


def test_sighups_all_through_the_start_are_harmless(tmp_path: Path) -> None:
    for _ in range(ATTEMPTS):
        daemon, recorder = start(tmp_path)
        with daemon:
            assert sighup_until_listening(daemon) >= 1
            assert_serves_and_stops_cleanly(daemon, recorder)
