"""``s3syncer serve`` as a real process: the webhook, the probes, the CLI, signals, commands.

Every test starts the daemon with :mod:`daemon` and counts the command's runs with a
:class:`daemon.Recorder`, waiting on conditions with bounds rather than sleeping.
"""

from __future__ import annotations

import json
import re
import signal
import socket
import time
from pathlib import Path
from typing import Any

import pytest

from conftest import TAGGED_PUSHES, fixture_body, fixture_files
from daemon import Recorder, pid_gone, run_s3syncer, spawn_s3syncer, start_daemon
from waiting import free_port, wait_until

pytestmark = pytest.mark.integration

DELAY = 0.2
# What CNCF Distribution sends with every notification (see the fixtures' README).
REGISTRY_HEADERS = {
    "User-Agent": "Go-http-client/1.1",
    "Content-Type": "application/vnd.docker.distribution.events.v1+json",
    "Accept-Encoding": "gzip",
}
TAG_V1 = "02-push-manifest-tag-v1.json"
TAG_LATEST = "05-push-manifest-tag-latest.json"
MIB = 1024 * 1024


def config_for(*commands: str, **top: Any) -> str:
    """A config file: top-level keys (as JSON values, which YAML reads) and command items."""
    lines = [f"{key}: {json.dumps(value)}\n" for key, value in top.items()]
    return "".join(lines) + "commands:\n" + "".join(commands)


def fixture_events(name: str) -> list[dict[str, Any]]:
    """The events of one fixture body, as the registry sent them."""
    events: list[dict[str, Any]] = json.loads(fixture_body(name))["events"]
    return events


def sent_events(document: dict[str, Any]) -> list[dict[str, Any]]:
    """The events of an events file as the registry sent them (each one's ``raw``)."""
    return [event["raw"] for event in document["events"]]


def prove_no_more_runs(recorder: Recorder, expected: int, delay: float = DELAY) -> None:
    """Check that no run beyond ``expected`` starts within 3 x ``delay``.

    Proving that something does NOT happen needs a fixed wait: a stray follow-up run would
    start ``delay`` after its trigger, so three times that is ample. This is the one short
    fixed wait these tests allow themselves."""
    time.sleep(3 * delay)
    starts = recorder.starts()
    assert len(starts) == expected, f"expected {expected} run(s), got {starts}"


# --- the webhook ---------------------------------------------------------------------------


def test_registry_fixtures_coalesce_into_one_run(tmp_path: Path) -> None:
    recorder = Recorder(tmp_path / "push")
    config = config_for(recorder.command_yaml("push", delay=f"{int(DELAY * 1000)}ms"))
    with start_daemon(tmp_path, config) as daemon:
        answered: dict[str, float] = {}
        for path in fixture_files():
            status, headers, body = daemon.post(
                "/trigger/push", path.read_bytes(), REGISTRY_HEADERS
            )
            answered[path.name] = time.monotonic()
            assert status == 200, (path.name, body)
            assert headers["content-type"].startswith("application/json")
            expected = 1 if path.name in TAGGED_PUSHES else 0
            assert json.loads(body) == {"accepted": expected, "ignored": 1 - expected}, path.name
        # The test means "both tagged pushes arrive within one quiet period"; make sure the
        # machine was quick enough for that to be what happened.
        gap = answered[TAG_LATEST] - answered[TAG_V1]
        assert gap < DELAY / 2, f"the tagged pushes were {gap:.3f}s apart: machine too slow"

        [run] = recorder.wait_starts(1)
        prove_no_more_runs(recorder, 1)
        assert run["reason"] == "event"
        assert run["command"] == "push"
        document = run["events"]
        assert document["command"] == "push"
        assert document["reason"] == "event"
        assert document["truncated"] is False
        assert sent_events(document) == fixture_events(TAG_V1) + fixture_events(TAG_LATEST)
        recorder.wait_ends(1)
        # The events file is deleted after the run.
        wait_until(
            lambda: not Path(run["events_file"]).exists(),
            timeout=5,
            message="the events file outlived its run",
        )
        daemon.wait_for_log(re.compile(r"push: 2 triggers coalesced into run 1 \(reason event"))


BAD_ENVELOPES = {
    "not JSON": b"this is not json",
    "a JSON array": b'[{"events": []}]',
    "events not a list": b'{"events": {"action": "push"}}',
    "an event without target": b'{"events": [{"id": "x", "action": "push"}]}',
    "not UTF-8": b'{"events": [], "x": "\xff"}',
    "empty": b"",
}


def test_bad_requests_are_refused_and_the_daemon_keeps_serving(tmp_path: Path) -> None:
    recorder = Recorder(tmp_path / "push")
    config = config_for(recorder.command_yaml("push", delay="100ms"))
    good = fixture_body(TAG_V1)
    with start_daemon(tmp_path, config) as daemon:
        for what, body in BAD_ENVELOPES.items():
            status, _, answer = daemon.post("/trigger/push", body, REGISTRY_HEADERS)
            assert status == 400, (what, answer)
            text = answer.decode()
            assert text.endswith("\n") and text.strip(), (what, text)
            assert "\n" not in text.rstrip("\n"), f"{what}: not one line: {text!r}"

        status, _, answer = daemon.post("/trigger/nope", good, REGISTRY_HEADERS)
        assert status == 404, answer
        assert daemon.post("/run/nope")[0] == 404

        too_big = b" " * (MIB + 1)
        status, _, answer = daemon.post("/trigger/push", too_big, REGISTRY_HEADERS)
        assert status == 413, answer
        # Without a Content-Length (chunked), the limit holds while reading.
        chunks = [b" " * 65536] * (MIB // 65536 + 1)
        status, _, answer = daemon.post("/trigger/push", iter(chunks), REGISTRY_HEADERS)
        assert status == 413, answer
        # Exactly 1 MiB is allowed (and is JSON: an envelope padded with spaces).
        padded = good + b" " * (MIB - len(good))
        status, _, answer = daemon.post("/trigger/push", padded, REGISTRY_HEADERS)
        assert status == 200, answer

        headers = {**REGISTRY_HEADERS, "Content-Type": "text/plain"}
        status, _, answer = daemon.post("/trigger/push", good, headers)
        assert status == 415, answer

        # Still serving, and a good request still triggers a run.
        assert daemon.get("/health")[0] == 200
        status, _, answer = daemon.post("/trigger/push", good, REGISTRY_HEADERS)
        assert (status, json.loads(answer)) == (200, {"accepted": 1, "ignored": 0})
        [run] = recorder.wait_starts(1)
        assert run["reason"] == "event"
        # The padded 1 MiB body and the last one carry the same event id: de-duplicated.
        assert sent_events(run["events"]) == fixture_events(TAG_V1)
        assert daemon.returncode is None


def test_other_content_types_are_accepted(tmp_path: Path) -> None:
    recorder = Recorder(tmp_path / "push")
    config = config_for(recorder.command_yaml("push", delay="10s"))
    good = fixture_body(TAG_V1)
    with start_daemon(tmp_path, config) as daemon:
        for content_type in (
            "application/vnd.docker.distribution.events.v2+json",
            "application/json; charset=utf-8",
            None,
        ):
            headers = {} if content_type is None else {"Content-Type": content_type}
            status, _, answer = daemon.post("/trigger/push", good, headers)
            assert status == 200, (content_type, answer)


def test_handler_never_waits_on_the_command(tmp_path: Path) -> None:
    recorder = Recorder(tmp_path / "push", blocking=True)
    config = config_for(recorder.command_yaml("push", delay=f"{int(DELAY * 1000)}ms"))
    bodies = {path.name: path.read_bytes() for path in fixture_files()}
    with start_daemon(tmp_path, config) as daemon:
        status, _, _ = daemon.post("/trigger/push", bodies[TAG_V1], REGISTRY_HEADERS)
        assert status == 200
        [first] = recorder.wait_starts(1)
        assert recorder.running()

        # The command blocks; every webhook is still answered at once.
        for name, body in bodies.items():
            began = time.monotonic()
            status, _, answer = daemon.post("/trigger/push", body, REGISTRY_HEADERS, timeout=5)
            took = time.monotonic() - began
            assert status == 200, (name, answer)
            assert took < 1.0, f"{name} took {took:.2f}s while the command ran"
        status_page = daemon.status()["push"]
        assert status_page["state"] == "running"
        assert status_page["pendingTriggers"] == 2
        assert len(recorder.starts()) == 1, "a second run started while the first one ran"

        recorder.release()
        starts = recorder.wait_starts(2)
        ends = recorder.wait_ends(2)
        prove_no_more_runs(recorder, 2)
        follow_up = starts[1]
        assert follow_up["reason"] == "event"
        assert first["pid"] != follow_up["pid"]
        # Never before the current run ends.
        assert follow_up["time"] >= ends[0]["time"]
        expected = fixture_events(TAG_V1) + fixture_events(TAG_LATEST)
        assert sent_events(follow_up["events"]) == expected


def test_token_is_required_when_auth_is_configured(tmp_path: Path) -> None:
    recorder = Recorder(tmp_path / "push")
    config = config_for(recorder.command_yaml("push", delay="100ms"), auth={"token": "s3cr3t"})
    good = fixture_body(TAG_V1)
    with start_daemon(tmp_path, config) as daemon:
        for auth in (None, "Bearer wrong", "Bearer s3cr3", "Basic !!!", "s3cr3t"):
            headers = dict(REGISTRY_HEADERS)
            if auth is not None:
                headers["Authorization"] = auth
            assert daemon.post("/trigger/push", good, headers)[0] == 401, auth
            assert daemon.post("/run/push", b"", headers)[0] == 401, auth
        # Probes stay open.
        assert daemon.get("/health")[0] == 200
        assert daemon.get("/ready")[0] == 200
        headers = {**REGISTRY_HEADERS, "Authorization": "Bearer s3cr3t"}
        status, _, answer = daemon.post("/trigger/push", good, headers)
        assert (status, json.loads(answer)["accepted"]) == (200, 1)
        recorder.wait_starts(1)
        assert "s3cr3t" not in daemon.log_text()


# --- probes ----------------------------------------------------------------------------------


def test_health_and_ready(tmp_path: Path) -> None:
    recorder = Recorder(tmp_path / "push")
    with start_daemon(tmp_path, config_for(recorder.command_yaml("push"))) as daemon:
        status, headers, body = daemon.get("/health")
        assert (status, body.strip()) == (200, b"OK")
        assert headers["content-type"].startswith("text/plain")
        # The daemon logs "listening" only once every runner is up.
        assert daemon.get("/ready")[0] == 200
        status, _, body = daemon.get("/metrics")
        assert status == 200
        assert b"s3syncer_running" in body


# --- the command line ------------------------------------------------------------------------


def test_version() -> None:
    result = run_s3syncer(["--version"])
    assert result.returncode == 0, result.stderr
    assert re.fullmatch(r"s3syncer \d+\.\d+\.\d+\S*\n", result.stdout)


def test_original_single_dash_flags_serve(tmp_path: Path) -> None:
    recorder = Recorder(tmp_path / "push")
    config = tmp_path / "legacy.yaml"
    config.write_text(config_for(recorder.command_yaml("push", delay="100ms")))
    with spawn_s3syncer(tmp_path, ["-config", str(config), "-listen", "127.0.0.1:0"]) as daemon:
        assert daemon.host == "127.0.0.1"
        assert daemon.get("/health")[0] == 200
        assert daemon.post("/run/push")[0] == 202
        assert recorder.wait_starts(1)[0]["reason"] == "manual"
        daemon.signal(signal.SIGTERM)
        assert daemon.wait(15) == 0


def test_environment_gives_config_and_listen(tmp_path: Path) -> None:
    recorder = Recorder(tmp_path / "push")
    config = tmp_path / "env.yaml"
    config_port = free_port()
    config.write_text(config_for(recorder.command_yaml("push"), listen=f"127.0.0.1:{config_port}"))
    env_port = free_port()
    env = {"S3SYNCER_CONFIG": str(config), "S3SYNCER_LISTEN": f"127.0.0.1:{env_port}"}
    # No flags at all: both come from the environment, which also beats the config's listen.
    with spawn_s3syncer(tmp_path, [], env=env) as daemon:
        assert daemon.port == env_port
        assert daemon.get("/health")[0] == 200


def test_flags_win_over_the_environment(tmp_path: Path) -> None:
    recorder = Recorder(tmp_path / "push")
    config = tmp_path / "flags.yaml"
    config.write_text(config_for(recorder.command_yaml("push")))
    env = {"S3SYNCER_CONFIG": str(tmp_path / "missing.yaml"), "S3SYNCER_LISTEN": "not-an-address"}
    args = ["serve", "--config", str(config), "--listen", "127.0.0.1:0"]
    with spawn_s3syncer(tmp_path, args, env=env) as daemon:
        assert daemon.get("/health")[0] == 200


def test_listen_on_all_interfaces_logs_the_real_port(tmp_path: Path) -> None:
    recorder = Recorder(tmp_path / "push")
    with start_daemon(tmp_path, config_for(recorder.command_yaml("push")), listen=":0") as daemon:
        assert daemon.port != 0
        assert daemon.host in ("0.0.0.0", "::")
        assert daemon.get("/health")[0] == 200


@pytest.mark.parametrize(
    ("config_text", "key_path"),
    [
        ('commands:\n  - {name: push, cmd: /bin/true, delay: "3x"}\n', "commands[0].delay"),
        ("commands:\n  - {name: push, cmd: /bin/true, bogus: 1}\n", "commands[0].bogus"),
        (
            "commands:\n  - {name: a, cmd: /bin/true}\n  - {name: a, cmd: /bin/true}\n",
            "commands[1]",
        ),
    ],
    ids=["bad duration", "unknown key", "duplicate name"],
)
def test_bad_config_exits_2_naming_file_and_key(
    tmp_path: Path, config_text: str, key_path: str
) -> None:
    config = tmp_path / "bad.yaml"
    config.write_text(config_text)
    result = run_s3syncer(["serve", "--config", str(config), "--listen", "127.0.0.1:0"])
    assert result.returncode == 2, result.stderr
    assert str(config) in result.stderr
    assert key_path in result.stderr
    assert "listening on" not in result.stderr


def test_missing_config_exits_2(tmp_path: Path) -> None:
    missing = tmp_path / "missing.yaml"
    result = run_s3syncer(["serve", "--config", str(missing), "--listen", "127.0.0.1:0"])
    assert result.returncode == 2, result.stderr
    assert str(missing) in result.stderr


@pytest.mark.parametrize(
    "extra",
    [
        ["--no-such-flag"],
        ["--listen", "nonsense"],
        ["--listen", "127.0.0.1:99999"],
        ["--log-format", "xml"],
    ],
    ids=["unknown flag", "bad listen", "port out of range", "bad log format"],
)
def test_bad_flags_exit_2(tmp_path: Path, extra: list[str]) -> None:
    recorder = Recorder(tmp_path / "push")
    config = tmp_path / "good.yaml"
    config.write_text(config_for(recorder.command_yaml("push")))
    result = run_s3syncer(["serve", "--config", str(config), *extra])
    assert result.returncode == 2, result.stderr
    assert result.stderr.strip()
    assert "listening on" not in result.stderr


def test_port_in_use_exits_1(tmp_path: Path) -> None:
    recorder = Recorder(tmp_path / "push")
    config = tmp_path / "good.yaml"
    config.write_text(config_for(recorder.command_yaml("push", runOnStart=True)))
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = run_s3syncer(["serve", "--config", str(config), "--listen", f"127.0.0.1:{port}"])
    assert result.returncode == 1, result.stderr
    assert f"127.0.0.1:{port}" in result.stderr
    assert "Traceback" not in result.stderr
    # Any run that started before the bind failed must not outlive the daemon.
    for run in recorder.starts():
        assert pid_gone(run["pid"])


# --- signals and shutdown --------------------------------------------------------------------


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_signal_shuts_down_cleanly(tmp_path: Path, sig: signal.Signals) -> None:
    recorder = Recorder(tmp_path / "push")
    with start_daemon(tmp_path, config_for(recorder.command_yaml("push"))) as daemon:
        daemon.signal(sig)
        assert daemon.wait(15) == 0, daemon.log_text()
        log_text = daemon.log_text()
        assert f"{sig.name} received" in log_text
        assert "shutting down" in log_text
        assert "shut down cleanly" in log_text


def test_sighup_keeps_serving_and_json_logs(tmp_path: Path) -> None:
    recorder = Recorder(tmp_path / "push")
    config = config_for(recorder.command_yaml("push", delay="100ms"))
    with start_daemon(tmp_path, config, args=["--log-format", "json"]) as daemon:
        daemon.signal(signal.SIGHUP)
        daemon.wait_for_log("SIGHUP")
        assert daemon.post("/run/push")[0] == 202
        recorder.wait_ends(1)
        daemon.wait_for_log("push: run 1 succeeded")
        daemon.signal(signal.SIGTERM)
        assert daemon.wait(15) == 0
        records = [json.loads(line) for line in daemon.log_text().splitlines()]
        assert {"time", "level", "message"} <= set(records[0])
        assert any(r.get("command") == "push" and r.get("run_id") == 1 for r in records)


def test_sigterm_lets_a_running_command_finish(tmp_path: Path) -> None:
    recorder = Recorder(tmp_path / "push", sleep=0.5)
    config = config_for(recorder.command_yaml("push", runOnStart=True), shutdownGrace="2s")
    with start_daemon(tmp_path, config) as daemon:
        recorder.wait_starts(1)
        daemon.signal(signal.SIGTERM)
        assert daemon.wait(2 + 10) == 0, daemon.log_text()
        [end] = recorder.ends()
        assert end["exit_code"] == 0
        assert not recorder.records("signal")
        log_text = daemon.log_text()
        assert "shutting down: 1 command(s) running" in log_text
        assert "push: run 1 succeeded" in log_text
        assert "shutdown grace" not in log_text


def test_sigterm_terminates_a_command_that_outlives_the_grace(tmp_path: Path) -> None:
    recorder = Recorder(tmp_path / "push", blocking=True)
    config = config_for(recorder.command_yaml("push", runOnStart=True), shutdownGrace="2s")
    with start_daemon(tmp_path, config) as daemon:
        [run] = recorder.wait_starts(1)
        began = time.monotonic()
        daemon.signal(signal.SIGTERM)
        assert daemon.wait(2 + 10) == 0, daemon.log_text()
        took = time.monotonic() - began
        assert took >= 2 - 0.2, f"the grace was not given: exited after {took:.2f}s"
        assert recorder.records("signal"), "the command did not get SIGTERM"
        assert not recorder.ends()
        assert pid_gone(run["pid"])
        daemon.wait_for_log("shutdown grace of 2s is over; terminating push")


def test_sigterm_drops_a_pending_delay(tmp_path: Path) -> None:
    recorder = Recorder(tmp_path / "push")
    config = config_for(recorder.command_yaml("push", delay="30s"), shutdownGrace="20s")
    good = fixture_body(TAG_V1)
    with start_daemon(tmp_path, config) as daemon:
        assert daemon.post("/trigger/push", good, REGISTRY_HEADERS)[0] == 200
        began = time.monotonic()
        daemon.signal(signal.SIGTERM)
        assert daemon.wait(10) == 0, daemon.log_text()
        # Nothing runs, so neither the delay nor the grace is waited out.
        assert time.monotonic() - began < 5
        assert not recorder.starts()
        assert "push: stopped with 1 pending triggers not run" in daemon.log_text()


def test_shutdown_refuses_triggers_on_open_connections(tmp_path: Path) -> None:
    recorder = Recorder(tmp_path / "push")
    config = config_for(recorder.command_yaml("push", delay="100ms"))
    good = fixture_body(TAG_V1)
    with start_daemon(tmp_path, config) as daemon:
        # A registry keeps its connection open between notifications. During shutdown the
        # server answers one more request on each open connection, then closes it.
        probe, registry = daemon.connection(), daemon.connection()
        try:
            for connection, path in ((probe, "/ready"), (registry, "/health")):
                connection.request("GET", path)
                response = connection.getresponse()
                assert response.status == 200
                response.read()
            daemon.signal(signal.SIGTERM)
            daemon.wait_for_log("shutting down")
            probe.request("GET", "/ready")
            response = probe.getresponse()
            assert (response.status, response.read()) == (503, b"shutting down\n")
            # Accepting it now would lose it (the runners are stopping): the registry must
            # hear a non-2xx answer and redeliver it to the next instance.
            registry.request("POST", "/trigger/push", good, REGISTRY_HEADERS)
            response = registry.getresponse()
            assert response.status == 503, response.read()
            assert response.getheader("retry-after") == "1"
        finally:
            probe.close()
            registry.close()
        assert daemon.wait(10) == 0, daemon.log_text()
        assert not recorder.starts()


def test_a_second_signal_stops_at_once_and_kills_the_command(tmp_path: Path) -> None:
    recorder = Recorder(tmp_path / "push", blocking=True)
    config = config_for(recorder.command_yaml("push", runOnStart=True), shutdownGrace="20s")
    with start_daemon(tmp_path, config) as daemon:
        [run] = recorder.wait_starts(1)
        daemon.signal(signal.SIGTERM)
        daemon.wait_for_log("SIGTERM received")
        daemon.signal(signal.SIGINT)
        # Not a clean shutdown: exit 1, well before the 20 s grace, and no process left.
        assert daemon.wait(10) == 1, daemon.log_text()
        assert "SIGINT again: stopping now" in daemon.log_text()
        assert recorder.records("signal"), "the command did not get SIGTERM"
        assert pid_gone(run["pid"])


def test_a_disabled_command_ignores_triggers(tmp_path: Path) -> None:
    recorder = Recorder(tmp_path / "push")
    # shutdownGrace: a disabled runner holds up shutdown for the whole grace (see below).
    config = config_for(recorder.command_yaml("push", disable=True), shutdownGrace="1s")
    good = fixture_body(TAG_V1)
    with start_daemon(tmp_path, config) as daemon:
        status, _, answer = daemon.post("/trigger/push", good, REGISTRY_HEADERS)
        assert (status, json.loads(answer)) == (200, {"accepted": 0, "ignored": 1})
        assert daemon.post("/run/push")[0] == 409
        assert daemon.status()["push"]["state"] == "disabled"
        assert not recorder.starts()


def test_a_disabled_command_does_not_hold_up_shutdown(tmp_path: Path) -> None:
    recorder = Recorder(tmp_path / "push")
    config = config_for(recorder.command_yaml("push", disable=True), shutdownGrace="2s")
    with start_daemon(tmp_path, config) as daemon:
        began = time.monotonic()
        daemon.signal(signal.SIGTERM)
        assert daemon.wait(15) == 0, daemon.log_text()
        took = time.monotonic() - began
        assert "grace of 2s is over" not in daemon.log_text()
        assert took < 1.5, f"shutdown took {took:.2f}s with nothing running"


# --- commands ----------------------------------------------------------------------------


def test_missing_binary_fails_the_run_and_the_daemon_keeps_serving(tmp_path: Path) -> None:
    recorder = Recorder(tmp_path / "ok")
    missing = tmp_path / "no-such-binary"
    broken = f'  - {{"name": "broken", "cmd": "{missing}", "delay": "100ms"}}\n'
    config = config_for(broken, recorder.command_yaml("ok", delay="100ms"))
    good = fixture_body(TAG_V1)
    with start_daemon(tmp_path, config) as daemon:
        status, _, answer = daemon.post("/trigger/broken", good, REGISTRY_HEADERS)
        assert (status, json.loads(answer)["accepted"]) == (200, 1)
        daemon.wait_for_log(
            re.compile(
                r"broken: run 1 failed \(cannot start " + re.escape(str(missing)) + r": No such"
            )
        )
        assert daemon.get("/health")[0] == 200
        last = daemon.status()["broken"]["lastRun"]
        assert last["ok"] is False and "cannot start" in last["error"]

        assert daemon.post("/trigger/ok", good, REGISTRY_HEADERS)[0] == 200
        assert recorder.wait_starts(1)[0]["reason"] == "event"
        # The broken command runs again on the next trigger (and fails again).
        assert daemon.post("/run/broken")[0] == 202
        daemon.wait_for_log("broken: run 2 failed (cannot start")
        assert daemon.returncode is None


def test_commands_run_in_parallel(tmp_path: Path) -> None:
    first = Recorder(tmp_path / "first", blocking=True)
    second = Recorder(tmp_path / "second", blocking=True)
    config = config_for(
        first.command_yaml("first", runOnStart=True),
        second.command_yaml("second", runOnStart=True),
    )
    with start_daemon(tmp_path, config) as daemon:
        wait_until(
            lambda: first.running() and second.running(),
            timeout=10,
            message=lambda: f"not both running: {first.records()} {second.records()}",
        )
        states = {name: c["state"] for name, c in daemon.status().items()}
        assert states == {"first": "running", "second": "running"}
        first.release()
        first.wait_ends(1)
        assert second.running(), "releasing one command ended the other"
        second.release()
        second.wait_ends(1)


def test_a_crafted_path_cannot_forge_a_log_line(tmp_path: Path) -> None:
    recorder = Recorder(tmp_path / "push")
    with start_daemon(tmp_path, config_for(recorder.command_yaml("push"))) as daemon:
        status, _, _ = daemon.post("/trigger/x%0A2026-01-01T00:00:00.000Z%20INFO%20forged", b"{}")
        assert status == 404
        daemon.wait_for_log("refused")
        assert not any(line.startswith("2026-01-01") for line in daemon.log_text().splitlines())
