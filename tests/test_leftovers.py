"""Nothing of a run outlives it, against a real ``s3syncer serve``.

A command that escapes its process group with a ``setsid`` double fork, and a
daemon killed with SIGKILL in the middle of a run: after the run (or after the
restart) no process of it is left, and no events file either.
"""

from __future__ import annotations

import json
import os
import signal
import sys
from pathlib import Path

import pytest

from daemon import Daemon, pid_gone, processes, spawn_s3syncer
from test_serve import config_for
from waiting import wait_until

pytestmark = pytest.mark.integration

# The leader starts a grandchild in a session of its own (out of the run's process group),
# writes its pid, then exits or waits as asked.
ESCAPER = r"""
import os, sys, time

pid_file, leader_waits = sys.argv[1], float(sys.argv[2])
child = os.fork()
if child == 0:
    os.setsid()
    if os.fork() == 0:
        with open(pid_file + ".tmp", "w") as file:
            file.write(str(os.getpid()))
        os.rename(pid_file + ".tmp", pid_file)
        time.sleep(300)
    os._exit(0)
os.waitpid(child, 0)
with open(pid_file + ".leader.tmp", "w") as file:
    file.write(str(os.getpid()))
os.rename(pid_file + ".leader.tmp", pid_file + ".leader")  # never read half-written
time.sleep(leader_waits)
"""


def escaper_command(tmp_path: Path, name: str, leader_waits: float, **options: object) -> str:
    """A command item that leaves a setsid'd grandchild; its pid goes to ``NAME.pid``."""
    script = tmp_path / "escaper.py"
    script.write_text(ESCAPER, encoding="utf-8")
    args = [str(script), str(tmp_path / f"{name}.pid"), str(leader_waits)]
    item = {"name": name, "cmd": sys.executable, "args": args, **options}
    return f"  - {json.dumps(item)}\n"


def read_pid(path: Path) -> int:
    """Wait for a pid file the command writes; return the pid."""
    wait_until(path.exists, timeout=15, message=f"{path} never appeared")
    return int(path.read_text())


def serve(tmp_path: Path, config: Path) -> Daemon:
    """``s3syncer serve`` on the same config file each time (the run directory follows it)."""
    return spawn_s3syncer(tmp_path, ["serve", "--config", str(config), "--listen", "127.0.0.1:0"])


def test_a_setsid_double_fork_is_gone_after_its_run(tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    config.write_text(config_for(escaper_command(tmp_path, "escape", 0, runOnStart=True)))
    with serve(tmp_path, config) as daemon:
        orphan = read_pid(tmp_path / "escape.pid")
        daemon.wait_for_log("escape: run 1 succeeded", timeout=20)
        # The daemon adopted it as a subreaper and ended it when the run ended.
        assert pid_gone(orphan), "the setsid'd grandchild outlived its run"
        assert "ending 1 process(es) that runs left behind" in daemon.log_text()
        assert daemon.status()["escape"]["lastRun"]["ok"] is True


def test_after_a_sigkill_mid_run_the_restart_ends_what_the_run_left(tmp_path: Path) -> None:
    state = tmp_path / "state"
    config = tmp_path / "config.yaml"
    config.write_text(
        config_for(
            escaper_command(tmp_path, "stuck", 300, runOnStart=True),
            stateDir=str(state),
            shutdownGrace="1s",
        )
    )
    daemon = serve(tmp_path, config)
    try:
        orphan = read_pid(tmp_path / "stuck.pid")
        leader = read_pid(tmp_path / "stuck.pid.leader")
        [events_file] = list((state / "runs").glob("*.json"))
        os.kill(daemon.pid, signal.SIGKILL)
        daemon.wait(10)
    finally:
        daemon.stop()
    # The leader heard of its parent's death; the grandchild is out of reach until...
    wait_until(lambda: pid_gone(leader), timeout=10, message="the leader outlived the daemon")
    assert not pid_gone(orphan)
    (tmp_path / "stuck.pid").unlink()
    with serve(tmp_path, config) as restarted:
        # ...the next start, which finds it by the events file in its environment.
        restarted.wait_for_log("ending 1 process(es) left by runs before this start", timeout=20)
        assert pid_gone(orphan), "the old run's grandchild outlived the restart"
        assert not events_file.exists(), "the old run's events file outlived the restart"
        new_orphan = read_pid(tmp_path / "stuck.pid")
    # A clean shutdown ends the new run, its escaped grandchild and its files alike.
    assert restarted.returncode == 0, restarted.log_text()
    wait_until(lambda: pid_gone(new_orphan), timeout=15, message="the new grandchild survived")
    assert not any(pid == new_orphan for pid, *_ in processes())
    assert not list((state / "runs").glob("*.json"))
