"""Synchronous test support for driving a REAL ``s3syncer serve`` process.

* :func:`start_daemon` writes a config, starts ``python -m s3syncer serve`` on ``127.0.0.1:0``,
  waits (bounded) for its ``listening on http://HOST:PORT`` line and returns a :class:`Daemon`:
  a context manager that talks HTTP to it (a new connection per request, as a registry does),
  reads its log, signals it and, on exit, stops it with nothing left behind.
* :func:`run_s3syncer` runs the CLI to completion (``--version``, bad flags, bad configs).
* :class:`Recorder` is a command for the config: a small Python script that records every run
  (``S3SYNCER_REASON``, time, pid and a copy of the events file) as JSON lines, optionally
  blocking until the test releases it, so tests count runs by condition, not by sleeping.

Everything here is plain blocking code; use it from sync tests.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import re
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

from waiting import wait_until

__all__ = [
    "READY_TIMEOUT",
    "Daemon",
    "HTTPResult",
    "Recorder",
    "clean_env",
    "pid_gone",
    "processes",
    "run_s3syncer",
    "spawn_s3syncer",
    "start_daemon",
]

READY_TIMEOUT = 15.0
"""How long a daemon may take to log its ``listening on`` line."""

STOP_TIMEOUT = 15.0
"""How long :meth:`Daemon.stop` waits after SIGTERM before it sends SIGKILL."""

LISTENING = re.compile(r"listening on http://(?P<host>\[[^\]]+\]|[^\s:]+):(?P<port>\d+)")

HTTPResult = tuple[int, dict[str, str], bytes]
"""``(status, headers with lower-case names, body)``."""


def clean_env(env: Mapping[str, str] | None = None) -> dict[str, str]:
    """The test process's environment without ``S3SYNCER_*`` variables, plus ``env``."""
    result = {k: v for k, v in os.environ.items() if not k.startswith("S3SYNCER_")}
    result.update(env or {})
    return result


def _s3syncer_argv(cli_args: Iterable[str]) -> list[str]:
    return [sys.executable, "-m", "s3syncer", *cli_args]


def run_s3syncer(
    cli_args: Sequence[str],
    *,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    timeout: float = 30.0,
) -> subprocess.CompletedProcess[str]:
    """Run ``python -m s3syncer *cli_args`` to completion and capture its output as text."""
    return subprocess.run(
        _s3syncer_argv(cli_args),
        env=clean_env(env),
        cwd=cwd,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def pid_gone(pid: int) -> bool:
    """Whether process ``pid`` no longer runs (it does not exist, or it is a zombie)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return True
    # The state follows the parenthesised command name, which may itself hold spaces.
    return stat.rpartition(")")[2].split()[0] in ("Z", "X")


def processes() -> Iterator[tuple[int, str, int, int]]:
    """``(pid, state, ppid, pgrp)`` of every process, read from /proc."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue  # it ended while we looked
        # The fields follow the parenthesised command name, which may hold spaces.
        state, ppid, pgrp = stat.rpartition(")")[2].split()[:3]
        yield int(entry.name), state, int(ppid), int(pgrp)


def _children_by_parent() -> dict[int, list[int]]:
    children: dict[int, list[int]] = {}
    for pid, _, ppid, _ in processes():
        children.setdefault(ppid, []).append(pid)
    return children


def _descendants(pid: int) -> set[int]:
    children = _children_by_parent()
    found: set[int] = set()
    todo = [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            if child not in found:
                found.add(child)
                todo.append(child)
    return found


class Daemon:
    """A running ``s3syncer`` process; use it as a context manager so it is always stopped."""

    def __init__(self, process: subprocess.Popen[bytes], log_path: Path) -> None:
        self.process = process
        self.log_path = log_path
        self.host = ""
        self.port = 0
        self._seen_descendants: set[int] = set()
        self.killed = False

    # --- startup ---------------------------------------------------------------------

    def wait_listening(self, timeout: float = READY_TIMEOUT) -> Daemon:
        """Wait for the ``listening on`` line; set :attr:`host` and :attr:`port`."""

        def listening() -> re.Match[str] | None:
            found = LISTENING.search(self.log_text())
            if found is None and self.process.poll() is not None:
                raise RuntimeError(
                    f"s3syncer exited ({self.process.returncode}) before listening:\n"
                    + self.log_text()
                )
            return found

        found = wait_until(
            listening,
            timeout=timeout,
            message=lambda: "no 'listening on' line; log so far:\n" + self.log_text(),
        )
        self.host = found["host"].strip("[]")
        self.port = int(found["port"])
        return self

    @property
    def url(self) -> str:
        """``http://127.0.0.1:PORT``: where a client on this machine reaches the daemon."""
        return f"http://{self._connect_host()}:{self.port}"

    def _connect_host(self) -> str:
        # A daemon on all interfaces (0.0.0.0 / ::) is reached through loopback.
        if self.host in ("0.0.0.0", "", "::"):
            return "127.0.0.1" if self.host != "::" else "::1"
        return self.host

    @property
    def pid(self) -> int:
        """The daemon's process id."""
        return self.process.pid

    # --- the log ---------------------------------------------------------------------

    def log_text(self) -> str:
        """Everything the daemon wrote to stderr (and stdout) so far."""
        try:
            return self.log_path.read_text(encoding="utf-8", errors="replace")
        except FileNotFoundError:
            return ""

    def wait_for_log(
        self, pattern: str | re.Pattern[str], timeout: float = 10.0, *, start: int = 0
    ) -> re.Match[str]:
        """Wait until the log (from character ``start``) holds ``pattern``: a plain substring,
        or a compiled regex. Returns the match (``match.end()`` is a good next ``start``)."""
        regex = pattern if isinstance(pattern, re.Pattern) else re.compile(re.escape(pattern))

        def search() -> re.Match[str] | None:
            return regex.search(self.log_text(), start)

        return wait_until(
            search,
            timeout=timeout,
            message=lambda: f"log has no {regex.pattern!r}; log:\n{self.log_text()}",
        )

    # --- HTTP ------------------------------------------------------------------------

    def connection(self, timeout: float = 10.0) -> http.client.HTTPConnection:
        """A new (keep-alive) connection to the daemon, for tests that reuse one."""
        return http.client.HTTPConnection(self._connect_host(), self.port, timeout=timeout)

    def request(
        self,
        method: str,
        path: str,
        body: bytes | Iterable[bytes] | None = None,
        headers: Mapping[str, str] | None = None,
        *,
        timeout: float = 10.0,
    ) -> HTTPResult:
        """One request on a new connection. An iterable body is sent chunked."""
        connection = self.connection(timeout)
        try:
            chunked = body is not None and not isinstance(body, bytes)
            with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                # The server may answer (413) and close before it read a big body: still
                # read its answer below.
                connection.request(
                    method, path, body=body, headers=dict(headers or {}), encode_chunked=chunked
                )
            response = connection.getresponse()
            data = response.read()
            answer_headers = {k.lower(): v for k, v in response.getheaders()}
            return response.status, answer_headers, data
        finally:
            connection.close()

    def post(
        self,
        path: str,
        body: bytes | Iterable[bytes] = b"",
        headers: Mapping[str, str] | None = None,
        *,
        timeout: float = 10.0,
    ) -> HTTPResult:
        """``POST path``; returns ``(status, headers, body)``."""
        return self.request("POST", path, body, headers, timeout=timeout)

    def get(
        self, path: str, headers: Mapping[str, str] | None = None, *, timeout: float = 10.0
    ) -> HTTPResult:
        """``GET path``; returns ``(status, headers, body)``."""
        return self.request("GET", path, None, headers, timeout=timeout)

    def status(self) -> dict[str, Any]:
        """``GET /status``, parsed, keyed by command name."""
        code, _, body = self.get("/status")
        if code != 200:
            raise AssertionError(f"/status answered {code}: {body!r}")
        return {c["name"]: c for c in json.loads(body)["commands"]}

    # --- the process -----------------------------------------------------------------

    def signal(self, sig: int) -> None:
        """Send ``sig`` to the daemon (remembering its children first, for cleanup)."""
        self._seen_descendants |= _descendants(self.pid)
        self.process.send_signal(sig)

    def wait(self, timeout: float = 10.0) -> int:
        """Wait for the daemon to exit; return its exit code (``TimeoutExpired`` if it runs on)."""
        return self.process.wait(timeout)

    @property
    def returncode(self) -> int | None:
        """The exit code, or None while it runs."""
        return self.process.poll()

    def stop(self, timeout: float = STOP_TIMEOUT) -> int:
        """SIGTERM, wait up to ``timeout``, then SIGKILL (:attr:`killed` says so); also kill
        any process it left behind. Returns the daemon's exit code (negative for a signal)."""
        if self.process.poll() is None:
            self._seen_descendants |= _descendants(self.pid)
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self._seen_descendants |= _descendants(self.pid)
                self.killed = True
                self.process.kill()
                self.process.wait(timeout)
        self._kill_leftovers()
        return self.process.returncode

    def _kill_leftovers(self) -> None:
        # Commands run in process groups (sessions) of their own: a daemon that died without
        # cleaning up leaves them behind, so kill each one's whole group.
        for pid in self._seen_descendants:
            if pid_gone(pid):
                continue
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(os.getpgid(pid), signal.SIGKILL)
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)

    def __enter__(self) -> Daemon:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
        if exc is None and self.killed:
            raise AssertionError(
                f"s3syncer ignored SIGTERM for {STOP_TIMEOUT}s and was killed; log:\n"
                + self.log_text()
            )


def spawn_s3syncer(
    tmp_path: Path,
    cli_args: Sequence[str],
    *,
    env: Mapping[str, str] | None = None,
    wait_listening: bool = True,
    ready_timeout: float = READY_TIMEOUT,
    argv_prefix: Sequence[str] = (),
) -> Daemon:
    """Start ``python -m s3syncer *cli_args`` with its output in a log file under ``tmp_path``.

    With ``wait_listening`` (the default) it returns once the daemon logged its address; if
    that fails, the process is stopped before the error propagates. ``argv_prefix`` is a
    command that execs the rest, e.g. ``prlimit --nofile=1024:1024 --``."""
    log_dir = tmp_path / "daemon-logs"
    log_dir.mkdir(parents=True, exist_ok=True)
    log_path = log_dir / f"s3syncer-{time.monotonic_ns()}.log"
    with log_path.open("wb") as log_file:
        process = subprocess.Popen(
            [*argv_prefix, *_s3syncer_argv(cli_args)],
            stdin=subprocess.DEVNULL,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            env=clean_env(env),
            cwd=tmp_path,
        )
    daemon = Daemon(process, log_path)
    if wait_listening:
        try:
            daemon.wait_listening(ready_timeout)
        except BaseException:
            daemon.stop()
            raise
    return daemon


def start_daemon(
    tmp_path: Path,
    config_text: str,
    *,
    args: Sequence[str] = (),
    env: Mapping[str, str] | None = None,
    listen: str = "127.0.0.1:0",
    wait_listening: bool = True,
    argv_prefix: Sequence[str] = (),
) -> Daemon:
    """Write ``config_text`` to a file and serve it: ``serve --config F --listen 127.0.0.1:0``."""
    config_path = tmp_path / f"config-{time.monotonic_ns()}.yaml"
    config_path.write_text(textwrap.dedent(config_text), encoding="utf-8")
    cli_args = ["serve", "--config", str(config_path), "--listen", listen, *args]
    return spawn_s3syncer(
        tmp_path, cli_args, env=env, wait_listening=wait_listening, argv_prefix=argv_prefix
    )


# --- a command that records its runs -----------------------------------------------------

RECORDER_SCRIPT = r"""
import json, os, signal, sys, time

log_path, release_path, sleep_for = sys.argv[1], sys.argv[2], float(sys.argv[3])
exit_code = int(sys.argv[4])


def record(phase, **fields):
    fields.update(phase=phase, pid=os.getpid(), time=time.time())
    line = (json.dumps(fields) + "\n").encode()
    fd = os.open(log_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line)  # one write on an O_APPEND file: lines never interleave
    finally:
        os.close(fd)


def on_term(signum, frame):
    record("signal", signal=signum)
    sys.exit(128 + signum)


signal.signal(signal.SIGTERM, on_term)
events_file = os.environ.get("S3SYNCER_EVENTS_FILE")
events = None
if events_file:
    with open(events_file, encoding="utf-8") as file:
        events = json.load(file)
record(
    "start",
    reason=os.environ.get("S3SYNCER_REASON"),
    command=os.environ.get("S3SYNCER_COMMAND"),
    events_file=events_file,
    events=events,
    pgid=os.getpgid(0),
)
if release_path:
    deadline = time.monotonic() + 120  # never outlive a broken test by much
    while not os.path.exists(release_path) and time.monotonic() < deadline:
        time.sleep(0.02)
if sleep_for:
    time.sleep(sleep_for)
record("end", exit_code=exit_code)
sys.exit(exit_code)
"""


class Recorder:
    """A command that appends JSON lines to ``<directory>/runs.jsonl`` for each run.

    Each run writes ``{"phase": "start", "reason", "command", "events" (the events file's
    content), "pid", "pgid", "time"}``, then, if it was made ``blocking``, waits until
    :meth:`release` (or ``release_path`` exists), sleeps ``sleep`` seconds, writes
    ``{"phase": "end"}`` and exits with ``exit_code``. On SIGTERM it writes
    ``{"phase": "signal"}`` and exits 143.
    """

    def __init__(
        self,
        directory: Path,
        *,
        blocking: bool = False,
        sleep: float = 0.0,
        exit_code: int = 0,
    ) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.directory = directory
        self.script = directory / "record_run.py"
        self.script.write_text(RECORDER_SCRIPT, encoding="utf-8")
        self.log_path = directory / "runs.jsonl"
        self.release_path = directory / "release"
        self.blocking = blocking
        self.sleep = sleep
        self.exit_code = exit_code

    @property
    def argv(self) -> list[str]:
        """The command line that runs the recorder."""
        release = str(self.release_path) if self.blocking else ""
        return [
            sys.executable,
            str(self.script),
            str(self.log_path),
            release,
            repr(self.sleep),
            str(self.exit_code),
        ]

    def command_yaml(self, name: str, **options: Any) -> str:
        """A ``commands:`` list item (YAML flow mapping) running this recorder."""
        item: dict[str, Any] = {"name": name, "cmd": self.argv[0], "args": self.argv[1:]}
        item.update(options)
        return f"  - {json.dumps(item)}\n"

    def records(self, phase: str | None = None) -> list[dict[str, Any]]:
        """Every record so far (of ``phase`` if given), in order."""
        try:
            text = self.log_path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return []
        # A run may be writing its record now: a last line without its newline is read next
        # time (a start record carries the run's events, large enough to take several writes).
        complete = text[: text.rfind("\n") + 1]
        records = [json.loads(line) for line in complete.splitlines() if line.strip()]
        return [r for r in records if phase is None or r["phase"] == phase]

    def starts(self) -> list[dict[str, Any]]:
        """The ``start`` records: one per run that started."""
        return self.records("start")

    def ends(self) -> list[dict[str, Any]]:
        """The ``end`` records: one per run that finished by itself."""
        return self.records("end")

    def running(self) -> list[dict[str, Any]]:
        """Runs that started and neither ended nor got a signal."""
        records = self.records()
        done = {r["pid"] for r in records if r["phase"] in ("end", "signal")}
        return [r for r in records if r["phase"] == "start" and r["pid"] not in done]

    def wait_starts(self, count: int, timeout: float = 10.0) -> list[dict[str, Any]]:
        """Wait until at least ``count`` runs started; return the start records."""

        def enough() -> list[dict[str, Any]] | None:
            starts = self.starts()
            return starts if starts and len(starts) >= count else None

        return wait_until(
            enough,
            timeout=timeout,
            message=lambda: f"wanted {count} run(s), records: {self.records()}",
        )

    def wait_ends(self, count: int, timeout: float = 10.0) -> list[dict[str, Any]]:
        """Wait until at least ``count`` runs ended by themselves; return the end records."""

        def enough() -> list[dict[str, Any]] | None:
            ends = self.ends()
            return ends if ends and len(ends) >= count else None

        return wait_until(
            enough,
            timeout=timeout,
            message=lambda: f"wanted {count} finished run(s), records: {self.records()}",
        )

    def release(self) -> None:
        """Let blocked runs (and every later one) finish."""
        self.release_path.touch()
