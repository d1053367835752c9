"""Run one command as a process group: argv, no shell, output logged as it comes.

The process gets a session (and so a process group) of its own. Whatever
ends a run, a clean exit, a timeout or a shutdown, every process left in the
group gets SIGTERM and, after ``kill_grace`` seconds, SIGKILL; so do the
orphans the daemon adopted as a subreaper once no run is left that could own
them. No process of a run outlives it (see :mod:`s3syncer.exec.leftovers`).
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import resource
import signal
import subprocess
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path

import trio

from ..model.config import CommandConfig
from ..model.run import OutputTail, RunRequest, RunResult
from .environment import command_environment
from .fd_budget import limits_at_start
from .leftovers import (
    adopted_children,
    end_group,
    end_processes,
    is_subreaper,
    reap_ended,
    set_parent_death_signal,
)
from .result_file import command_state_dir, result_path, take_report
from .run_directory import RunDirectory

log = logging.getLogger("s3syncer.process")
output_log = logging.getLogger("s3syncer.output")

KILL_GRACE = 10.0
MAX_LINE_BYTES = 8 * 1024
MAX_LOGGED_BYTES = 1024 * 1024  # of log, per run; the tail still keeps the end of the output
# What one logged output line costs beyond its text and the command's name: a JSON line's
# keys, time, level, logger, run id and stream (145 bytes with a one-digit run id), rounded
# up. An empty line is not free: 256 MiB of them once wrote 44 MB of log.
LOG_LINE_OVERHEAD = 160
EXIT_POLL = 0.05  # without pidfd_open (Linux before 5.3)
DRAIN_AFTER_EXIT = 1.0
PARENT_DEATH_SIGNAL = signal.SIGTERM


class OutputSink:
    """Logs a run's output line by line, within a budget of log bytes, and keeps its last bytes."""

    def __init__(self, command: str, run_id: int, tail: OutputTail | None = None) -> None:
        self.command = command
        self.run_id = run_id
        self._tail = tail if tail is not None else OutputTail()
        self._logged = 0
        self._dropped_lines = 0
        self._open_line = False  # unlogged output ended in the middle of a line

    @property
    def logging(self) -> bool:
        """Whether lines are still logged: once the budget is spent, only the tail is kept."""
        return self._logged < MAX_LOGGED_BYTES

    def feed(self, stream: str, line: bytes) -> None:
        """Take one line (without its newline) of ``stream``."""
        self._tail.append(line)
        if not self.logging:
            self._dropped_lines += 1
            return
        text = line.decode("utf-8", "replace")
        self._logged += self._log_cost(text)
        output_log.info(
            "%s | %s",
            self.command,
            text,
            extra={"command": self.command, "run_id": self.run_id, "stream": stream},
        )
        if not self.logging:
            log.warning(
                "%s: run %d wrote over %d bytes of log; the rest of its output is not logged",
                self.command,
                self.run_id,
                MAX_LOGGED_BYTES,
                extra={"command": self.command, "run_id": self.run_id},
            )

    def feed_unlogged(self, data: bytes) -> None:
        """Take output, whole lines or not, once nothing more is logged: the tail keeps it."""
        if data:
            self._tail.extend(data)
            self._dropped_lines += data.count(b"\n")
            self._open_line = not data.endswith(b"\n")

    def end_of_output(self) -> None:
        """The output ended: a last line without its newline is a line too."""
        if self._open_line:
            self._tail.extend(b"\n")
            self._dropped_lines += 1
            self._open_line = False

    def _log_cost(self, text: str) -> int:
        # The bytes the line takes in the log: JSON escapes control characters (six bytes
        # for one) and names the command twice; text output costs less than that.
        escaped = json.dumps(text, ensure_ascii=False).encode("utf-8", "replace")
        return LOG_LINE_OVERHEAD + 2 * len(self.command) + len(escaped)

    def close(self) -> None:
        """Say how much output went unlogged, if any."""
        if self._dropped_lines:
            log.warning(
                "%s: run %d: %d output lines not logged",
                self.command,
                self.run_id,
                self._dropped_lines,
                extra={"command": self.command, "run_id": self.run_id},
            )

    @property
    def tail(self) -> str:
        """The last bytes of output, as text."""
        return self._tail.text


async def pump_lines(stream: trio.abc.ReceiveStream, name: str, sink: OutputSink) -> None:
    """Feed ``stream`` to ``sink`` a line at a time; overlong lines are split.

    Once the sink logs no more, chunks go to it whole: splitting 256 MiB of empty lines
    that nobody logs cost minutes of the daemon's CPU.
    """
    partial_line = bytearray()
    async with stream:
        async for chunk in stream:
            if not sink.logging:
                sink.feed_unlogged(bytes(partial_line) + chunk)
                partial_line.clear()
                continue
            partial_line += chunk
            while sink.logging:
                # Look no further than one record's worth: a long line that came whole in
                # one chunk is split just like one that came in pieces.
                end = partial_line.find(b"\n", 0, MAX_LINE_BYTES + 1)
                if end >= 0:
                    sink.feed(name, bytes(partial_line[:end]).rstrip(b"\r"))
                    del partial_line[: end + 1]
                elif len(partial_line) > MAX_LINE_BYTES:  # a full record and more: no newline
                    sink.feed(name, bytes(partial_line[:MAX_LINE_BYTES]))
                    del partial_line[:MAX_LINE_BYTES]
                else:
                    break
    if partial_line and sink.logging:
        sink.feed(name, bytes(partial_line))
    elif partial_line:
        sink.feed_unlogged(bytes(partial_line))
    sink.end_of_output()


class ProcessLauncher:
    """Launches commands for runners: ``await launcher(command, request)``."""

    def __init__(
        self,
        *,
        kill_grace: float = KILL_GRACE,
        events_dir: str | None = None,
        base_env: Mapping[str, str] | None = None,
        secrets: Sequence[str] = (),
        state_dir: str | None = None,
    ) -> None:
        self.kill_grace = kill_grace
        self.state_dir = state_dir  # with it, each command gets a directory of its own there
        self.events_dir = events_dir
        self.base_env = base_env
        self.secrets = tuple(secrets)  # values no inherited variable may carry to a command
        self.run_directory: RunDirectory | None = None  # when set, wins over events_dir
        self._leaders: set[int] = set()  # our children that are runs' leaders, not orphans
        self._nofile = limits_at_start()

    async def __call__(self, command: CommandConfig, request: RunRequest) -> RunResult:
        """Run ``command`` once for ``request`` and say how it ended."""
        sink = OutputSink(command.name, request.run_id, request.output)
        try:
            events_file = await trio.to_thread.run_sync(self._write_events, command, request)
        except OSError as exc:
            return RunResult(error=f"cannot write the events file: {exc}")
        report_file, report = result_path(events_file), None
        try:
            run_vars = {
                "S3SYNCER_COMMAND": command.name,
                "S3SYNCER_REASON": request.reason,
                "S3SYNCER_EVENTS_FILE": events_file,
                "S3SYNCER_RESULT_FILE": report_file,
            }
            if self.state_dir is not None:
                run_vars["S3SYNCER_STATE_DIR"] = await trio.to_thread.run_sync(
                    command_state_dir, self.state_dir, command.name
                )
            env = self._environment(command, run_vars)
            timeout = command.timeout if command.timeout is not None else math.inf
            with trio.move_on_after(timeout) as deadline:
                result = await self._execute(command, env, sink)
            if deadline.cancelled_caught:
                result = RunResult(timed_out=True)
                log.warning(
                    "%s: run %d timed out after %gs",
                    command.name,
                    request.run_id,
                    timeout,
                    extra={"command": command.name, "run_id": request.run_id},
                )
        finally:
            sink.close()
            with trio.CancelScope(shield=True):
                await trio.to_thread.run_sync(_remove, events_file)
                await self._end_orphans()
                # After the orphans: nothing of the run can still be writing it.
                report = await trio.to_thread.run_sync(
                    take_report, report_file, command.name, request.run_id
                )
        return RunResult(
            exit_code=result.exit_code,
            signal=result.signal,
            timed_out=result.timed_out,
            error=result.error,
            output_tail=sink.tail,
            report=report,
        )

    def _environment(self, command: CommandConfig, run_vars: dict[str, str]) -> dict[str, str]:
        daemon_env = os.environ if self.base_env is None else self.base_env
        return command_environment(daemon_env, command, run_vars, self.secrets)

    def _events_dir(self) -> str | None:
        # tmpfiles ageing or an rm -rf may have removed the run directory: it is made again
        return self.events_dir if self.run_directory is None else self.run_directory.ensure()

    def _write_events(self, command: CommandConfig, request: RunRequest) -> str:
        document = request.events.to_json(command.name, request.reason)
        fd, path = tempfile.mkstemp(
            prefix=f"s3syncer-{command.name}-{request.run_id}-",
            suffix=".json",
            dir=self._events_dir(),
        )
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as file:
                json.dump(document, file, separators=(",", ":"))
        except BaseException:
            # A full disk fails the write (or the close) after mkstemp created the file:
            # remove it, or every failed run leaves one more file on that full disk.
            _remove(path)
            raise
        return path

    async def _execute(
        self, command: CommandConfig, env: dict[str, str], sink: OutputSink
    ) -> RunResult:
        try:
            process, output = self._spawn(command, env)
        except OSError as exc:
            return RunResult(error=_start_error(command, exc))
        except subprocess.SubprocessError as exc:
            return RunResult(error=f"cannot start {command.cmd}: {exc}")
        self._leaders.add(process.pid)
        try:
            async with trio.open_nursery() as readers:
                readers.start_soon(pump_lines, output, "output", sink)
                try:
                    returncode = await _wait_exit(process)
                finally:
                    # The leader is gone (or being killed): its children must not outlive it.
                    with trio.CancelScope(shield=True):
                        await end_group(process.pid, self.kill_grace)
                        returncode = await _wait_exit(process)
                # A grandchild that held the pipes is dead now: read what it left, briefly.
                readers.cancel_scope.deadline = trio.current_time() + DRAIN_AFTER_EXIT
        finally:
            self._leaders.discard(process.pid)
        if returncode < 0:
            return RunResult(signal=-returncode)
        return RunResult(exit_code=returncode)

    def _spawn(
        self, command: CommandConfig, env: dict[str, str]
    ) -> tuple[subprocess.Popen[bytes], trio.lowlevel.FdStream]:
        # One pipe for both stdout and stderr: lines keep the order the command wrote them
        # in, which two pipes read side by side cannot promise.
        out_read, out_write = os.pipe()
        try:
            # In the event loop's own thread, not a worker thread: the parent-death signal
            # fires when the thread that forked ends, and trio's idle workers end after 10 s.
            # Forking takes a few milliseconds, once a run.
            process = subprocess.Popen(
                command.argv,
                stdin=subprocess.DEVNULL,
                stdout=out_write,
                stderr=out_write,
                cwd=command.workdir,
                env=env,
                start_new_session=True,
                # Two system calls between fork and exec, no lock taken: safe with threads.
                preexec_fn=self._prepare_child,  # noqa: PLW1509
            )
        except BaseException:
            os.close(out_read)
            raise
        finally:
            os.close(out_write)
        return process, trio.lowlevel.FdStream(out_read)

    def _prepare_child(self) -> None:
        # Runs in the child between fork and exec. If the daemon dies without cleaning up,
        # the leader hears of it; the next start ends the rest (see leftovers.py).
        set_parent_death_signal(PARENT_DEATH_SIGNAL)
        # The daemon raised its soft open-files limit for its connections; a command that
        # still uses select() needs the usual one, as Go does for the processes it starts.
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, self._nofile)

    async def _end_orphans(self) -> None:
        # As a subreaper we adopt what a run's processes orphaned. Which run it came from
        # cannot be told, so the last run to end ends them: never a running run's helper.
        if self._leaders or not is_subreaper():
            return
        orphans, zombies = await trio.to_thread.run_sync(adopted_children, set(self._leaders))
        # A run may have started while /proc was read in the worker thread: the scan saw
        # its leader, forked before we knew it, as our child, and the orphans may be its now.
        if self._leaders:
            return
        reap_ended(zombies)  # here, not in the scan: no run's leader is among them now
        await end_processes(orphans, self.kill_grace, "that runs left behind", reap=True)


async def _wait_exit(process: subprocess.Popen[bytes]) -> int:
    """The exit status of ``process``, waited for without blocking the event loop."""
    if process.returncode is not None:
        return process.returncode
    try:
        pidfd = os.pidfd_open(process.pid)
    except OSError:
        while (code := process.poll()) is None:  # noqa: ASYNC110
            await trio.sleep(EXIT_POLL)
        return code
    try:
        await trio.lowlevel.wait_readable(pidfd)
    finally:
        os.close(pidfd)
    return process.wait()


def _start_error(command: CommandConfig, exc: OSError) -> str:
    reason = exc.strerror or str(exc)
    if command.workdir is not None and exc.filename == command.workdir:
        return f"cannot start: workdir {command.workdir}: {reason}"
    if not Path(command.workdir or ".").is_dir():
        return f"cannot start: workdir {command.workdir}: {reason}"
    return f"cannot start {command.cmd}: {reason}"


def _remove(path: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)
