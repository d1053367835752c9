"""The process launcher, with real processes: argv, environment, output, exit, groups.

Every wait here is on a condition with a bound (``trio.fail_after``, a polled
file with a deadline), never a sleep that hopes the process got somewhere.
A process counts as gone once it no longer exists or is a zombie: a zombie
runs nothing, and reaping an orphan is its new parent's (init's) business.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import subprocess
import sys
import textwrap
import time
import tracemalloc
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import trio

from s3syncer.exec import process
from s3syncer.exec.leftovers import adopted_children
from s3syncer.exec.process import MAX_LINE_BYTES, MAX_LOGGED_BYTES, ProcessLauncher
from s3syncer.formats.distribution import parse_envelope
from s3syncer.model.config import CommandConfig
from s3syncer.model.event import Event
from s3syncer.model.event_log import EventLog
from s3syncer.model.run import TAIL_BYTES, Reason, RunRequest, RunResult

PY = sys.executable
GRACE = 0.5  # kill_grace in these tests: short, so the SIGKILL path stays fast
BOUND = 10.0  # generous upper bound on anything that should take well under a second


class Records(logging.Handler):
    """Collects the records of the output and process loggers, optionally only counting."""

    def __init__(self, *, keep: bool = True) -> None:
        super().__init__(logging.DEBUG)
        self.keep = keep
        self.output: list[logging.LogRecord] = []
        self.warnings: list[logging.LogRecord] = []
        self.output_count = 0

    def emit(self, record: logging.LogRecord) -> None:
        if record.name == "s3syncer.output":
            self.output_count += 1
            if self.keep:
                self.output.append(record)
        elif record.levelno >= logging.WARNING:
            self.warnings.append(record)

    def lines(self, stream: str | None = None) -> list[str]:
        """The logged output lines (of ``stream``, or of both), in order."""
        return [
            line_of(r)
            for r in self.output
            if stream is None or getattr(r, "stream", None) == stream
        ]

    def warning_text(self) -> str:
        """Every warning message, one per line."""
        return "\n".join(r.getMessage() for r in self.warnings)


def line_of(record: logging.LogRecord) -> str:
    """The output line an ``s3syncer.output`` record carries, without the name prefix."""
    message = record.getMessage()
    prefix = f"{getattr(record, 'command', None)} | "
    assert message.startswith(prefix), message
    return message[len(prefix) :]


@contextlib.contextmanager
def attached(handler: logging.Handler) -> Iterator[None]:
    """Send the output and process loggers' records, of every level, to ``handler``."""
    loggers = [logging.getLogger("s3syncer.output"), logging.getLogger("s3syncer.process")]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.DEBUG)
        logger.addHandler(handler)
        # pytest's own capture would keep every record of a flood: not needed, and slow.
        logger.propagate = False
    try:
        yield
    finally:
        for logger, level in zip(loggers, levels, strict=True):
            logger.removeHandler(handler)
            logger.setLevel(level)
            logger.propagate = True


@pytest.fixture
def records() -> Iterator[Records]:
    """Every output record and process warning of the test."""
    handler = Records()
    with attached(handler):
        yield handler


@pytest.fixture
def events_dir(tmp_path: Path) -> Path:
    """Where the launcher writes events files: empty before, and checked empty after."""
    path = tmp_path / "events"
    path.mkdir()
    return path


def command(*argv: str, **fields: Any) -> CommandConfig:
    """A command named ``job`` running ``argv``."""
    return CommandConfig(name="job", cmd=argv[0], args=tuple(argv[1:]), **fields)


def python(script: str, *args: str, **fields: Any) -> CommandConfig:
    """A command running a Python ``script`` (dedented) with ``args``."""
    return command(PY, "-c", textwrap.dedent(script), *args, **fields)


def request(reason: Reason = "manual", events: EventLog | None = None) -> RunRequest:
    """A run request with no events unless given."""
    return RunRequest(run_id=7, reason=reason, events=events or EventLog(), triggers=1)


async def launch(
    cmd: CommandConfig,
    events_dir: Path,
    *,
    req: RunRequest | None = None,
    base_env: dict[str, str] | None = None,
) -> RunResult:
    """Run ``cmd`` with a short kill grace, bounded, and check its events file is gone."""
    launcher = ProcessLauncher(kill_grace=GRACE, events_dir=str(events_dir), base_env=base_env)
    with trio.fail_after(BOUND + 2 * GRACE + (cmd.timeout or 0)):
        result = await launcher(cmd, req or request())
    assert leftovers(events_dir) == [], "the events file outlived the run"
    return result


def alive(pid: int) -> bool:
    """Whether ``pid`` exists and is not a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    # The state follows the parenthesised command name, which may itself hold spaces.
    return stat.rpartition(")")[2].split()[0] != "Z"


def leftovers(directory: Path) -> list[Path]:
    """What ``directory`` holds (tiny local directories: no thread needed)."""
    return list(directory.iterdir())


def pid_in(path: Path) -> int | None:
    """The pid in ``path``, or None while the command has not written it yet."""
    # Commands write the file under a temporary name and rename it: never half-written.
    return int(path.read_text()) if path.exists() else None


async def read_pid(path: Path) -> int:
    """The pid the command writes to ``path``, waiting (bounded) for it to appear."""
    # Another process writes it: there is no event to wait on, so poll, bounded.
    with trio.fail_after(BOUND):
        while (pid := pid_in(path)) is None:  # noqa: ASYNC110
            await trio.sleep(0.01)
    return pid


# --- argv, workdir, environment, events file ---------------------------------------------


async def test_argv_is_passed_exactly_without_a_shell(tmp_path: Path, events_dir: Path) -> None:
    out = tmp_path / "argv.json"
    args = ["$HOME; echo x", "*", "", "a b", "'q' \"d\"", "`id`", "ünïcödé", "--"]
    script = """
        import json, sys
        with open(sys.argv[1], "w") as f:
            json.dump(sys.argv[2:], f)
    """
    result = await launch(python(script, str(out), *args), events_dir)
    assert result.ok, result
    assert json.loads(out.read_text()) == args


REPORT = """
    import json, os, sys
    names = ["S3SYNCER_COMMAND", "S3SYNCER_REASON", "S3SYNCER_EVENTS_FILE",
             "FROM_COMMAND", "FROM_DAEMON", "PATH"]
    with open(os.environ["S3SYNCER_EVENTS_FILE"], encoding="utf-8") as f:
        document = json.load(f)
    with open(sys.argv[1], "w") as f:
        json.dump({"cwd": os.getcwd(), "env": {n: os.environ.get(n) for n in names},
                   "events": document}, f)
"""


async def test_workdir_env_and_events_file(
    tmp_path: Path, events_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FROM_DAEMON", "inherited")
    workdir = tmp_path / "work dir"
    workdir.mkdir()
    out = tmp_path / "report.json"
    raw = [
        {"id": "a", "action": "push", "target": {"repository": "r", "tag": "v1"}},
        {"id": "b", "action": "push", "target": {"repository": "r/ü", "tag": "latest"}},
        {"id": "a", "action": "push", "target": {"repository": "resent", "tag": "v1"}},
        {"action": "push", "target": {"repository": "no-id"}},
    ]
    log = EventLog()
    log.extend(parse_envelope(json.dumps({"events": raw}).encode()))
    env = {"FROM_COMMAND": "x=y; $z", "S3SYNCER_REASON": "spoofed"}
    cmd = python(REPORT, str(out), workdir=str(workdir), env=env)

    result = await launch(cmd, events_dir, req=request("event", log))

    assert result.ok, result
    report = json.loads(out.read_text())
    assert report["cwd"] == str(workdir.resolve())
    seen = report["env"]
    assert seen["FROM_COMMAND"] == "x=y; $z"
    assert seen["FROM_DAEMON"] == "inherited"
    assert seen["PATH"] == os.environ["PATH"]
    assert seen["S3SYNCER_COMMAND"] == "job"
    assert seen["S3SYNCER_REASON"] == "event", "the command's env must not override ours"
    assert Path(seen["S3SYNCER_EVENTS_FILE"]).parent == events_dir
    # The events in order, the resent id "a" dropped, each as sent under raw.
    document = report["events"]
    assert (document["command"], document["reason"], document["truncated"]) == (
        "job",
        "event",
        False,
    )
    assert [event["raw"] for event in document["events"]] == [raw[0], raw[1], raw[3]]
    assert [event["target"]["repository"] for event in document["events"]] == ["r", "r/ü", "no-id"]


async def test_events_file_holds_real_registry_events_and_truncation(
    tmp_path: Path, events_dir: Path, fixture_bodies: dict[str, bytes]
) -> None:
    events: list[Event] = []
    for body in fixture_bodies.values():  # in the order the registry sent them
        events.extend(parse_envelope(body))
    assert events
    log = EventLog(limit=len(events) - 1)
    log.extend(events)
    assert log.truncated
    out = tmp_path / "report.json"
    result = await launch(python(REPORT, str(out)), events_dir, req=request("recovered", log))
    assert result.ok, result
    document = json.loads(out.read_text())["events"]
    assert document["reason"] == "recovered"
    assert document["truncated"] is True
    assert document["events"] == [event.to_document() for event in log]


async def test_base_env_replaces_the_inherited_environment(
    tmp_path: Path, events_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FROM_DAEMON", "inherited")
    out = tmp_path / "report.json"
    result = await launch(
        python(REPORT, str(out), env={"FROM_COMMAND": "1"}),
        events_dir,
        base_env={"PATH": "/usr/bin:/bin"},
    )
    assert result.ok, result
    seen = json.loads(out.read_text())["env"]
    assert seen["FROM_DAEMON"] is None
    assert seen["PATH"] == "/usr/bin:/bin"
    assert seen["FROM_COMMAND"] == "1"
    assert seen["S3SYNCER_REASON"] == "manual"
    assert json.loads(out.read_text())["events"]["events"] == []


# --- exit status -------------------------------------------------------------------------


async def test_exit_zero_is_ok(events_dir: Path) -> None:
    result = await launch(command("/bin/sh", "-c", "exit 0"), events_dir)
    assert result.ok
    assert (result.exit_code, result.signal, result.timed_out, result.error) == (
        0,
        None,
        False,
        None,
    )


async def test_exit_three_fails_with_its_code(events_dir: Path) -> None:
    result = await launch(command("/bin/sh", "-c", "echo failing >&2; exit 3"), events_dir)
    assert not result.ok
    assert (result.exit_code, result.signal, result.timed_out, result.error) == (
        3,
        None,
        False,
        None,
    )
    assert result.describe() == "exit 3"
    assert "failing" in result.output_tail


async def test_killed_by_a_signal(events_dir: Path) -> None:
    script = "import os, signal; os.kill(os.getpid(), signal.SIGKILL)"
    result = await launch(python(script), events_dir)
    assert not result.ok
    assert result.signal == signal.SIGKILL
    assert result.exit_code is None
    assert not result.timed_out


async def test_exit_137_is_an_exit_code_not_a_signal(events_dir: Path) -> None:
    result = await launch(command("/bin/sh", "-c", "exit 137"), events_dir)
    assert not result.ok
    assert (result.exit_code, result.signal) == (137, None)


# --- output ------------------------------------------------------------------------------


async def test_output_is_logged_as_it_comes(
    tmp_path: Path, events_dir: Path, records: Records
) -> None:
    # The command waits for a file the test creates only after it saw the first line
    # logged: with buffered output this deadlocks (and fail_after says so).
    go = tmp_path / "go"
    script = """
        import os, sys, time
        print("first", flush=True)
        deadline = time.monotonic() + 10
        while not os.path.exists(sys.argv[1]):
            if time.monotonic() > deadline:
                sys.exit("the first line was not logged while the command ran")
            time.sleep(0.01)
        print("second")
    """
    seen_first = trio.Event()

    class Watch(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if line_of(record) == "first":
                seen_first.set()

    watch = Watch()
    logging.getLogger("s3syncer.output").addHandler(watch)
    try:
        results: list[RunResult] = []

        async def run() -> None:
            results.append(await launch(python(script, str(go)), events_dir))

        with trio.fail_after(BOUND):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(run)
                await seen_first.wait()
                assert records.lines() == ["first"]
                go.touch()
    finally:
        logging.getLogger("s3syncer.output").removeHandler(watch)
    assert results[0].ok, results[0]
    assert records.lines() == ["first", "second"]


async def test_stdout_and_stderr_keep_their_order(events_dir: Path, records: Records) -> None:
    script = """
        import sys
        for i in range(50):
            stream = sys.stdout if i % 2 else sys.stderr
            stream.write(f"line {i} to {stream.name}\\n")
            stream.flush()
        sys.stdout.write("crlf\\r\\n")
    """
    result = await launch(python(script), events_dir)
    assert result.ok, result
    expected = [f"line {i} to {'<stdout>' if i % 2 else '<stderr>'}" for i in range(50)]
    assert records.lines("output") == [*expected, "crlf"]
    assert result.output_tail == "\n".join([*expected, "crlf"]) + "\n"
    for record in records.output:
        assert getattr(record, "command", None) == "job"
        assert getattr(record, "run_id", None) == 7
        assert record.levelno == logging.INFO


async def test_last_line_without_newline_and_invalid_utf8(
    events_dir: Path, records: Records
) -> None:
    script = r"""
        import sys
        sys.stdout.buffer.write(b"bad \xff\xfe bytes\n")
        sys.stdout.buffer.write("ünï\n".encode())
        sys.stdout.buffer.write(b"no newline")
    """
    result = await launch(python(script), events_dir)
    assert result.ok, result
    assert records.lines() == ["bad \ufffd\ufffd bytes", "ünï", "no newline"]
    assert "\ufffd\ufffd" in result.output_tail
    assert result.output_tail.startswith("bad")
    assert "no newline" in result.output_tail


@pytest.mark.parametrize("pieces", [1, 5], ids=["whole", "in-pieces"])
async def test_an_overlong_line_is_split(events_dir: Path, records: Records, pieces: int) -> None:
    # Whole: one write, so the line and its newline arrive in one chunk. In pieces: the
    # line arrives without its newline first, a flushed write at a time.
    size = 2 * MAX_LINE_BYTES + 100
    script = f"""
        import sys
        line = b"x" * {size}
        step = -(-len(line) // {pieces})
        for start in range(0, len(line), step):
            sys.stdout.buffer.write(line[start : start + step])
            sys.stdout.buffer.flush()
        sys.stdout.buffer.write(b"\\n" + b"y" * {MAX_LINE_BYTES} + b"\\nend\\n")
    """
    result = await launch(python(script), events_dir)
    assert result.ok, result
    lengths = [len(line) for line in records.lines()]
    assert lengths == [MAX_LINE_BYTES, MAX_LINE_BYTES, 100, MAX_LINE_BYTES, 3]


@pytest.mark.slow
async def test_output_tail_keeps_the_last_64_kib(events_dir: Path) -> None:
    lines = 1024 * 1024 // 8  # 1 MiB of 8-byte lines
    script = f"""
        import sys
        sys.stdout.write("".join(f"{{i:07d}}\\n" for i in range({lines})))
    """
    result = await launch(python(script), events_dir)
    assert result.ok, result
    expected = "".join(f"{i:07d}\n" for i in range(lines))
    assert len(result.output_tail) == TAIL_BYTES
    assert result.output_tail == expected[-TAIL_BYTES:]


async def test_a_flood_is_logged_within_the_budget(events_dir: Path) -> None:
    counter = Records(keep=False)
    line = 1000  # bytes, with the newline
    lines = 5 * 1024 * 1024 // line  # a 5 MiB flood
    script = f"""
        import sys
        for _ in range({lines}):
            sys.stdout.buffer.write(b"y" * {line - 1} + b"\\n")
    """
    with attached(counter):
        tracemalloc.start()
        try:
            result = await launch(python(script), events_dir)
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
    assert result.ok, result
    # Lines are logged until the budget of log bytes is spent, then none: a line costs its
    # text and the log line's own overhead.
    logged = counter.output_count
    assert MAX_LOGGED_BYTES // 2 < logged * line < MAX_LOGGED_BYTES
    warnings = counter.warning_text()
    assert "the rest of its output is not logged" in warnings
    assert f"{lines - logged} output lines not logged" in warnings
    assert result.output_tail.endswith("y" * (line - 1) + "\n")
    # Nothing holds the whole output: far less than the 5 MiB it wrote.
    assert peak < 2 * 1024 * 1024, peak


async def test_a_flood_of_empty_lines_spends_the_budget_too(
    events_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    budget = 10_000
    monkeypatch.setattr(process, "MAX_LOGGED_BYTES", budget)
    counter = Records(keep=False)
    script = "import sys; sys.stdout.write('\\n' * 200_000)"
    with attached(counter):
        result = await launch(python(script), events_dir)
    assert result.ok, result
    assert counter.output_count <= budget + 1
    assert "not logged" in counter.warning_text()


# --- timeout, cancellation, leftover processes ---------------------------------------------


GROUP_SCRIPT = """
    {prelude}
    echo $$ > "$1.tmp" && mv "$1.tmp" "$1"
    sleep 1000 &
    echo $! > "$2.tmp" && mv "$2.tmp" "$2"
    {tail}
"""


def group_command(
    tmp_path: Path, *, ignore_term: bool = False, wait: bool = True, **fields: Any
) -> tuple[CommandConfig, Path, Path]:
    """``sh`` starting a ``sleep 1000`` grandchild; both write their pids (atomically)."""
    script = GROUP_SCRIPT.format(
        prelude='trap "" TERM' if ignore_term else "",
        tail="wait" if wait else "echo started",
    )
    leader, child = tmp_path / "leader.pid", tmp_path / "child.pid"
    cmd = command("/bin/sh", "-c", textwrap.dedent(script), "sh", str(leader), str(child), **fields)
    return cmd, leader, child


@pytest.mark.slow
async def test_timeout_ends_the_whole_group(
    tmp_path: Path, events_dir: Path, records: Records
) -> None:
    cmd, leader, child = group_command(tmp_path, timeout=1.0)
    started = trio.current_time()
    result = await launch(cmd, events_dir)
    elapsed = trio.current_time() - started
    assert result.timed_out
    assert not result.ok
    assert result.exit_code is None
    assert result.describe() == "timed out"
    # At most: the timeout, SIGTERM + grace, SIGKILL + grace, and some slack.
    assert 1.0 <= elapsed < 1.0 + 2 * GRACE + 3
    pids = [int(leader.read_text()), int(child.read_text())]
    assert not any(alive(pid) for pid in pids), pids
    assert "timed out after 1s" in records.warning_text()


@pytest.mark.slow
async def test_sigkill_after_the_grace_when_sigterm_is_ignored(
    tmp_path: Path, events_dir: Path, records: Records
) -> None:
    cmd, leader, child = group_command(tmp_path, ignore_term=True, timeout=1.0)
    started = trio.current_time()
    result = await launch(cmd, events_dir)
    elapsed = trio.current_time() - started
    assert result.timed_out
    pids = [int(leader.read_text()), int(child.read_text())]
    assert not any(alive(pid) for pid in pids), pids
    # SIGTERM did nothing: the run lasted the timeout plus the grace, then SIGKILL.
    assert elapsed >= 1.0 + GRACE * 0.9
    assert "outlived SIGTERM" in records.warning_text()


@pytest.mark.slow
async def test_cancellation_ends_the_whole_group(tmp_path: Path, events_dir: Path) -> None:
    cmd, leader, child = group_command(tmp_path, ignore_term=True)
    launcher = ProcessLauncher(kill_grace=GRACE, events_dir=str(events_dir))
    results: list[RunResult] = []

    async def run(task_status: trio.TaskStatus[trio.CancelScope]) -> None:
        with trio.CancelScope() as scope:
            task_status.started(scope)
            results.append(await launcher(cmd, request()))
        assert scope.cancelled_caught

    with trio.fail_after(BOUND):
        async with trio.open_nursery() as nursery:
            scope = await nursery.start(run)
            pids = [await read_pid(leader), await read_pid(child)]
            assert leftovers(events_dir), "the events file exists while the command runs"
            assert all(alive(pid) for pid in pids)
            scope.cancel()
    assert results == [], "a cancelled run returns no result: Cancelled propagates"
    assert not any(alive(pid) for pid in pids), pids
    assert leftovers(events_dir) == []


@pytest.mark.slow
@pytest.mark.parametrize("ignore_term", [False, True], ids=["sleep", "sleep-ignoring-term"])
async def test_a_leftover_grandchild_holding_stdout_is_ended(
    tmp_path: Path, events_dir: Path, ignore_term: bool
) -> None:
    cmd, _, child = group_command(tmp_path, ignore_term=ignore_term, wait=False)
    started = trio.current_time()
    result = await launch(cmd, events_dir)
    elapsed = trio.current_time() - started
    assert result.ok, result
    assert result.output_tail == "started\n"
    # Ending the group takes up to SIGTERM + grace + SIGKILL + grace; then a bounded drain.
    assert elapsed < 2 * GRACE + 3
    pid = int(child.read_text())
    assert not alive(pid), pid


# --- cannot start ------------------------------------------------------------------------


@pytest.mark.parametrize("binary", ["/nonexistent/s3syncer-no-such-binary", "s3syncer-no-such"])
async def test_a_missing_binary_is_a_failed_run(events_dir: Path, binary: str) -> None:
    result = await launch(command(binary, "arg"), events_dir)
    assert not result.ok
    assert result.exit_code is None
    assert result.error is not None
    assert binary in result.error
    assert "No such file" in result.error
    assert "workdir" not in result.error


async def test_a_binary_that_is_not_executable_is_a_failed_run(
    tmp_path: Path, events_dir: Path
) -> None:
    script = tmp_path / "script.sh"
    script.write_text("#!/bin/sh\nexit 0\n")
    result = await launch(command(str(script)), events_dir)
    assert not result.ok
    assert result.error is not None
    assert str(script) in result.error


@pytest.mark.parametrize("kind", ["missing", "a file"])
async def test_a_bad_workdir_is_a_failed_run(tmp_path: Path, events_dir: Path, kind: str) -> None:
    workdir = tmp_path / "missing"
    if kind == "a file":
        workdir.write_text("")
    result = await launch(command("/bin/true", workdir=str(workdir)), events_dir)
    assert not result.ok
    assert result.exit_code is None
    assert result.error is not None
    assert f"workdir {workdir}" in result.error


async def test_an_unwritable_events_dir_is_a_failed_run(tmp_path: Path) -> None:
    launcher = ProcessLauncher(kill_grace=GRACE, events_dir=str(tmp_path / "missing"))
    with trio.fail_after(BOUND):
        result = await launcher(command("/bin/true"), request())
    assert not result.ok
    assert result.error is not None
    assert "events file" in result.error


@pytest.mark.slow
async def test_a_run_that_starts_while_orphans_are_sought_keeps_its_process(
    tmp_path: Path, events_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Two commands: one run ends and looks for orphans in /proc from a worker thread while
    # another command's run starts. Its leader, forked mid-scan, looks like an orphan there.
    launcher = ProcessLauncher(kill_grace=GRACE, events_dir=str(events_dir))
    token = trio.lowlevel.current_trio_token()
    scanning, pid_file = trio.Event(), tmp_path / "late.pid"
    scans: list[set[int]] = []

    def scan_during_a_start(known: set[int]) -> tuple[set[int], set[int]]:
        if scans:
            scans.append(set())
            return set(), set()  # the later run's own end: nothing left over
        trio.from_thread.run_sync(scanning.set, trio_token=token)
        deadline = time.monotonic() + BOUND
        while (pid := pid_in(pid_file)) is None:  # the other run's leader has been forked
            assert time.monotonic() < deadline, "the second run never started"
            time.sleep(0.01)
        scans.append({pid})
        return {pid}, set()  # what /proc showed: our child, in no run's list yet

    monkeypatch.setattr(process, "is_subreaper", lambda: True)
    monkeypatch.setattr(process, "adopted_children", scan_during_a_start)
    script = f"echo $$ > {pid_file}.tmp && mv {pid_file}.tmp {pid_file} && exec sleep 1"
    results: dict[str, RunResult] = {}

    async def run(name: str, cmd: CommandConfig) -> None:
        results[name] = await launcher(cmd, request())

    with trio.fail_after(BOUND + 4 * GRACE):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(run, "quick", command("/bin/true"))
            await scanning.wait()
            nursery.start_soon(run, "late", command("/bin/sh", "-c", script))
    assert scans[0] == {pid_in(pid_file)}  # the scan did see it
    assert results["quick"].ok
    late = results["late"]
    assert (late.exit_code, late.signal) == (0, None), "a starting run's process was ended"


@pytest.mark.slow
async def test_a_run_killed_at_once_while_orphans_are_sought_is_not_a_success(
    events_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # One run ends and scans /proc from a worker thread while another command's run starts
    # and its leader dies at once: a zombie, our child, in no run's list when the scan
    # began. Reaped by the scan before its own wait, that wait found no child: "exit 0".
    launcher = ProcessLauncher(kill_grace=GRACE, events_dir=str(events_dir))
    token = trio.lowlevel.current_trio_token()
    scanning, scanned = trio.Event(), trio.Event()
    real_scan, real_wait = adopted_children, process._wait_exit

    def a_zombie_child() -> bool:
        for stat in Path("/proc").glob("[0-9]*/stat"):
            with contextlib.suppress(OSError):
                fields = stat.read_text().rpartition(")")[2].split()
                if fields[0] == "Z" and int(fields[1]) == os.getpid():
                    return True
        return False

    def scan_once_the_leader_is_a_zombie(known: set[int]) -> object:
        trio.from_thread.run_sync(scanning.set, trio_token=token)
        deadline = time.monotonic() + BOUND
        while not a_zombie_child():  # the other run's leader has died, not yet waited for
            assert time.monotonic() < deadline, "the second run's leader never died"
            time.sleep(0.01)
        try:
            return real_scan(known)
        finally:
            trio.from_thread.run_sync(scanned.set, trio_token=token)

    async def wait_after_the_scan(child: subprocess.Popen[bytes]) -> int:
        if "kill -KILL" in str(child.args):
            await scanned.wait()
        return await real_wait(child)

    monkeypatch.setattr(process, "is_subreaper", lambda: True)
    monkeypatch.setattr(process, "adopted_children", scan_once_the_leader_is_a_zombie)
    monkeypatch.setattr(process, "_wait_exit", wait_after_the_scan)
    monkeypatch.setattr(process, "EXIT_POLL", 0.01)
    results: dict[str, RunResult] = {}

    async def run(name: str, cmd: CommandConfig) -> None:
        results[name] = await launcher(cmd, request())

    with trio.fail_after(BOUND + 4 * GRACE):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(run, "quick", command("/bin/true"))
            await scanning.wait()
            monkeypatch.setattr(process, "adopted_children", lambda known: (set(), set()))
            nursery.start_soon(run, "killed", command("/bin/sh", "-c", "kill -KILL $$"))
    assert results["quick"].ok
    killed = results["killed"]
    assert (killed.exit_code, killed.signal) == (None, 9), killed


def test_alive_tells_a_zombie_from_a_running_process() -> None:
    assert alive(os.getpid())
    assert not alive(2**22 + 1)  # above the largest pid_max: never a process
    child = subprocess.Popen([PY, "-c", "pass"])
    try:
        deadline = time.monotonic() + BOUND
        while alive(child.pid):  # exited but not reaped: a zombie
            assert time.monotonic() < deadline
            time.sleep(0.01)
        assert Path(f"/proc/{child.pid}").exists()
    finally:
        child.wait()
