"""Fault injection: misbehaving commands under a real ``s3syncer serve``.

Each test starts the daemon, makes a command misbehave on its first run (a 100 MB flood,
invalid UTF-8, ignoring SIGTERM, a grandchild holding stdout, exit 137, a full disk) and
checks that the run ends as the spec says, that the daemon survives it (``/health``), that
the next trigger runs the command normally, and that no process of any run is left.

The command is :data:`FAULT_SCRIPT`: it records each run (pid, process group, reason, the
events file) in a state directory and misbehaves only when it finds no earlier record.
"""

from __future__ import annotations

import contextlib
import json
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from conftest import fixture_body
from daemon import Daemon, pid_gone, processes, start_daemon
from s3syncer.exec.process import KILL_GRACE
from waiting import wait_until

pytestmark = pytest.mark.integration

TAG_V1 = "02-push-manifest-tag-v1.json"
REGISTRY_HEADERS = {"Content-Type": "application/vnd.docker.distribution.events.v1+json"}
MB = 1000 * 1000
MIB = 1024 * 1024

FAULT_SCRIPT = r"""
import json, os, signal, subprocess, sys, time

state, mode, target = sys.argv[1], sys.argv[2], sys.argv[3]
number = len([f for f in os.listdir(state) if f.startswith("run-")])


def note(**fields):
    # Written under a temporary name and renamed: the test never reads half a record.
    events_file = os.environ.get("S3SYNCER_EVENTS_FILE")
    with open(events_file, encoding="utf-8") as file:
        events = json.load(file)
    fields.update(
        pid=os.getpid(), pgid=os.getpgid(0), reason=os.environ.get("S3SYNCER_REASON"),
        events=events, mode=mode if number == 0 else "normal",
    )
    temporary = os.path.join(state, f".run-{number}.tmp")
    with open(temporary, "w", encoding="utf-8") as file:
        json.dump(fields, file)
    os.rename(temporary, os.path.join(state, f"run-{number}.json"))


def wait_for(path):
    deadline = time.monotonic() + 30
    while not os.path.exists(path):
        if time.monotonic() > deadline:
            sys.exit("timed out waiting for " + path)
        time.sleep(0.01)
    with open(path, encoding="utf-8") as file:
        return int(file.read())


def grandchild(code):
    # A grandchild in the run's process group that inherits stdout and writes its pid.
    pid_file = os.path.join(state, f"grandchild-{number}.pid")
    script = code + (
        "\nimport os, sys, time"
        "\nwith open(sys.argv[1] + '.tmp', 'w') as f: f.write(str(os.getpid()))"
        "\nos.rename(sys.argv[1] + '.tmp', sys.argv[1])"
        "\ntime.sleep(120)"
    )
    subprocess.Popen([sys.executable, "-c", script, pid_file])
    return wait_for(pid_file)


if number > 0:
    note()
    print("a normal run", flush=True)
    sys.exit(0)

if mode == "flood":
    note()
    chunk = (b"x" * 1023 + b"\n") * 1024  # 1 MiB of 1 KiB lines
    for _ in range(100 * 1000 * 1000 // len(chunk) + 1):
        sys.stdout.buffer.write(chunk)
    sys.stdout.buffer.write(b"flood done\n")
elif mode == "bad-utf8":
    note()
    sys.stdout.buffer.write(b"caf\xe9 \xff\xfe \xed\xa0\x80 \xc3\x28 end\n")
    sys.stderr.buffer.write(b"\xf0\x9f\x98 cut short, no newline \xe2\x82")
elif mode == "ignore-sigterm":
    def on_term(signum, frame):
        # Say when SIGTERM came, and carry on as if nothing happened.
        with open(os.path.join(state, "sigterm"), "a") as file:
            file.write(f"{time.time()}\n")

    signal.signal(signal.SIGTERM, on_term)
    gc = grandchild("import signal; signal.signal(signal.SIGTERM, signal.SIG_IGN)")
    note(grandchild=gc)
    deadline = time.monotonic() + 120  # never outlive a broken test by much
    while time.monotonic() < deadline:
        time.sleep(0.05)
elif mode == "grandchild":
    gc = grandchild("print('grandchild here, holding stdout', flush=True)")
    note(grandchild=gc)
elif mode == "exit-137":
    note()
    os._exit(137)
elif mode == "fill":
    note()
    try:
        with open(target, "wb") as file:
            while True:
                file.write(b"\0" * 65536)
                file.flush()
    except OSError as exc:
        print(f"cannot write {target}: {exc}", file=sys.stderr)
        sys.exit(1)
sys.exit(0)
"""


class FaultyCommand:
    """A command that misbehaves (``mode``) on its first run and runs normally afterwards."""

    def __init__(self, directory: Path, mode: str, target: str = "-") -> None:
        self.state = directory / "state"
        self.state.mkdir(parents=True)
        self.script = directory / "fault.py"
        self.script.write_text(FAULT_SCRIPT, encoding="utf-8")
        self.mode = mode
        self.target = target

    def command_yaml(self, name: str, **options: Any) -> str:
        """A ``commands:`` item; a short ``delay`` so that runs start at once."""
        item: dict[str, Any] = {
            "name": name,
            "cmd": sys.executable,
            "args": [str(self.script), str(self.state), self.mode, self.target],
            "delay": "50ms",
        }
        item.update(options)
        return f"  - {json.dumps(item)}\n"

    def runs(self) -> list[dict[str, Any]]:
        """The record of each run that started, in order."""
        paths = sorted(self.state.glob("run-*.json"), key=lambda p: int(p.stem[4:]))
        return [json.loads(p.read_text(encoding="utf-8")) for p in paths]

    def wait_runs(self, count: int, timeout: float = 10.0) -> list[dict[str, Any]]:
        """Wait until ``count`` runs started; return their records."""

        def enough() -> list[dict[str, Any]] | None:
            runs = self.runs()
            return runs if len(runs) >= count else None

        return wait_until(
            enough, timeout=timeout, message=lambda: f"wanted {count} run(s), got {self.runs()}"
        )


def wait_run_end(daemon: Daemon, name: str, run_id: int, timeout: float = 20.0) -> dict[str, Any]:
    """Wait until ``name``'s run ``run_id`` ended; return its ``lastRun`` from /status."""

    def ended() -> dict[str, Any] | None:
        last: dict[str, Any] | None = daemon.status()[name]["lastRun"]
        return last if last and last["runId"] == run_id and last["end"] else None

    return wait_until(
        ended,
        timeout=timeout,
        message=lambda: f"run {run_id} of {name} did not end: {daemon.status()[name]}",
    )


def live_group_members(pgid: int) -> list[int]:
    """Processes of group ``pgid`` that still run (zombies run nothing: not counted)."""
    return [pid for pid, state, _, pgrp in processes() if pgrp == pgid and state not in "ZX"]


def children_of(pid: int) -> list[int]:
    """Every child of ``pid``, zombies included: the daemon must reap what it started."""
    children = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                if int((entry / "stat").read_text().rpartition(")")[2].split()[1]) == pid:
                    children.append(int(entry.name))
    return children


def assert_nothing_left(daemon: Daemon, runs: list[dict[str, Any]]) -> None:
    """No process of any run is left, and the daemon has no child, not even a zombie."""
    for run in runs:
        assert run["pgid"] == run["pid"], "each run leads a process group of its own"
        for pid in (run["pid"], run.get("grandchild")):
            if pid is not None:
                assert pid_gone(pid), f"process {pid} outlived its run: {run}"
        assert live_group_members(run["pgid"]) == [], f"run {run} left processes"
    wait_until(
        lambda: children_of(daemon.pid) == [],
        timeout=5,
        message=lambda: f"the daemon still has children {children_of(daemon.pid)}",
    )


def trigger_runs_normally(
    daemon: Daemon, command: FaultyCommand, name: str, run_id: int
) -> dict[str, Any]:
    """The daemon is healthy and a registry trigger runs the command normally; that run."""
    assert daemon.get("/health")[:3:2] == (200, b"OK\n")
    before = len(command.runs())
    status, _, answer = daemon.post(f"/trigger/{name}", fixture_body(TAG_V1), REGISTRY_HEADERS)
    assert (status, json.loads(answer)) == (200, {"accepted": 1, "ignored": 0})
    record = command.wait_runs(before + 1)[-1]
    assert (record["mode"], record["reason"]) == ("normal", "event")
    sent = [event["raw"] for event in record["events"]["events"]]
    assert sent == json.loads(fixture_body(TAG_V1))["events"]
    last = wait_run_end(daemon, name, run_id)
    assert (last["ok"], last["exitCode"], last["reason"]) == (True, 0, "event"), last
    assert "a normal run" in last["outputTail"]
    assert daemon.returncode is None
    return record


def memory_kib(pid: int) -> dict[str, int]:
    """``VmRSS`` (now) and ``VmHWM`` (peak) of ``pid``, in KiB."""
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            fields[key] = int(value.split()[0])
    return fields


# --- the faults ----------------------------------------------------------------------------


def test_a_100_mb_flood_keeps_memory_and_log_bounded(tmp_path: Path) -> None:
    command = FaultyCommand(tmp_path / "flood", "flood")
    with start_daemon(tmp_path, "commands:\n" + command.command_yaml("flood")) as daemon:
        assert daemon.status()["flood"]["lastRun"] is None
        before = memory_kib(daemon.pid)["VmRSS"]
        assert daemon.post("/run/flood")[0] == 202
        last = wait_run_end(daemon, "flood", 1, timeout=60)
        assert (last["ok"], last["exitCode"]) == (True, 0), last
        # The tail keeps the end of the output: the last 64 KiB, ending with the last line.
        tail = last["outputTail"].encode()
        assert len(tail) <= 64 * 1024 and tail.endswith(b"xxx\nflood done\n"), tail[-100:]

        peak = memory_kib(daemon.pid)["VmHWM"]
        grew = (peak - before) / 1024
        assert grew < 50, f"the daemon's peak RSS grew by {grew:.1f} MiB while reading 100 MB"

        # The log took the first MiB, then said that the rest went unlogged.
        found = daemon.wait_for_log(
            re.compile(r"flood: run 1: (\d+) output lines not logged"), timeout=10
        )
        log_text = daemon.log_text()
        assert (
            "flood: run 1 wrote over 1048576 bytes of log; the rest of its output is not logged"
            in (log_text)
        )
        # 1 MiB of log, each line costing its text and a log line's overhead.
        logged = log_text.count("flood | xxx")
        assert 800 <= logged <= 1024, f"{logged} output lines logged"
        # Every line was read: 96 MiB of 1 KiB lines (over 100 MB), plus "flood done".
        assert logged + int(found[1]) == 96 * 1024 + 1, (logged, found[0])
        assert daemon.log_path.stat().st_size < 3 * MIB

        second = trigger_runs_normally(daemon, command, "flood", 2)
        assert_nothing_left(daemon, [*command.runs()[:1], second])


def test_invalid_utf8_output_is_logged_replaced(tmp_path: Path) -> None:
    command = FaultyCommand(tmp_path / "utf8", "bad-utf8")
    config = "commands:\n" + command.command_yaml("utf8")
    with start_daemon(tmp_path, config, args=["--log-format", "json"]) as daemon:
        assert daemon.post("/run/utf8")[0] == 202
        last = wait_run_end(daemon, "utf8", 1)
        assert (last["ok"], last["exitCode"]) == (True, 0), last
        assert "caf\ufffd \ufffd\ufffd" in last["outputTail"]
        assert "cut short, no newline" in last["outputTail"]
        # Every log line is still one JSON document, with the bad bytes replaced.
        daemon.wait_for_log("cut short, no newline")
        records = [json.loads(line) for line in daemon.log_text().splitlines()]
        output = [r["message"] for r in records if r.get("stream") == "output"]
        assert any(m.startswith("utf8 | caf\ufffd") and m.endswith(" end") for m in output)
        assert any("\ufffd cut short, no newline \ufffd" in m for m in output), output
        # The status page renders it.
        status, _, page = daemon.get("/")
        assert status == 200 and b"cut short, no newline" in page

        second = trigger_runs_normally(daemon, command, "utf8", 2)
        assert_nothing_left(daemon, [*command.runs()[:1], second])


def test_a_command_ignoring_sigterm_is_killed_after_the_grace(tmp_path: Path) -> None:
    command = FaultyCommand(tmp_path / "stubborn", "ignore-sigterm")
    config = "commands:\n" + command.command_yaml("stubborn", timeout="1s")
    with start_daemon(tmp_path, config) as daemon:
        assert daemon.post("/run/stubborn")[0] == 202
        [first] = command.wait_runs(1)
        # SIGTERM at the timeout; while the daemon waits out the grace, it serves as ever.
        sigterm = command.state / "sigterm"
        wait_until(sigterm.exists, timeout=10, message="no SIGTERM after the 1 s timeout")
        assert daemon.get("/health")[0] == 200
        assert daemon.status()["stubborn"]["state"] == "running"
        assert live_group_members(first["pgid"]), "it was killed before the grace"

        last = wait_run_end(daemon, "stubborn", 1, timeout=1 + KILL_GRACE + 10)
        assert (last["ok"], last["timedOut"]) == (False, True), last
        assert 1 + KILL_GRACE - 0.5 <= last["durationSeconds"] < 1 + KILL_GRACE + 5, last
        log_text = daemon.log_text()
        assert "outlived SIGTERM by 10s; sending SIGKILL" in log_text
        assert "stubborn: run 1 timed out after 1s" in log_text
        # The leader and its grandchild (which ignores SIGTERM too) both got SIGKILL.
        assert_nothing_left(daemon, [first])

        second = trigger_runs_normally(daemon, command, "stubborn", 2)
        assert_nothing_left(daemon, [first, second])


def test_a_grandchild_holding_stdout_does_not_hold_the_run(tmp_path: Path) -> None:
    command = FaultyCommand(tmp_path / "forker", "grandchild")
    with start_daemon(tmp_path, "commands:\n" + command.command_yaml("forker")) as daemon:
        assert daemon.post("/run/forker")[0] == 202
        last = wait_run_end(daemon, "forker", 1)
        assert (last["ok"], last["exitCode"]) == (True, 0), last
        # It ended when its leader did, not when the grandchild's 120 s sleep would have
        # (nor after a kill grace: the grandchild takes SIGTERM).
        assert last["durationSeconds"] < 5, last
        assert "grandchild here, holding stdout" in last["outputTail"]
        [first] = command.runs()
        assert_nothing_left(daemon, [first])

        second = trigger_runs_normally(daemon, command, "forker", 2)
        assert_nothing_left(daemon, [first, second])


def test_exit_137_is_a_failed_run_not_a_signal(tmp_path: Path) -> None:
    command = FaultyCommand(tmp_path / "oom", "exit-137")
    with start_daemon(tmp_path, "commands:\n" + command.command_yaml("oom")) as daemon:
        assert daemon.post("/run/oom")[0] == 202
        last = wait_run_end(daemon, "oom", 1)
        assert (last["ok"], last["exitCode"], last["signal"]) == (False, 137, None), last
        assert last["timedOut"] is False and last["error"] is None
        daemon.wait_for_log("oom: run 1 failed (exit 137)")

        second = trigger_runs_normally(daemon, command, "oom", 2)
        assert_nothing_left(daemon, [*command.runs()[:1], second])


def fill_up(path: Path) -> None:
    """Write to ``path`` until its file system is full."""
    # Outermost: closing the file fails too, once the disk is full.
    with contextlib.suppress(OSError), path.open("wb") as file:
        while True:
            file.write(b"\0" * 4096)
            file.flush()


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 1 MiB tmpfs. Mounting it takes root, which CI has: without it the test fails loudly
    rather than check less (a write to /dev/full never fills the daemon's events dir)."""
    mount_point = tmp_path / "small-disk"
    mount_point.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mount_point)],
        capture_output=True,
        check=False,
    )
    if mounted.returncode != 0:
        pytest.fail(
            "cannot mount the 1 MiB tmpfs this test fills (run the tests as root, as CI does): "
            + mounted.stderr.decode(errors="replace").strip()
        )
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", "-l", str(mount_point)], check=True)


def test_a_full_disk_fails_the_run_cleanly(tmp_path: Path, small_disk: Path) -> None:
    # The workdir and the daemon's TMPDIR (its events files) share one small volume, as
    # they might on a pod's emptyDir: the command fills it for both.
    workdir, temp = small_disk / "work", small_disk / "tmp"
    workdir.mkdir()
    temp.mkdir()
    command = FaultyCommand(tmp_path / "fill", "fill", "filler")
    config = "commands:\n" + command.command_yaml("fill", workdir=str(workdir))
    with start_daemon(tmp_path, config, env={"TMPDIR": str(temp)}) as daemon:
        assert daemon.post("/run/fill")[0] == 202
        last = wait_run_end(daemon, "fill", 1)
        assert (last["ok"], last["exitCode"]) == (False, 1), last
        assert "cannot write filler: [Errno 28] No space left on device" in last["outputTail"]
        assert (workdir / "filler").stat().st_size > 0
        [first] = command.runs()
        assert_nothing_left(daemon, [first])
        # Run 1's events file, deleted after it, freed a page: take it too.
        fill_up(workdir / "top-up")

        # Now the daemon cannot write the next run's events file either: the run fails
        # without starting the command, leaves no file behind, and the daemon serves on.
        assert daemon.get("/health")[0] == 200
        good = fixture_body(TAG_V1)
        assert daemon.post("/trigger/fill", good, REGISTRY_HEADERS)[0] == 200
        last = wait_run_end(daemon, "fill", 2)
        assert last["ok"] is False, last
        assert last["error"].startswith("cannot write the events file: [Errno 28]"), last
        assert len(command.runs()) == 1, "the command started without its events file"
        assert not list(temp.rglob("*.json")), "a half-written events file was left behind"

        # Space again: the next trigger runs normally, and its run still covers the event
        # the failed run could not hand over.
        (workdir / "filler").unlink()
        (workdir / "top-up").unlink()
        second = trigger_runs_normally(daemon, command, "fill", 3)
        assert_nothing_left(daemon, [first, second])
