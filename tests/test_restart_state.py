"""What a restart keeps of a command's runs: its last result, its last success, its ids.

A command whose last run failed must still look failed after a restart: on ``/metrics``
(``s3syncer_last_run_success`` 0, the last success's time), on ``/status`` (``lastRun``,
marked ``beforeRestart``) and on the page. A run killed at shutdown is recorded as such.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import trio
import trio.testing

from daemon import Recorder, start_daemon
from s3syncer.model.config import CommandConfig
from s3syncer.model.run import RunRequest, RunResult
from s3syncer.web.status import status_document
from test_service import FakeLaunch, MemoryDisk, make_service, write_config, yaml_command


class FailingLaunch(FakeLaunch):
    """The fake launcher, whose runs of ``broken`` exit 3."""

    async def __call__(self, command: CommandConfig, request: RunRequest) -> RunResult:
        result = await super().__call__(command, request)
        return RunResult(exit_code=3) if command.name == "broken" else result


@pytest.mark.parametrize(
    "result",
    [
        RunResult(exit_code=0),
        RunResult(exit_code=3),
        RunResult(exit_code=-1),
        RunResult(signal=9),
        RunResult(timed_out=True),
        RunResult(error="cannot start /bin/nope: No such file or directory"),
        RunResult(error="exit 3 of something"),
    ],
)
def test_a_result_read_back_from_its_history_outcome_is_the_same(result: RunResult) -> None:
    again = RunResult.from_outcome(result.ok, result.describe())
    assert (again, again.describe()) == (result, result.describe())


def _sample(service_metrics: bytes, line: str) -> float | None:
    for text in service_metrics.decode().splitlines():
        if text.startswith(line + " "):
            return float(text.split()[-1])
    return None


async def _serve_once(path: Path, launch: FakeLaunch, disk: MemoryDisk) -> None:
    async with trio.open_nursery() as nursery:
        service = make_service(path, launch, disk, watch=False)
        await nursery.start(service.run)
        await trio.sleep(10)  # both runOnStart runs end
        service.request_shutdown()


async def test_a_restart_restores_the_last_result_and_last_success_from_history(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    path = tmp_path / "config.yaml"
    write_config(
        path,
        yaml_command("broken", runOnStart=True),
        yaml_command("fine", runOnStart=True),
        yaml_command("never"),
        top=f"stateDir: {tmp_path / 'state'}\n",
    )
    disk = MemoryDisk()
    await _serve_once(path, FailingLaunch(), disk)
    state = f"stateDir: {tmp_path / 'state'}\n"
    write_config(
        path, yaml_command("broken"), yaml_command("fine"), yaml_command("never"), top=state
    )

    launch = FailingLaunch()
    async with trio.open_nursery() as nursery:
        service = make_service(path, launch, disk, watch=False)
        await nursery.start(service.run)
        metrics = service.metrics.render()
        assert _sample(metrics, 's3syncer_last_run_success{command="broken"}') == 0.0
        assert _sample(metrics, 's3syncer_last_run_success{command="fine"}') == 1.0
        assert _sample(metrics, 's3syncer_last_run_success{command="never"}') is None
        fine_success = _sample(metrics, 's3syncer_last_success_timestamp_seconds{command="fine"}')
        assert fine_success is not None and fine_success > 0
        assert _sample(metrics, 's3syncer_last_success_timestamp_seconds{command="broken"}') == 0

        document = status_document(service.views())
        by_name = {c["name"]: c for c in document["commands"]}
        broken = by_name["broken"]["lastRun"]
        assert (broken["runId"], broken["ok"], broken["outcome"]) == (1, False, "exit 3")
        assert (broken["exitCode"], broken["beforeRestart"], broken["outputTail"]) == (
            3,
            True,
            None,
        )
        assert by_name["fine"]["lastRun"]["ok"] is True
        assert by_name["never"]["lastRun"] is None
        assert launch.runs == []  # nothing ran in this process: all of it came from history
        service.request_shutdown()


def _metric(text: str, line: str) -> float | None:
    return _sample(text.encode(), line)


@pytest.mark.integration
@pytest.mark.slow
def test_a_real_restart_over_a_state_dir_keeps_a_failed_command_failed(tmp_path: Path) -> None:
    broken, fine = Recorder(tmp_path / "broken", exit_code=3), Recorder(tmp_path / "fine")
    state = f"stateDir: {tmp_path / 'state'}\ncommands:\n"
    first = (
        state
        + broken.command_yaml("broken", runOnStart=True)
        + fine.command_yaml("fine", runOnStart=True)
    )
    with start_daemon(tmp_path, first) as daemon:
        broken.wait_ends(1)
        fine.wait_ends(1)
        daemon.wait_for_log("broken: run 1 failed")
        daemon.wait_for_log("fine: run 1 succeeded")
    then = start_daemon(tmp_path, state + broken.command_yaml("broken") + fine.command_yaml("fine"))
    with then as daemon:
        metrics = daemon.get("/metrics")[2].decode()
        assert _metric(metrics, 's3syncer_last_run_success{command="broken"}') == 0.0
        assert _metric(metrics, 's3syncer_last_run_success{command="fine"}') == 1.0
        success = _metric(metrics, 's3syncer_last_success_timestamp_seconds{command="fine"}')
        assert success is not None and success > 0
        status = daemon.status()
        last = status["broken"]["lastRun"]
        assert (last["runId"], last["ok"], last["exitCode"], last["beforeRestart"]) == (
            1,
            False,
            3,
            True,
        )
        page = daemon.get("/")[2].decode()
        card = page.split('id="cmd-broken"', 1)[1].split("</section>", 1)[0]
        assert page.split('id="cmd-broken"', 1)[0].endswith('class="cmd failed" ')
        assert "no run yet" not in card and "exit 3 (before the restart" in card
    assert (
        json.loads((tmp_path / "state" / "history" / "broken.json").read_text())["lastRunId"] == 1
    )


async def test_a_run_killed_at_shutdown_is_logged_kept_and_its_id_never_reused(
    tmp_path: Path, autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "config.yaml"
    state = f"stateDir: {tmp_path / 'state'}\nshutdownGrace: 5s\n"
    write_config(path, yaml_command("slow", runOnStart=True), top=state)
    disk = MemoryDisk()
    async with trio.open_nursery() as nursery:
        service = make_service(path, FakeLaunch(durations={"slow": 100.0}), disk, watch=False)
        await nursery.start(service.run)
        await trio.sleep(1)
        service.request_shutdown()
    [line] = [r for r in caplog.records if "killed at shutdown" in r.getMessage()]
    assert line.getMessage() == "slow: run 1 killed at shutdown after 6.00s"
    assert (line.levelname, line.run_id) == ("ERROR", 1)  # type: ignore[attr-defined]
    assert line.exit_code is None and line.signal is None  # type: ignore[attr-defined]
    saved = disk.files[tmp_path / "state" / "history" / "slow.json"]
    assert saved is not None and saved["lastRunId"] == 1
    [run] = saved["runs"]
    assert (run["runId"], run["ok"], run["outcome"]) == (1, False, "killed at shutdown")
    assert run["end"] - run["start"] == pytest.approx(6.0)

    launch = FakeLaunch(durations={"slow": 1.0})
    async with trio.open_nursery() as nursery:
        service = make_service(path, launch, disk, watch=False)
        await nursery.start(service.run)
        [before] = service.views()
        assert before.last_run is not None and before.last_run.run_id == 1
        assert before.last_run.result is not None
        assert before.last_run.result.describe() == "killed at shutdown"
        await trio.sleep(2)
        [after] = service.views()
        assert [run.run_id for run in after.recent_runs] == [2, 1]  # the id goes on after it
        service.request_shutdown()
    assert [run.reason for run in launch.runs] == ["startup"]


@pytest.mark.integration
@pytest.mark.slow
def test_a_real_run_killed_at_shutdown_has_an_outcome_line_and_stays_in_the_history(
    tmp_path: Path,
) -> None:
    slow = Recorder(tmp_path / "slow", blocking=True)
    config = f"stateDir: {tmp_path / 'state'}\nshutdownGrace: 1s\ncommands:\n" + (
        slow.command_yaml("slow", runOnStart=True)
    )
    with start_daemon(tmp_path, config) as daemon:
        slow.wait_starts(1)
        assert daemon.stop() == 0
        log = daemon.log_text()
    assert "slow: run 1 killed at shutdown after" in log
    history = json.loads((tmp_path / "state" / "history" / "slow.json").read_text())
    assert [(r["runId"], r["outcome"]) for r in history["runs"]] == [(1, "killed at shutdown")]
    slow.release_path.touch()
    with start_daemon(tmp_path, config) as daemon:
        daemon.wait_for_log("slow: run 2 succeeded")
        status = daemon.status()["slow"]
        assert [r["runId"] for r in status["recentRuns"]] == [2, 1]
        assert status["recentRuns"][1]["result"] == "killed at shutdown"
