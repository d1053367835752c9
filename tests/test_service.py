"""The service in-process, wholly under trio's MockClock: fake launcher, disk and server.

Reload (add, change, remove, disable), retire, shutdown grace, recovered triggers, and
one reload at a time under a storm of requests. No socket is bound and no state file is
written: every trigger goes through the service's admission, as the web layer's do, and
the journals and histories write to a :class:`MemoryDisk`.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import trio
import trio.testing

from asgi_request import http_scope
from s3syncer.config.file import load_config
from s3syncer.daemon.service import Service, build_service
from s3syncer.model.answers import Accepted, Refused
from s3syncer.model.config import CommandConfig
from s3syncer.model.event import Event
from s3syncer.model.run import RunRequest, RunResult
from s3syncer.web.asgi import ASGIApp
from s3syncer.web.server import HTTP_GRACE, ServerSettings

WATCH = 2.0  # the file watcher's poll, in virtual seconds


@dataclass
class Run:
    """What the fake launcher saw of one run."""

    command: str
    reason: str
    start: float
    events: list[str | None]
    end: float | None = None
    cancelled: bool = False


@dataclass
class FakeLaunch:
    """Stands in for a process: a run of command NAME takes ``durations[NAME]`` seconds."""

    durations: dict[str, float] = field(default_factory=dict)
    runs: list[Run] = field(default_factory=list)
    running: dict[str, int] = field(default_factory=dict)
    most_of_one_command: int = 0

    async def __call__(self, command: CommandConfig, request: RunRequest) -> RunResult:
        run = Run(
            command.name,
            request.reason,
            trio.current_time(),
            [event.id for event in request.events],
        )
        self.runs.append(run)
        self.running[command.name] = self.running.get(command.name, 0) + 1
        self.most_of_one_command = max(self.most_of_one_command, self.running[command.name])
        try:
            await trio.sleep(self.durations.get(command.name, 1.0))
        except trio.Cancelled:
            run.cancelled = True
            raise
        finally:
            run.end = trio.current_time()
            self.running[command.name] -= 1
        return RunResult(exit_code=0)

    def of(self, name: str) -> list[Run]:
        """The runs of command ``name``, in order."""
        return [run for run in self.runs if run.command == name]


def event(event_id: str, tag: str = "v1") -> Event:
    """A tagged manifest push, as the registry sends it."""
    raw = {"id": event_id, "action": "push", "target": {"repository": "team/app", "tag": tag}}
    return Event(event_id, "push", "team/app", tag, None, raw)


def yaml_command(name: str, **options: Any) -> str:
    """One ``commands:`` item; the fake launcher never runs ``cmd``."""
    item = {"name": name, "cmd": "/bin/true", **options}
    return f"  - {json.dumps(item)}\n"


def write_config(path: Path, *commands: str, top: str = "") -> None:
    """Replace the config file (a new inode, as editors and the kubelet do)."""
    fresh = path.with_suffix(".new")
    fresh.write_text(f"{top}commands:\n" + "".join(commands), encoding="utf-8")
    fresh.replace(path)


@dataclass
class MemoryDisk:
    """Stands in for the state files: what each holds now (None: removed, or never written).

    ``files`` holds each file's document (a journal's snapshot), ``appended`` the lines a
    journal appended after it.
    """

    files: dict[Path, dict[str, Any] | None] = field(default_factory=dict)
    appended: dict[Path, list[str]] = field(default_factory=dict)

    def read_text(self, path: Path) -> str:
        document = self.files.get(path)
        if document is None:
            raise FileNotFoundError(path)
        return json.dumps(document)

    def read_lines(self, path: Path, max_line: int) -> Iterator[str]:
        if not self.holds(path):
            raise FileNotFoundError(path)
        document = self.files.get(path)
        first = [] if document is None else [json.dumps(document) + "\n"]
        return iter(first + self.appended.get(path, []))

    async def append(self, path: Path, records: list[dict[str, Any]]) -> int:
        await trio.lowlevel.checkpoint()
        lines = [json.dumps(record) + "\n" for record in records]
        self.appended.setdefault(path, []).extend(lines)
        return sum(map(len, lines))

    async def write(
        self, path: Path, document: dict[str, Any] | None, *, make_directory: bool = False
    ) -> None:
        await trio.lowlevel.checkpoint()  # a write is a point where other tasks run
        self.files[path] = document
        self.appended.pop(path, None)

    def holds(self, path: Path) -> bool:
        """Whether ``path`` holds a document or appended lines now."""
        return self.files.get(path) is not None or bool(self.appended.get(path))


async def no_server(
    app: ASGIApp,
    settings: ServerSettings,
    shutdown_trigger: Callable[[], Awaitable[None]],
    *,
    task_status: trio.TaskStatus[list[str]] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Stands in for the HTTP server: binds nothing, and "listens" until told to stop."""
    task_status.started([f"http://{settings.bind}"])
    await shutdown_trigger()


def make_service(
    path: Path, launch: FakeLaunch, disk: MemoryDisk | None = None, *, watch: bool = True
) -> Service:
    """A service on the config at ``path``, with the fakes for every part that does I/O."""
    return build_service(
        load_config(path),
        "127.0.0.1:0",
        launch=launch,
        disk=disk or MemoryDisk(),
        serve=no_server,
        config_path=str(path) if watch else None,
        watch_interval=WATCH,
    )


@asynccontextmanager
async def serving(
    path: Path, launch: FakeLaunch, disk: MemoryDisk | None = None
) -> AsyncIterator[Service]:
    """Run a service on the config at ``path``; shut it down gracefully on exit."""
    service = make_service(path, launch, disk)
    async with trio.open_nursery() as nursery:
        await nursery.start(service.run)
        yield service
        service.request_shutdown()


async def accept(service: Service, name: str, *events: Event) -> Accepted | Refused:
    """Deliver a webhook's events as the web layer does."""
    return await service.admission.accept(name, events, "event")


def names(service: Service) -> list[str]:
    """The commands the service runs now."""
    return list(service.supervisor.slots)


async def settle() -> None:
    """Let every task that can run, run (no virtual time passes)."""
    await trio.testing.wait_all_tasks_blocked()


async def test_a_reload_adds_changes_removes_and_disables_commands(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    path = tmp_path / "config.yaml"
    write_config(
        path,
        yaml_command("push", delay="1h"),
        yaml_command("other", delay="1s"),
        yaml_command("gate", delay="1s"),
    )
    launch = FakeLaunch()
    async with serving(path, launch) as service:
        start = trio.current_time()
        assert await accept(service, "push", event("a")) == Accepted(1, 0)
        write_config(
            path,
            yaml_command("push", delay="2s"),  # changed: the pending trigger is kept
            yaml_command("gate", delay="1s", disable=True),  # disabled
            yaml_command("extra", runOnStart=True),  # added; "other" removed
        )
        service.request_reload()
        await settle()
        assert sorted(names(service)) == ["extra", "gate", "push"]
        assert await accept(service, "other", event("b")) == Refused(
            "unknown", "no command named 'other'"
        )
        # A disabled command answers as before, and counts the events as ignored.
        assert await accept(service, "gate", event("c")) == Accepted(0, 1)
        manual = await service.admission.accept("gate", (), "manual")
        assert isinstance(manual, Refused) and manual.why == "disabled"
        await trio.sleep(5)
        [push] = launch.of("push")
        # The quiet period counts from the trigger, with the new delay.
        assert (push.start - start, push.events) == (2.0, ["a"])
        assert [run.reason for run in launch.of("extra")] == ["startup"]
        assert launch.of("gate") == [] and launch.of("other") == []


async def test_a_retired_command_finishes_its_run_and_a_new_one_waits_for_it(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    path = tmp_path / "config.yaml"
    write_config(path, yaml_command("push", runOnStart=True))
    launch = FakeLaunch(durations={"push": 10.0})
    async with serving(path, launch) as service:
        start = trio.current_time()
        await trio.sleep(1)
        write_config(path, yaml_command("other"))
        service.request_reload()
        await settle()
        assert names(service) == ["other"]
        await trio.sleep(1)
        # Added back while its old run goes on: the two runs never overlap.
        write_config(path, yaml_command("push", runOnStart=True))
        service.request_reload()
        await trio.sleep(30)
        old, new = launch.of("push")
        assert not old.cancelled and old.end == start + 10
        assert new.start == old.end
        assert launch.most_of_one_command == 1
        assert 'command="push"' in service.metrics.render().decode()


async def test_a_retired_command_leaves_no_metrics_once_its_run_ended(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    path = tmp_path / "config.yaml"
    write_config(path, yaml_command("push", runOnStart=True), yaml_command("other"))
    launch = FakeLaunch(durations={"push": 10.0})
    async with serving(path, launch) as service:
        await trio.sleep(1)
        write_config(path, yaml_command("other"))
        service.request_reload()
        await trio.sleep(2)
        assert 'command="push"' in service.metrics.render().decode()  # still running
        await trio.sleep(10)
        assert 'command="push"' not in service.metrics.render().decode()
        [run] = launch.of("push")
        assert not run.cancelled


async def test_shutdown_gives_running_commands_their_grace_then_ends_them(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    path = tmp_path / "config.yaml"
    write_config(
        path,
        yaml_command("slow", runOnStart=True),
        yaml_command("quick", runOnStart=True),
        yaml_command("waiting", delay="1h"),
        top="shutdownGrace: 5s\n",
    )
    launch = FakeLaunch(durations={"slow": 100.0, "quick": 3.0})
    async with trio.open_nursery() as nursery:
        service = make_service(path, launch, watch=False)
        await nursery.start(service.run)
        start = trio.current_time()
        assert await accept(service, "waiting", event("a")) == Accepted(1, 0)
        await trio.sleep(1)
        service.request_shutdown()
        answer = await accept(service, "quick", event("b"))
        assert answer == Refused("shutting down", "shutting down, retry", retry_after=1)
        manual = await service.admission.accept("quick", (), "manual")
        assert isinstance(manual, Refused) and manual.retry_after == 1
    stopped = trio.current_time()
    [slow], [quick] = launch.of("slow"), launch.of("quick")
    assert (quick.cancelled, quick.end) == (False, start + 3)  # finished within the grace
    assert (slow.cancelled, slow.end) == (True, start + 1 + 5)  # ended when the grace was over
    assert launch.of("waiting") == []  # a pending delay is dropped
    assert stopped - start <= 1 + 5 + HTTP_GRACE


async def test_recovered_triggers_run_at_once_with_their_events_and_are_then_cleared(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    state = tmp_path / "state"
    raws = [event("a").raw, event("b", "latest").raw]
    disk = MemoryDisk({state / "push.json": {"version": 1, "events": raws}})
    path = tmp_path / "config.yaml"
    write_config(path, yaml_command("push", delay="1h"), top=f"stateDir: {state}\n")
    launch = FakeLaunch()
    async with serving(path, launch, disk) as service:
        start = trio.current_time()
        await trio.sleep(2)
        [run] = launch.of("push")
        assert (run.reason, run.start, run.events) == ("recovered", start, ["a", "b"])
        last_run = service.views()[0].last_run
        assert last_run is not None and last_run.reason == "recovered"
    # The run succeeded: settled, before its runner stopped.
    assert not disk.holds(state / "push.json")


async def test_a_disabled_command_keeps_its_waiting_events_and_runs_them_once_enabled(
    tmp_path: Path, autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    # Disabling a mirror for maintenance must not lose the pushes it had not mirrored yet.
    caplog.set_level(logging.INFO, logger="s3syncer")
    path, state = tmp_path / "config.yaml", tmp_path / "state"
    top = f"stateDir: {state}\n"
    write_config(path, yaml_command("push", delay="1h"), top=top)
    launch, disk = FakeLaunch(), MemoryDisk()
    async with serving(path, launch, disk) as service:
        assert await accept(service, "push", event("a")) == Accepted(1, 0)
        write_config(path, yaml_command("push", delay="1h", disable=True), top=top)
        service.request_reload()
        await eventually(lambda: service.supervisor.slots["push"].runner.command.disable)
        assert await accept(service, "push", event("b")) == Accepted(0, 1)  # ignored
        await trio.sleep(60)
        write_config(path, yaml_command("push", delay="1h"), top=top)
        service.request_reload()
        await eventually(lambda: launch.of("push") != [])
        [run] = launch.of("push")
        assert (run.reason, run.events) == ("recovered", ["a"])
    assert not disk.holds(state / "push.json")  # that run succeeded: settled
    kept = [r.getMessage() for r in caplog.records if "when it is enabled again" in r.getMessage()]
    assert kept == [
        f"push: disabled; kept 1 accepted event not run yet in {state / 'push.json'}, "
        "to run when it is enabled again"
    ]


async def test_an_edit_followed_by_sighup_reloads_once(
    tmp_path: Path, autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="s3syncer")
    path = tmp_path / "config.yaml"
    write_config(path, yaml_command("push"))
    async with serving(path, FakeLaunch()) as service:
        write_config(path, yaml_command("push"), yaml_command("extra"))
        service.request_reload()  # SIGHUP just before the watcher polls
        await trio.sleep(3 * WATCH)
        write_config(path, yaml_command("push"))  # an edit the watcher finds alone
        await trio.sleep(3 * WATCH)
        service.request_reload()  # a SIGHUP with nothing new reloads nothing
        await trio.sleep(3 * WATCH)
        assert names(service) == ["push"]
    reloads = [r.getMessage().split(": ", 1)[1] for r in caplog.records if is_reload(r)]
    assert reloads == [
        "1 added, 0 changed, 0 removed",
        "0 added, 0 changed, 1 removed",
        f"no command changed in {path}",
    ]


def is_reload(record: logging.LogRecord) -> bool:
    """Whether ``record`` reports a finished reload."""
    message = record.getMessage()
    return message.startswith("reloaded") or "no command changed" in message


async def test_a_storm_of_reloads_runs_them_one_at_a_time_and_loses_no_trigger(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    path = tmp_path / "config.yaml"
    state = tmp_path / "state"
    top = f"stateDir: {state}\n"
    write_config(path, yaml_command("push", delay="1s"), top=top)
    launch = FakeLaunch(durations={"push": 0.5, "a": 3.0, "b": 0.2})
    accepted: list[str] = []
    async with serving(path, launch) as service:
        for round_ in range(50):
            # "a" runs on its own every 5 s: a runner left behind would go on running.
            extras = [yaml_command("a", runOnStart=True, reconcile="5s")] if round_ % 3 else []
            if round_ % 2:
                extras.append(yaml_command("b", runOnStart=True, delay="2s"))
            if round_ % 4 == 3:
                write_config(path, "  - {name: push, delay: 3x}\n", top=top)  # invalid
            else:
                delay = f"{1 + round_ % 3}s"  # "push" changes, never goes away
                write_config(path, yaml_command("push", delay=delay), *extras, top=top)
            for _ in range(3):
                service.request_reload()  # SIGHUPs; the watcher sees the edit too
                answer = await accept(service, "push", event(f"e{round_}-{len(accepted)}"))
                assert isinstance(answer, Accepted), answer
                accepted.append(f"e{round_}-{len(accepted)}")
                for name in ("a", "b"):  # journalled: retiring them writes to disk
                    await accept(service, name, event(f"{name}{round_}"))
                await trio.sleep(0.3)
        write_config(path, yaml_command("push", delay="1s"), top=top)
        await eventually(lambda: names(service) == ["push"])
        settled = trio.current_time()
        await eventually(lambda: set(accepted) <= covered(launch))
        await trio.sleep(30)
        assert [run for run in launch.of("a") if run.start >= settled] == []
        assert service.views()[0].state == "idle"
    assert covered(launch) == set(accepted)
    assert launch.most_of_one_command == 1
    assert not any(run.cancelled for run in launch.runs if run.command == "push")


def covered(launch: FakeLaunch) -> set[str | None]:
    """The ids of every event a run of "push" covered."""
    return {event_id for run in launch.of("push") for event_id in run.events}


async def eventually(check: Callable[[], bool], seconds: float = 600.0) -> None:
    """Wait until ``check()`` holds, within ``seconds`` of virtual time."""
    with trio.fail_after(seconds):
        while not check():  # noqa: ASYNC110 - state that no event announces, virtual time
            await trio.sleep(0.1)


async def asgi_post(app: Any, path: str) -> tuple[int, dict[bytes, bytes]]:
    """POST ``path`` to the ASGI ``app`` with no body; the status and headers."""
    sent: list[dict[str, Any]] = []
    requests = iter([{"type": "http.request", "body": b"", "more_body": False}])

    async def receive() -> dict[str, Any]:
        for message in requests:
            return message
        await trio.sleep_forever()  # the client keeps the connection open
        raise AssertionError("unreachable")

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = http_scope("POST", path)
    with trio.fail_after(5):
        await app(scope, receive, send)
    start = next(m for m in sent if m["type"] == "http.response.start")
    return start["status"], dict(start["headers"])


async def test_trigger_and_run_answer_503_with_retry_after_through_the_grace(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    path = tmp_path / "config.yaml"
    write_config(path, yaml_command("slow", runOnStart=True), top="shutdownGrace: 5s\n")
    launch = FakeLaunch(durations={"slow": 100.0})
    async with trio.open_nursery() as nursery:
        service = make_service(path, launch, watch=False)
        await nursery.start(service.run)
        app = service.app
        assert (await asgi_post(app, "/run/slow"))[0] == 202
        service.request_shutdown()
        await trio.sleep(1)
        for where in ("/run/slow", "/trigger/slow"):
            status, headers = await asgi_post(app, where)
            assert (status, headers.get(b"retry-after")) == (503, b"1"), where
