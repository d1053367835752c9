"""The runner's timing, under trio's MockClock with a fake launcher: spec section 3."""

from __future__ import annotations

import itertools
import time
from collections.abc import AsyncIterator, Callable, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta

import pytest
import trio
import trio.lowlevel
import trio.testing

from s3syncer.engine.runner import Runner
from s3syncer.engine.view import command_view
from s3syncer.model.command_view import CommandView
from s3syncer.model.config import CommandConfig, Retry
from s3syncer.model.event import Event
from s3syncer.model.event_log import EventLog
from s3syncer.model.run import RunRequest, RunResult, Trigger

OK = RunResult(exit_code=0)
FAILED = RunResult(exit_code=1)


def look(runner: Runner) -> CommandView:
    """The runner as status shows it, now."""
    return command_view(runner, trio.current_time(), time.time())


@dataclass
class Run:
    """What the fake launcher saw of one run."""

    command: str
    reason: str
    start: float
    end: float
    triggers: int
    events: list[str | None]
    truncated: bool


@dataclass
class FakeLaunch:
    """Stands in for a process: takes ``duration`` seconds, returns ``results`` in turn."""

    duration: float = 1.0
    results: list[RunResult] = field(default_factory=list)
    runs: list[Run] = field(default_factory=list)
    running: dict[str, int] = field(default_factory=dict)
    most_at_once: int = 0
    most_of_one_command: int = 0
    origin: float = 0.0

    async def __call__(self, command: CommandConfig, request: RunRequest) -> RunResult:
        start = trio.current_time() - self.origin
        self.running[command.name] = self.running.get(command.name, 0) + 1
        self.most_at_once = max(self.most_at_once, sum(self.running.values()))
        self.most_of_one_command = max(self.most_of_one_command, self.running[command.name])
        try:
            await trio.sleep(self.duration)
        finally:
            self.running[command.name] -= 1
        self.runs.append(
            Run(
                command=command.name,
                reason=request.reason,
                start=start,
                end=trio.current_time() - self.origin,
                triggers=request.triggers,
                events=[event.id for event in request.events],
                truncated=request.events.truncated,
            )
        )
        return self.results.pop(0) if self.results else OK

    def starts(self) -> list[float]:
        """When each run started, relative to the test's origin."""
        return [run.start for run in self.runs]

    def reasons(self) -> list[str]:
        """The reason of each run, in order."""
        return [run.reason for run in self.runs]


def command(**overrides: object) -> CommandConfig:
    """A command with a 3 s delay and a 60 s maxDelay unless told otherwise."""
    base = CommandConfig(name="push", cmd="true", delay=3.0, max_delay=60.0)
    return replace(base, **overrides)  # type: ignore[arg-type]


def event(event_id: str | None, tag: str = "v1") -> Event:
    """A tagged manifest push, as the registry sends it."""
    raw = {"id": event_id, "action": "push", "target": {"repository": "team/app", "tag": tag}}
    return Event(event_id, "push", "team/app", tag, None, raw)


def trigger(*events: Event) -> Trigger:
    """A webhook trigger carrying ``events``."""
    return Trigger("event", tuple(events))


@asynccontextmanager
async def running(
    launch: FakeLaunch, *commands: CommandConfig, **kwargs: object
) -> AsyncIterator[list[Runner]]:
    """Start a runner for each command; cancel them all on exit. Time 0 is the start."""
    launch.origin = trio.current_time()
    async with trio.open_nursery() as nursery:
        runners = [
            await nursery.start(Runner(cmd, launch, **kwargs).run)  # type: ignore[arg-type]
            for cmd in commands
        ]
        yield runners
        nursery.cancel_scope.cancel()


async def at(launch: FakeLaunch, seconds: float) -> None:
    """Sleep until ``seconds`` after the test's origin."""
    await trio.sleep_until(launch.origin + seconds)


def send(runner: Runner, item: Trigger, times: int = 1) -> None:
    """Deliver ``item`` as the web handler does: without waiting."""
    for _ in range(times):
        runner.send_channel.send_nowait(item)


# 1. A trigger starts or restarts the quiet period; maxDelay caps the wait.


async def test_a_burst_of_1000_triggers_makes_one_run_delay_after_the_last(
    autojump_clock: trio.testing.MockClock,
) -> None:
    launch = FakeLaunch()
    async with running(launch, command()) as [runner]:
        for i in range(1000):
            await at(launch, i * 0.001)
            send(runner, trigger(event(f"e{i}")))
        await at(launch, 100)
    assert launch.starts() == [pytest.approx(0.999 + 3.0)]
    assert launch.runs[0].triggers == 1000
    assert launch.reasons() == ["event"]


async def test_a_single_trigger_runs_after_exactly_delay(
    autojump_clock: trio.testing.MockClock,
) -> None:
    launch = FakeLaunch()
    async with running(launch, command(delay=5.0)) as [runner]:
        await at(launch, 10)
        send(runner, trigger(event("a")))
        await at(launch, 14.999)
        assert launch.running.get("push", 0) == 0, "ran before the quiet period was over"
        await at(launch, 100)
    assert launch.starts() == [pytest.approx(15.0)]


async def test_a_steady_stream_every_half_delay_still_runs_at_max_delay(
    autojump_clock: trio.testing.MockClock,
) -> None:
    launch = FakeLaunch(duration=0.1)
    async with running(launch, command(delay=2.0, max_delay=10.3)) as [runner]:
        for i in range(30):  # every delay/2 from 0 to 29 s
            await at(launch, i * 1.0)
            send(runner, trigger())
        await at(launch, 100)
    # Without maxDelay nothing would run before 31. With it: the first trigger at 0 runs
    # at 10.3; the next one pending (11) runs at 21.3; the stream ends at 29, quiet at 31.
    assert launch.starts() == [pytest.approx(10.3), pytest.approx(21.3), pytest.approx(31.0)]
    assert [run.triggers for run in launch.runs] == [11, 11, 8]


# 2. Triggers during a run: exactly one follow-up, delay after the last, not before the end.


async def test_triggers_during_a_run_make_exactly_one_follow_up_delay_after_the_last(
    autojump_clock: trio.testing.MockClock,
) -> None:
    launch = FakeLaunch(duration=20.0)
    async with running(launch, command(delay=3.0)) as [runner]:
        send(runner, trigger(event("first")))  # run 1: 3..23
        for i in range(50):
            await at(launch, 15 + i * 0.1)  # during the run; the last at 19.9
            send(runner, trigger(event(f"during{i}")))
        await at(launch, 22)
        assert len(launch.runs) == 0 and launch.running["push"] == 1
        await at(launch, 200)
    # 19.9 + 3 = 22.9 falls inside the run, so the follow-up starts when the run ends.
    assert launch.starts() == [pytest.approx(3.0), pytest.approx(23.0)]
    assert launch.runs[1].triggers == 50
    assert launch.most_of_one_command == 1


async def test_follow_up_waits_delay_after_a_trigger_near_the_end_of_the_run(
    autojump_clock: trio.testing.MockClock,
) -> None:
    launch = FakeLaunch(duration=10.0)
    async with running(launch, command(delay=3.0)) as [runner]:
        send(runner, trigger())  # run 1: 3..13
        await at(launch, 12)
        send(runner, trigger())
        await at(launch, 100)
    assert launch.starts() == [pytest.approx(3.0), pytest.approx(15.0)]


async def test_one_command_never_overlaps_itself_and_two_commands_run_in_parallel(
    autojump_clock: trio.testing.MockClock,
) -> None:
    launch = FakeLaunch(duration=30.0)
    push, other = command(name="push"), command(name="other")
    async with running(launch, push, other) as runners:
        for second in range(0, 120, 2):
            await at(launch, second)
            for runner in runners:
                send(runner, trigger())
        await at(launch, 400)
    assert launch.most_of_one_command == 1
    assert launch.most_at_once == 2
    for name in ("push", "other"):
        runs = [run for run in launch.runs if run.command == name]
        for before, after in itertools.pairwise(runs):
            assert after.start >= before.end


# 3. reconcile


async def test_reconcile_runs_when_nothing_ran_for_that_long_since_start(
    autojump_clock: trio.testing.MockClock,
) -> None:
    launch = FakeLaunch(duration=5.0)
    async with running(launch, command(reconcile=60.0)):
        await at(launch, 200)
    # 60, then 60 after each end: 60..65, 125..130, 190..195
    assert launch.starts() == [pytest.approx(60.0), pytest.approx(125.0), pytest.approx(190.0)]
    assert set(launch.reasons()) == {"reconcile"}


async def test_reconcile_counts_from_the_end_of_the_last_run_whatever_started_it(
    autojump_clock: trio.testing.MockClock,
) -> None:
    launch = FakeLaunch(duration=5.0)
    async with running(launch, command(reconcile=60.0, delay=3.0)) as [runner]:
        await at(launch, 40)
        send(runner, trigger())  # event run 43..48
        await at(launch, 120)
    assert launch.starts() == [pytest.approx(43.0), pytest.approx(108.0)]
    assert launch.reasons() == ["event", "reconcile"]


# 4. runAt


def wall_clock_from(base: datetime) -> Callable[[], datetime]:
    """A wall clock that moves with trio's (mock) clock."""
    origin = trio.current_time()
    return lambda: base + timedelta(seconds=trio.current_time() - origin)


BASE = datetime(2026, 11, 29, 2, 59, 0, tzinfo=UTC)


async def test_run_at_starts_a_run_at_each_tick(autojump_clock: trio.testing.MockClock) -> None:
    launch = FakeLaunch(duration=1.0)
    cmd = command(run_at="*/5 * * * *")
    async with running(launch, cmd, wall_clock=wall_clock_from(BASE)) as [runner]:
        await at(launch, 60)
        assert look(runner).next_schedule is not None
        await at(launch, 60 + 15 * 60 + 10)
    # 03:00, 03:05, 03:10, 03:15 -> 60 s, 360 s, 660 s, 960 s after 02:59
    assert launch.starts() == [pytest.approx(s) for s in (60.0, 360.0, 660.0, 960.0)]
    assert set(launch.reasons()) == {"schedule"}


async def test_a_tick_during_a_run_coalesces_into_the_follow_up_like_a_trigger(
    autojump_clock: trio.testing.MockClock,
) -> None:
    launch = FakeLaunch(duration=100.0)
    cmd = command(run_at="0 3 * * *", delay=3.0)
    async with running(launch, cmd, wall_clock=wall_clock_from(BASE)) as [runner]:
        await at(launch, 30)
        send(runner, trigger())  # event run 33..133; the 03:00 tick (60 s) falls inside
        await at(launch, 40)
        send(runner, trigger())
        await at(launch, 1000)
    assert launch.starts() == [pytest.approx(33.0), pytest.approx(133.0)]
    assert len(launch.runs) == 2


# 5. runOnStart; 6. disable


async def test_run_on_start_runs_at_once(autojump_clock: trio.testing.MockClock) -> None:
    launch = FakeLaunch()
    async with running(launch, command(run_on_start=True, delay=30.0)):
        await at(launch, 100)
    assert launch.starts() == [0.0]
    assert launch.reasons() == ["startup"]


async def test_a_disabled_command_never_runs(autojump_clock: trio.testing.MockClock) -> None:
    launch = FakeLaunch()
    cmd = command(disable=True, run_on_start=True, reconcile=10.0, run_at="* * * * *")
    async with running(launch, cmd, wall_clock=wall_clock_from(BASE)) as [runner]:
        send(runner, trigger(), times=100)
        await at(launch, 1000)
        assert look(runner).state == "disabled"
    assert launch.runs == []


# 7. failures and retry


async def test_retry_doubles_its_backoff_and_stops_after_attempts(
    autojump_clock: trio.testing.MockClock,
) -> None:
    launch = FakeLaunch(duration=1.0, results=[FAILED] * 10)
    cmd = command(delay=3.0, retry=Retry(attempts=3, backoff=10.0))
    async with running(launch, cmd) as [runner]:
        send(runner, trigger(event("a")))
        await at(launch, 1000)
        assert runner.failures == 4
        send(runner, trigger(event("b")))  # the next trigger always runs it again
        await at(launch, 1010)
    # 3..4 fails; retry 1 at 4+10; 15 fails; retry 2 at 15+20; 36 fails; retry 3 at 36+40.
    assert launch.starts()[:4] == [pytest.approx(s) for s in (3.0, 14.0, 35.0, 76.0)]
    assert launch.reasons() == ["event", "retry", "retry", "retry", "event"]
    assert launch.starts()[4] == pytest.approx(1003.0)
    # The events of the failed runs are never dropped: the next run still covers them.
    assert launch.runs[4].events == ["a", "b"]


async def test_a_success_resets_the_retry_count(autojump_clock: trio.testing.MockClock) -> None:
    launch = FakeLaunch(duration=1.0, results=[FAILED, OK, FAILED, FAILED])
    cmd = command(delay=3.0, retry=Retry(attempts=1, backoff=10.0))
    async with running(launch, cmd) as [runner]:
        send(runner, trigger())
        await at(launch, 100)
        send(runner, trigger())
        await at(launch, 200)
    assert launch.reasons() == ["event", "retry", "event", "retry"]
    assert launch.starts() == [pytest.approx(s) for s in (3.0, 14.0, 103.0, 114.0)]


async def test_triggers_during_the_backoff_coalesce_into_the_retry(
    autojump_clock: trio.testing.MockClock,
) -> None:
    launch = FakeLaunch(duration=1.0, results=[FAILED])
    cmd = command(delay=3.0, retry=Retry(attempts=2, backoff=30.0))
    async with running(launch, cmd) as [runner]:
        send(runner, trigger(event("a")))  # 3..4 fails, retry at 34
        for i in range(5):
            await at(launch, 10 + i)
            send(runner, trigger(event(f"b{i}")))
        assert look(runner).state == "backoff"
        await at(launch, 100)
    assert launch.starts() == [pytest.approx(3.0), pytest.approx(34.0)]
    assert launch.reasons() == ["event", "retry"]
    assert launch.runs[1].events == ["a", "b0", "b1", "b2", "b3", "b4"]


# Events a run covers: arrival order, de-duplicated by id, bounded.


async def test_distinct_events_and_resends_during_a_run_give_one_follow_up_with_each_once(
    autojump_clock: trio.testing.MockClock,
) -> None:
    launch = FakeLaunch(duration=10.0)
    async with running(launch, command()) as [runner]:
        send(runner, trigger(event("first")))
        await at(launch, 5)  # running 3..13
        for i in range(50):
            send(runner, trigger(event(f"push{i}", tag=f"v{i}")))
        for _ in range(50):
            send(runner, trigger(event("push7", tag="v7")))  # the registry resending
        send(runner, trigger(event("first")))  # an event id the running run already has
        await at(launch, 100)
    assert len(launch.runs) == 2
    follow_up = launch.runs[1]
    assert follow_up.events == [f"push{i}" for i in range(50)] + ["first"]
    assert follow_up.triggers == 101


async def test_the_events_of_one_run_are_bounded_and_say_when_truncated(
    autojump_clock: trio.testing.MockClock,
) -> None:
    launch = FakeLaunch()
    async with running(launch, command()) as [runner]:
        for batch in range(12):
            send(runner, trigger(*(event(f"{batch}-{i}") for i in range(1000))))
            await trio.lowlevel.checkpoint()
        await at(launch, 100)
    assert len(launch.runs) == 1
    assert len(launch.runs[0].events) == 10_000
    assert launch.runs[0].truncated
    assert launch.runs[0].triggers == 12


# Status and shutdown


async def test_status_follows_the_runner(autojump_clock: trio.testing.MockClock) -> None:
    launch = FakeLaunch(duration=10.0)
    async with running(launch, command(reconcile=3600.0)) as [runner]:
        assert look(runner).state == "idle"
        send(runner, trigger(), times=7)
        await at(launch, 1)
        assert (look(runner).state, look(runner).pending_triggers) == ("waiting", 7)
        await at(launch, 5)
        assert (look(runner).state, look(runner).pending_triggers) == ("running", 0)
        await at(launch, 20)
        assert look(runner).state == "idle"
        assert runner.last_run is not None and runner.last_run.triggers == 7
        assert runner.last_run.result == OK
        assert look(runner).next_reconcile is not None


async def test_stop_lets_the_running_run_finish_and_drops_pending_triggers(
    autojump_clock: trio.testing.MockClock,
) -> None:
    launch = FakeLaunch(duration=10.0)
    async with running(launch, command()) as [runner]:
        send(runner, trigger())
        await at(launch, 5)  # running 3..13
        send(runner, trigger())
        runner.stop()
        with trio.fail_after(20):
            await runner.stopped.wait()
    assert launch.starts() == [pytest.approx(3.0)]
    assert launch.runs[0].end == pytest.approx(13.0)


async def test_stop_while_idle_returns_at_once(autojump_clock: trio.testing.MockClock) -> None:
    launch = FakeLaunch()
    async with running(launch, command(reconcile=10.0)) as [runner]:
        runner.stop()
        start = trio.current_time()
        await runner.stopped.wait()
        assert trio.current_time() == start
    assert launch.runs == []


async def test_a_full_trigger_buffer_refuses_instead_of_blocking(
    autojump_clock: trio.testing.MockClock,
) -> None:
    launch = FakeLaunch()
    async with running(launch, command(), buffer=10) as [runner]:
        accepted = 0
        with pytest.raises(trio.WouldBlock):
            for _ in range(100):
                send(runner, trigger())
                accepted += 1
        # The buffer, plus the one handed straight to the waiting runner.
        assert accepted == 11
        await trio.sleep(0.001)  # the runner drains its channel whenever it gets to run
        send(runner, trigger(), times=10)
        await at(launch, 100)
    assert len(launch.runs) == 1
    assert launch.runs[0].triggers == 21


def _ids(events: Iterable[Event]) -> list[str | None]:
    return [e.id for e in events]


def test_event_log_keeps_arrival_order_and_drops_resent_ids() -> None:
    log = EventLog(limit=3)
    log.extend([event("a"), event("b"), event("a"), event(None), event("c")])
    assert _ids(log) == ["a", "b", None]
    assert log.truncated


# Durable state: a successful run settles exactly the journal batches it covered.


async def test_a_successful_run_settles_the_batches_it_covered_and_a_failed_one_none(
    autojump_clock: trio.testing.MockClock,
) -> None:
    settled: list[int] = []

    async def settle(seq: int) -> None:
        settled.append(seq)

    launch = FakeLaunch(duration=10.0, results=[FAILED, OK, OK])
    async with running(launch, command(), settle=settle) as [runner]:
        send(runner, Trigger("event", (event("a"),), seq=1))
        send(runner, Trigger("event", (event("b"),), seq=2))
        await at(launch, 5)  # run 1 (batches 1, 2) runs 3..13 and fails
        send(runner, Trigger("event", (event("c"),), seq=3))
        await at(launch, 20)
        assert settled == []
        # run 2 (13..23) covers the failed run's events and batch 3
        send(runner, Trigger("event", (event("d"),), seq=4))  # during run 2
        await at(launch, 100)
    assert [run.events for run in launch.runs] == [["a", "b"], ["a", "b", "c"], ["d"]]
    assert settled == [3, 4]


async def test_a_recovered_trigger_runs_at_once_and_marks_its_events_truncated(
    autojump_clock: trio.testing.MockClock,
) -> None:
    launch = FakeLaunch()
    async with running(launch, command(delay=30.0)) as [runner]:
        send(runner, Trigger("recovered", (event("a"),), immediate=True, truncated=True))
        await at(launch, 100)
    assert launch.starts() == [0.0]
    assert launch.reasons() == ["recovered"]
    assert launch.runs[0].truncated


async def test_a_burst_from_many_connections_during_a_run_never_backs_up_the_channel(
    autojump_clock: trio.testing.MockClock,
) -> None:
    launch = FakeLaunch(duration=10.0)
    refused = 0

    async def connection(runner: Runner) -> None:
        nonlocal refused
        for _ in range(20):
            try:
                send(runner, trigger(event("same")))
            except trio.WouldBlock:
                refused += 1
            await trio.lowlevel.checkpoint()  # one request a scheduling round, like a handler

    async with running(launch, command(), buffer=128) as [runner]:
        send(runner, trigger())
        await at(launch, 5)  # running 3..13
        async with trio.open_nursery() as connections:
            for _ in range(50):
                connections.start_soon(connection, runner)
        await at(launch, 100)
    assert refused == 0
    assert [run.triggers for run in launch.runs] == [1, 1000]


# Reload: new settings apply to what is pending and to what comes next.


async def test_update_keeps_pending_triggers_and_applies_the_new_delay(
    autojump_clock: trio.testing.MockClock,
) -> None:
    launch = FakeLaunch()
    async with running(launch, command(delay=30.0)) as [runner]:
        send(runner, trigger(event("a")))
        await at(launch, 5)
        runner.update(command(delay=30.0, max_delay=10.0))  # maxDelay now caps the wait
        await at(launch, 100)
    assert launch.starts() == [pytest.approx(10.0)]
    assert launch.runs[0].events == ["a"]


async def test_update_adds_a_reconcile_and_a_schedule(
    autojump_clock: trio.testing.MockClock,
) -> None:
    launch = FakeLaunch(duration=1.0)
    cmd = command()
    async with running(launch, cmd, wall_clock=wall_clock_from(BASE)) as [runner]:
        await at(launch, 30)
        runner.update(command(run_at="0 3 * * *", reconcile=100.0))
        assert look(runner).next_schedule is not None
        await at(launch, 170)
    # The 03:00 tick (60 s after 02:59), then reconcile 100 s after that run ended.
    assert launch.starts() == [pytest.approx(60.0), pytest.approx(161.0)]
    assert launch.reasons() == ["schedule", "reconcile"]


async def test_update_applies_a_new_delay_to_the_pending_quiet_period(
    autojump_clock: trio.testing.MockClock,
) -> None:
    launch = FakeLaunch()
    async with running(launch, command(delay=3600.0, max_delay=7200.0)) as [runner]:
        send(runner, trigger(event("a")))
        await at(launch, 10)
        runner.update(command(delay=2.0, max_delay=7200.0))
        await at(launch, 100)
    # The quiet period is now 2 s after the trigger at 0, so the run starts at once.
    assert launch.starts() == [pytest.approx(10.0)]


async def test_update_that_drops_run_at_during_a_run_drops_the_tick_it_spanned(
    autojump_clock: trio.testing.MockClock,
) -> None:
    launch = FakeLaunch(duration=100.0)
    cmd = command(run_at="0 3 * * *", delay=3.0)
    async with running(launch, cmd, wall_clock=wall_clock_from(BASE)) as [runner]:
        send(runner, trigger())  # run 3..103; the 03:00 tick (60 s) would fall inside
        await at(launch, 10)
        runner.update(command(delay=3.0))
        await at(launch, 1000)
        assert look(runner).next_schedule is None
    assert launch.starts() == [pytest.approx(3.0)]


async def test_update_that_adds_run_at_during_a_run_folds_the_tick_into_the_follow_up(
    autojump_clock: trio.testing.MockClock,
) -> None:
    launch = FakeLaunch(duration=100.0)
    async with running(launch, command(delay=3.0), wall_clock=wall_clock_from(BASE)) as [runner]:
        send(runner, trigger())  # run 3..103
        await at(launch, 10)
        runner.update(command(run_at="0 3 * * *", delay=3.0))  # ticks at 60, inside the run
        await at(launch, 101)
        send(runner, trigger())
        await at(launch, 1000)
    # Like a trigger: one follow-up, delay after the last trigger of the run.
    assert launch.starts() == [pytest.approx(3.0), pytest.approx(104.0)]
    assert launch.reasons() == ["event", "schedule"]
    assert launch.runs[1].triggers == 2


# What an operator reads: the lag, the next run, the history.


def lag(runner: Runner) -> tuple[int, float]:
    """Events waiting and the age of the oldest, to the millisecond."""
    return look(runner).pending_events, round(look(runner).pending_event_age, 3)


async def test_the_lag_counts_from_the_oldest_event_no_success_covered(
    autojump_clock: trio.testing.MockClock,
) -> None:
    launch = FakeLaunch(duration=2.0, results=[FAILED, FAILED, OK])
    cmd = command(delay=3.0)
    async with running(launch, cmd, wall_clock=wall_clock_from(BASE)) as [runner]:
        assert lag(runner) == (0, 0.0)
        send(runner, trigger(event("a")))  # accepted at 0; runs 3..5 and fails
        await at(launch, 2)
        assert lag(runner) == (1, 2.0)
        await at(launch, 4)  # running: still not covered
        assert lag(runner) == (1, 4.0)
        await at(launch, 50)  # failed, nothing pending: the event still waits, and ages
        assert look(runner).state == "idle" and look(runner).pending_triggers == 0
        assert lag(runner) == (1, 50.0)
        send(runner, trigger(event("b")))  # runs 53..55 with a and b, fails again
        await at(launch, 100)
        assert lag(runner) == (2, 100.0)
        send(runner, trigger(event("c")))  # 103..105 succeeds: all three covered
        await at(launch, 104)
        assert look(runner).pending_event_age == pytest.approx(104.0)
        await at(launch, 106)
        assert lag(runner) == (0, 0.0)
        assert runner.history.last_success is not None
        assert [run.ok for run in runner.history] == [False, False, True]
        assert [run.run_id for run in runner.history] == [1, 2, 3]


async def test_recovered_events_count_from_when_they_were_accepted_not_from_the_start(
    autojump_clock: trio.testing.MockClock,
) -> None:
    launch = FakeLaunch(duration=2.0, results=[FAILED])
    accepted = trio.current_time() - 600.0  # ten minutes before this start
    recovered = Trigger("recovered", (event("a"),), immediate=True, accepted_at=accepted)
    async with running(launch, command(), recovered=recovered) as [runner]:
        await at(launch, 1)  # the recovered run, 0..2
        assert lag(runner) == (1, 601.0)
        await at(launch, 10)  # it failed: the event still waits, and ages on
        assert lag(runner) == (1, 610.0)


async def test_a_full_sync_is_owed_until_a_run_covering_everything_succeeds(
    autojump_clock: trio.testing.MockClock,
) -> None:
    # An unreadable journal: no event is known, so only this flag tells the page and
    # /status that the next run must cover everything.
    launch = FakeLaunch(duration=2.0, results=[FAILED, OK])
    recovered = Trigger("recovered", (), immediate=True, truncated=True)
    async with running(launch, command(delay=3.0), recovered=recovered) as [runner]:
        await at(launch, 1)  # the recovered run, 0..2
        assert (look(runner).pending_full_sync, lag(runner)) == (True, (0, 1.0))
        await at(launch, 10)  # it failed: still owed
        assert look(runner).pending_full_sync
        send(runner, trigger(event("a")))  # 13..15, marked truncated, succeeds
        await at(launch, 20)
        assert (look(runner).pending_full_sync, lag(runner)) == (False, (0, 0.0))
    assert [run.truncated for run in launch.runs] == [True, True]


async def test_next_run_says_when_the_pending_run_or_retry_falls_due(
    autojump_clock: trio.testing.MockClock,
) -> None:
    launch = FakeLaunch(duration=1.0, results=[FAILED])
    cmd = command(delay=3.0, retry=Retry(attempts=1, backoff=10.0))
    async with running(launch, cmd) as [runner]:
        assert look(runner).next_run is None
        send(runner, trigger(event("a")))
        await at(launch, 1)
        wall_now = look(runner).next_run
        assert wall_now is not None
        due_in = wall_now - time.time()
        assert due_in == pytest.approx(2.0, abs=0.5)  # the quiet period ends at 3
        await at(launch, 5)  # failed at 4: the retry falls due at 14
        assert look(runner).state == "backoff"
        retry_at = look(runner).next_run
        assert retry_at is not None and retry_at - time.time() == pytest.approx(9.0, abs=0.5)
        await at(launch, 20)
        assert look(runner).next_run is None
