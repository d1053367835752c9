"""Nothing lost: durable triggers across restarts, reloads, shutdown under load.

Every test drives a real ``s3syncer serve`` with real signals.
"""

from __future__ import annotations

import http.client
import itertools
import json
import os
import re
import signal
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from conftest import FIXTURES
from daemon import Daemon, Recorder, pid_gone, spawn_s3syncer, start_daemon
from s3syncer.daemon.reload import CONFIG_POLL
from s3syncer.durable.journal import Journal
from waiting import wait_until

pytestmark = pytest.mark.integration

HEADERS = {"Content-Type": "application/vnd.docker.distribution.events.v1+json"}
TAG_V1 = (FIXTURES / "02-push-manifest-tag-v1.json").read_bytes()
TAG_LATEST = (FIXTURES / "05-push-manifest-tag-latest.json").read_bytes()
RELOADED = re.compile(r"reloaded |reload: no command changed")


def _config(state_dir: Path, *commands: str, extra: str = "") -> str:
    return f"stateDir: {state_dir}\nshutdownGrace: 5s\n{extra}commands:\n" + "".join(commands)


def _post_ok(daemon: Daemon, name: str, body: bytes) -> None:
    status, _, answer = daemon.post(f"/trigger/{name}", body, HEADERS)
    assert status == 200, answer
    assert json.loads(answer)["accepted"] == 1


def _tags(run: dict[str, object]) -> list[str]:
    events = run["events"]
    assert isinstance(events, dict)
    return [e["target"]["tag"] for e in events["events"]]


@pytest.mark.parametrize("how", [signal.SIGKILL, signal.SIGTERM])
def test_a_trigger_answered_200_survives_a_restart(tmp_path: Path, how: signal.Signals) -> None:
    recorder = Recorder(tmp_path / "push")
    config = _config(tmp_path / "state", recorder.command_yaml("push", delay="1h"))
    with start_daemon(tmp_path, config) as daemon:
        _post_ok(daemon, "push", TAG_V1)
        _post_ok(daemon, "push", TAG_LATEST)
        assert (tmp_path / "state" / "push.json").exists()  # on disk before the 200
        daemon.signal(how)
        daemon.wait(15)
    assert recorder.starts() == []

    with start_daemon(tmp_path, config) as daemon:
        [run] = recorder.wait_starts(1, timeout=10)
        assert run["reason"] == "recovered"
        assert _tags(run) == ["v1", "latest"]
        recorder.wait_ends(1)
        # A successful run settles the journal.
        wait_until(lambda: not (tmp_path / "state" / "push.json").exists(), timeout=10)
        assert "accepted events were not run before the restart" in daemon.log_text()


def test_a_failed_run_keeps_the_journal_and_a_corrupt_one_still_runs(tmp_path: Path) -> None:
    failing = Recorder(tmp_path / "push", exit_code=1)
    config = _config(tmp_path / "state", failing.command_yaml("push", delay="100ms"))
    with start_daemon(tmp_path, config) as daemon:
        _post_ok(daemon, "push", TAG_V1)
        failing.wait_ends(1)
        daemon.wait_for_log("run 1 failed")
        metrics = daemon.get("/metrics")[2].decode()
        assert 's3syncer_last_run_success{command="push"} 0.0' in metrics
    journal = tmp_path / "state" / "push.json"
    assert [e["target"]["tag"] for e in json.loads(journal.read_text())["events"]] == ["v1"]

    journal.write_text("{half a write")
    recorder = Recorder(tmp_path / "push2")
    config = _config(tmp_path / "state", recorder.command_yaml("push", delay="1h"))
    with start_daemon(tmp_path, config) as daemon:
        [run] = recorder.wait_starts(1, timeout=10)
        assert run["reason"] == "recovered"
        assert run["events"] == {
            "command": "push",
            "reason": "recovered",
            "events": [],
            "truncated": True,
        }
        assert "is unreadable (Expecting property name" in daemon.log_text()


def test_an_unusable_state_dir_is_a_clear_error_at_start(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("")
    recorder = Recorder(tmp_path / "push")
    config = _config(blocker / "state", recorder.command_yaml("push"))
    daemon = start_daemon(tmp_path, config, wait_listening=False)
    with daemon:
        assert daemon.wait(15) == 1
        assert "cannot use stateDir" in daemon.log_text()
        assert "Traceback" not in daemon.log_text()


def test_a_second_daemon_on_the_same_state_dir_refuses_to_start(tmp_path: Path) -> None:
    # A second serve (another port, or a unit started twice) would read and rewrite the
    # first one's journals and start its own runs of every command, runOnStart at once.
    recorder = Recorder(tmp_path / "push")
    config = _config(tmp_path / "state", recorder.command_yaml("push", runOnStart=True))
    with start_daemon(tmp_path, config) as first:
        recorder.wait_starts(1)
        journals = sorted(p.name for p in (tmp_path / "state").iterdir())
        second = start_daemon(tmp_path, config, wait_listening=False)
        with second:
            assert second.wait(15) == 1
            assert (
                f"stateDir {tmp_path / 'state'} is in use by another s3syncer" in second.log_text()
            ), second.log_text()
            assert "Traceback" not in second.log_text()
        assert len(recorder.starts()) == 1  # the second daemon ran nothing
        assert sorted(p.name for p in (tmp_path / "state").iterdir()) == journals
        assert first.get("/health")[0] == 200


# --- reload --------------------------------------------------------------------------------


def test_sighup_reloads_added_changed_and_removed_commands(tmp_path: Path) -> None:
    push, other, extra = (Recorder(tmp_path / n) for n in ("push", "other", "extra"))
    config_path = tmp_path / "live.yaml"
    config_path.write_text(
        "commands:\n"
        + push.command_yaml("push", delay="1h")
        + other.command_yaml("other", delay="100ms")
    )
    with _start_on(tmp_path, config_path) as daemon:
        _post_ok(daemon, "push", TAG_V1)  # pending for an hour
        config_path.write_text(
            "commands:\n"
            + push.command_yaml("push", delay="100ms")  # changed: the pending trigger is kept
            + extra.command_yaml("extra", delay="100ms")  # added; "other" removed
        )
        daemon.signal(signal.SIGHUP)
        daemon.wait_for_log("1 added, 1 changed, 1 removed")
        [run] = push.wait_starts(1, timeout=10)
        assert _tags(run) == ["v1"]
        assert daemon.post("/trigger/other", TAG_V1, HEADERS)[0] == 404
        # A removed command leaves no series behind for an alert to fire on.
        wait_until(lambda: 'command="other"' not in daemon.get("/metrics")[2].decode())
        assert 'command="extra"' in daemon.get("/metrics")[2].decode()
        _post_ok(daemon, "extra", TAG_LATEST)
        extra.wait_starts(1, timeout=10)

        config_path.write_text("commands:\n  - {name: push, delay: 3x}\n")
        daemon.signal(signal.SIGHUP)
        daemon.wait_for_log("still running the previous configuration")
        assert 'commands[0].delay: "3x" is not a duration' in daemon.log_text()
        _post_ok(daemon, "extra", TAG_V1)  # the old configuration still serves
        extra.wait_starts(2, timeout=10)


def test_a_storm_of_sighups_under_load_keeps_serving_and_loses_nothing(tmp_path: Path) -> None:
    """50 SIGHUPs in about 5 s, the file alternating valid and invalid, commands added and
    removed, while triggers flow: the daemon stays up and runs every event it answered 200."""
    push, extra = Recorder(tmp_path / "push"), Recorder(tmp_path / "extra", sleep=0.3)
    state = tmp_path / "state"
    config_path = tmp_path / "live.yaml"

    def publish(text: str) -> None:
        fresh = config_path.with_suffix(".new")
        fresh.write_text(f"stateDir: {state}\ncommands:\n" + text)
        fresh.replace(config_path)  # never half a file: an editor or the kubelet swaps it

    publish(push.command_yaml("push", delay="100ms"))
    template = json.loads(TAG_V1)
    answered: list[str] = []
    stop = threading.Event()

    with _start_on(tmp_path, config_path) as daemon:

        def post_unique() -> None:
            while not stop.is_set():
                event_id = f"storm-{len(answered)}-{threading.get_ident()}"
                template_event = dict(template["events"][0], id=event_id)
                body = json.dumps({"events": [template_event]}).encode()
                status, _, _ = daemon.post("/trigger/push", body, HEADERS)
                if status == 200:
                    answered.append(event_id)

        threads = [threading.Thread(target=post_unique) for _ in range(2)]
        for thread in threads:
            thread.start()
        try:
            for round_ in range(50):
                commands = push.command_yaml("push", delay=f"{100 + round_ % 3 * 100}ms")
                if round_ % 2:
                    commands += extra.command_yaml(f"extra{round_ % 4}", runOnStart=True)
                publish("  - {name: push, delay: 3x}\n" if round_ % 5 == 4 else commands)
                daemon.signal(signal.SIGHUP)
                time.sleep(0.1)  # the storm's pace, not a wait for anything
        finally:
            stop.set()
            for thread in threads:
                thread.join(10)
        publish(push.command_yaml("push", delay="100ms"))
        daemon.signal(signal.SIGHUP)
        wait_until(lambda: _command_names(daemon) == ["push"])  # one runner a name

        def covered() -> set[str]:
            return {e["id"] for run in push.starts() for e in run["events"]["events"]}

        assert answered
        wait_until(lambda: set(answered) <= covered(), timeout=30)
        assert daemon.returncode is None
        log_text = daemon.log_text()
    assert "Traceback" not in log_text and "KeyError" not in log_text
    _assert_never_twice_at_once(push)
    _assert_never_twice_at_once(extra)


def _command_names(daemon: Daemon) -> list[str]:
    status, _, body = daemon.get("/status")
    assert status == 200, body
    return [command["name"] for command in json.loads(body)["commands"]]


def _assert_never_twice_at_once(recorder: Recorder) -> None:
    """One command never runs twice at the same time, whichever runner a reload made for it."""
    spans: dict[int, list[Any]] = {}
    for record in recorder.records():
        if record["phase"] == "start":
            spans[record["pid"]] = [record["command"], record["time"], float("inf")]
        else:
            spans[record["pid"]][2] = record["time"]
    by_command: dict[str, list[tuple[float, float]]] = {}
    for command, began, ended in spans.values():
        by_command.setdefault(command, []).append((began, ended))
    for runs in by_command.values():
        runs.sort()
        assert all(a[1] <= b[0] for a, b in itertools.pairwise(runs)), runs


def test_an_edit_then_sighup_reloads_once(tmp_path: Path) -> None:
    push = Recorder(tmp_path / "push")
    config_path = tmp_path / "live.yaml"
    config_path.write_text("commands:\n" + push.command_yaml("push"))
    with _start_on(tmp_path, config_path) as daemon:
        config_path.write_text("commands:\n" + push.command_yaml("push", delay="1s"))
        daemon.signal(signal.SIGHUP)  # before the file watcher's next poll
        first = daemon.wait_for_log("reloaded")
        # The watcher polls every 2 s: a second reload of the same edit would show by then.
        time.sleep(2 * CONFIG_POLL)
        assert not RELOADED.search(daemon.log_text(), first.end()), daemon.log_text()
        # A SIGHUP with nothing new says so and changes nothing.
        daemon.signal(signal.SIGHUP)
        daemon.wait_for_log("reload: no command changed", start=first.end())
        assert len(RELOADED.findall(daemon.log_text())) == 2


def _start_on(tmp_path: Path, config_path: Path) -> Daemon:
    """Serve ``config_path`` itself, so that reloads read what the test rewrites."""
    args = ["serve", "--config", str(config_path), "--listen", "127.0.0.1:0"]
    return spawn_s3syncer(tmp_path, args)


def test_a_kubernetes_style_configmap_swap_is_picked_up_without_a_signal(tmp_path: Path) -> None:
    recorder = Recorder(tmp_path / "push")
    volume = tmp_path / "volume"
    volume.mkdir()

    def publish(version: str, text: str) -> None:
        # What the kubelet does: a new timestamped dir, then an atomic swap of ..data.
        data = volume / version
        data.mkdir()
        (data / "config.yaml").write_text(text)
        link = volume / "..data_tmp"
        link.symlink_to(version)
        os.replace(link, volume / "..data")

    publish("v1", "commands:\n" + recorder.command_yaml("push", delay="1h"))
    (volume / "config.yaml").symlink_to("..data/config.yaml")
    with _start_on(tmp_path, volume / "config.yaml") as daemon:
        publish("v2", "commands:\n" + recorder.command_yaml("fresh", delay="100ms"))
        daemon.wait_for_log("1 added, 0 changed, 1 removed", timeout=15)
        _post_ok(daemon, "fresh", TAG_V1)
        recorder.wait_starts(1, timeout=10)


# --- shutdown under load -------------------------------------------------------------------


def test_sigterm_under_load_answers_what_it_accepted_and_exits_within_grace(
    tmp_path: Path,
) -> None:
    recorder = Recorder(tmp_path / "push", blocking=True)
    config = _config(tmp_path / "state", recorder.command_yaml("push", delay="100ms"))
    with start_daemon(tmp_path, config) as daemon:
        _post_ok(daemon, "push", TAG_V1)
        [run] = recorder.wait_starts(1, timeout=10)
        outcomes: list[str] = []
        stop = threading.Event()

        def hammer() -> None:
            while not stop.is_set():
                try:
                    connection = http.client.HTTPConnection(daemon.host, daemon.port, timeout=5)
                    connection.request("POST", "/trigger/push", TAG_LATEST, HEADERS)
                    outcomes.append(str(connection.getresponse().status))
                    connection.close()
                except ConnectionError as exc:
                    outcomes.append(type(exc).__name__)
                except TimeoutError:
                    outcomes.append("timeout")

        threads = [threading.Thread(target=hammer) for _ in range(4)]
        for thread in threads:
            thread.start()
        wait_until(lambda: len(outcomes) > 50, timeout=10)
        began = time.monotonic()
        daemon.signal(signal.SIGTERM)
        code = daemon.wait(5 + 10 + 5)
        took = time.monotonic() - began
        stop.set()
        for thread in threads:
            thread.join(10)
    assert code == 0, daemon.log_text()
    assert took < 5 + 10, f"exit took {took:.1f}s"
    # Every request got an answer (200 before the signal, 503 after it) or was refused
    # at connect: none hung and none got an error from the server.
    assert "timeout" not in outcomes
    refused = {"ConnectionRefusedError", "ConnectionResetError", "RemoteDisconnected"}
    assert set(outcomes) <= {"200", "503", *refused}, set(outcomes)
    assert "200" in outcomes
    # The blocking run got the grace and was then terminated, group and all.
    assert pid_gone(run["pid"])
    assert "shutdown grace of 5s is over" in daemon.log_text()
    # What was accepted and not run is still on disk for the next start.
    recovered = Journal(tmp_path / "state" / "push.json").load()
    assert recovered is not None and recovered.problem is None
    assert [e.tag for e in recovered.events] == ["v1", "latest"]
