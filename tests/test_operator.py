"""What an operator meets, against a real ``s3syncer serve``: auth from curl, probes through
shutdown, ``check``'s summary, manual-only commands and the reload warnings."""

from __future__ import annotations

import json
import re
import shlex
import signal
import socket
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from conftest import FIXTURES
from daemon import Daemon, Recorder, run_s3syncer, spawn_s3syncer, start_daemon
from waiting import free_port, wait_until

pytestmark = pytest.mark.integration

TOKEN = "operator-token-1"
REGISTRY_HEADERS = {"Content-Type": "application/vnd.docker.distribution.events.v1+json"}
BEARER = {"Authorization": f"Bearer {TOKEN}"}
RELOADED = re.compile(r"reloaded |reload: no command changed")
TAGGED_PUSH = (FIXTURES / "02-push-manifest-tag-v1.json").read_bytes()


def config_for(*commands: str, **top: Any) -> str:
    """A config file: top-level keys (as JSON values, which YAML reads) and command items."""
    lines = [f"{key}: {json.dumps(value)}\n" for key, value in top.items()]
    return "".join(lines) + "commands:\n" + "".join(commands)


def curl(*args: str) -> subprocess.CompletedProcess[str]:
    """Run curl as an operator would, failing on HTTP errors (``-f``)."""
    return subprocess.run(
        ["curl", "-sS", "-f", "--max-time", "10", *args],
        capture_output=True,
        text=True,
        check=False,
        timeout=20,
    )


def challenges(daemon: Daemon, path: str) -> tuple[int, list[str]]:
    """The status and every ``WWW-Authenticate`` header, in order, of an unauthenticated GET."""
    connection = daemon.connection()
    try:
        connection.request("GET", path)
        response = connection.getresponse()
        response.read()
        found = [v for k, v in response.getheaders() if k.lower() == "www-authenticate"]
        return response.status, found
    finally:
        connection.close()


# --- auth --------------------------------------------------------------------------------------


def test_browsers_get_a_basic_challenge_first_and_curl_gets_in(tmp_path: Path) -> None:
    recorder = Recorder(tmp_path / "push")
    config = config_for(recorder.command_yaml("push", delay="100ms"), auth={"token": TOKEN})
    with start_daemon(tmp_path, config) as daemon:
        for path in ("/", "/status"):
            status, found = challenges(daemon, path)
            assert status == 401
            # Separate headers, Basic first: what Chromium needs to offer credentials.
            assert [v.split()[0] for v in found] == ["Basic", "Bearer"], found
            assert 'realm="s3syncer"' in found[0]
        page = curl("-u", f"anyone:{TOKEN}", f"{daemon.url}/")
        assert page.returncode == 0, page.stderr
        assert "<h1>s3syncer</h1>" in page.stdout
        document = curl("-u", f"x:{TOKEN}", f"{daemon.url}/status")
        assert json.loads(document.stdout)["commands"][0]["name"] == "push"
        manual = curl("-u", f"x:{TOKEN}", "-X", "POST", f"{daemon.url}/run/push")
        assert manual.returncode == 0, manual.stderr
        recorder.wait_starts(1)
        by_cli = run_s3syncer(["run", "push", "--url", daemon.url], env={"S3SYNCER_TOKEN": TOKEN})
        assert by_cli.returncode == 0, by_cli.stderr
        recorder.wait_starts(2)
        wrong = curl("-u", "x:wrong", f"{daemon.url}/status")
        assert wrong.returncode == 22  # curl -f: the server answered 4xx
        assert TOKEN not in daemon.log_text()


# --- shutdown ----------------------------------------------------------------------------------


def _refused(daemon: Daemon) -> bool:
    with socket.socket() as probe:
        probe.settimeout(2)
        return probe.connect_ex(("127.0.0.1", daemon.port)) != 0


def test_probes_answer_through_the_whole_grace_then_the_listener_closes(tmp_path: Path) -> None:
    recorder = Recorder(tmp_path / "push", blocking=True)
    config = config_for(
        recorder.command_yaml("push", delay="100ms"), auth={"token": TOKEN}, shutdownGrace="60s"
    )
    with start_daemon(tmp_path, config) as daemon:
        assert daemon.post("/run/push", b"", BEARER)[0] == 202
        recorder.wait_starts(1)
        daemon.signal(signal.SIGTERM)
        daemon.wait_for_log("shutting down: 1 command(s) running")
        # Several rounds, each on new connections as a kubelet and a registry make them.
        for _ in range(3):
            assert daemon.get("/health")[:3:2] == (200, b"OK\n")
            assert daemon.get("/ready")[0] == 503
            for path, body in (("/trigger/push", TAGGED_PUSH), ("/run/push", b"")):
                status, headers, _ = daemon.post(path, body, {**REGISTRY_HEADERS, **BEARER})
                assert (status, headers.get("retry-after")) == (503, "1"), path
        assert daemon.returncode is None and not _refused(daemon)
        recorder.release()
        assert daemon.wait(15) == 0, daemon.log_text()
        assert _refused(daemon)
    assert len(recorder.starts()) == 1 and len(recorder.ends()) == 1


# --- check and manual-only commands ------------------------------------------------------------


def test_check_quotes_argv_and_names_a_manual_only_command(tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    args = ["it's here", "two words", "plain", ""]
    by_hand = {"name": "by-hand", "cmd": "/bin/echo", "args": args, "events": []}
    hourly = {"name": "hourly", "cmd": "true", "events": [], "reconcile": "1h"}
    config.write_text(config_for(f"  - {json.dumps(by_hand)}\n", f"  - {json.dumps(hourly)}\n"))
    done = run_s3syncer(["check", "--config", str(config)])
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    [argv_line] = [line for line in lines if line.startswith("  by-hand: ")]
    # A shell reads back exactly the argv the daemon runs.
    assert shlex.split(argv_line.removeprefix("  by-hand: ")) == ["/bin/echo", *args]
    assert "    on: no events; manual runs only (s3syncer run by-hand)" in lines
    assert "    on: no events" in lines  # hourly: reconcile starts it


def test_a_manual_only_command_runs_only_when_asked(tmp_path: Path) -> None:
    recorder = Recorder(tmp_path / "by-hand")
    config = config_for(recorder.command_yaml("by-hand", delay="50ms", events=[]))
    with start_daemon(tmp_path, config) as daemon:
        status, _, body = daemon.post("/trigger/by-hand", TAGGED_PUSH, REGISTRY_HEADERS)
        assert (status, json.loads(body)) == (200, {"accepted": 0, "ignored": 1})
        assert daemon.status()["by-hand"]["state"] == "idle"
        done = run_s3syncer(["run", "by-hand", "--url", daemon.url])
        assert done.returncode == 0, done.stderr
        [run] = recorder.wait_starts(1)
        assert run["reason"] == "manual"


# --- reload warnings ---------------------------------------------------------------------------


def _reload(daemon: Daemon, config: Path, text: str, start: int) -> int:
    config.write_text(text)
    daemon.signal(signal.SIGHUP)
    return daemon.wait_for_log(RELOADED, start=start).end()


def test_the_listen_warning_only_when_the_effective_address_changes(tmp_path: Path) -> None:
    command = '  - {name: push, cmd: "true"}\n'
    config = tmp_path / "config.yaml"
    port = free_port()
    config.write_text(f'listen: "127.0.0.1:{port}"\ncommands:\n{command}')

    # --listen wins over the file: editing the file's listen changes nothing.
    overridden = ["serve", "--config", str(config), "--listen", "127.0.0.1:0"]
    with spawn_s3syncer(tmp_path, overridden) as daemon:
        end = _reload(daemon, config, f'listen: "127.0.0.1:{free_port()}"\ncommands:\n{command}', 0)
        _reload(daemon, config, f"commands:\n{command}", end)
        assert "listen changed" not in daemon.log_text()

    # From the file alone: the same edit moves the address, which takes a restart.
    config.write_text(f'listen: "127.0.0.1:{port}"\ncommands:\n{command}')
    with spawn_s3syncer(tmp_path, ["serve", "--config", str(config)]) as daemon:
        assert daemon.port == port
        end = _reload(daemon, config, f'listen: "127.0.0.1:{port}"\ncommands:\n{command}', 0)
        assert "listen changed" not in daemon.log_text()  # a reload that keeps the address
        text = f'listen: "127.0.0.1:{free_port()}"\ncommands:\n{command}'
        end = _reload(daemon, config, text, end)
        assert "listen changed; that takes a restart" in daemon.log_text()


# --- run history, lag and output ---------------------------------------------------------------


def _status(daemon: Daemon) -> dict[str, Any]:
    code, _, body = daemon.get("/status", BEARER)
    assert code == 200, body
    return {c["name"]: c for c in json.loads(body)["commands"]}


def _wait_status(
    daemon: Daemon, name: str, check: Callable[[dict[str, Any]], bool], timeout: float = 20.0
) -> dict[str, Any]:
    def ready() -> dict[str, Any] | None:
        command: dict[str, Any] = _status(daemon)[name]
        return command if check(command) else None

    found: dict[str, Any] = wait_until(
        ready, timeout=timeout, message=lambda: f"{_status(daemon)[name]}"
    )
    return found


def _lag_metric(daemon: Daemon, name: str) -> float:
    _, _, body = daemon.get("/metrics")
    for line in body.decode().splitlines():
        if line.startswith(f's3syncer_pending_event_age_seconds{{command="{name}"}} '):
            return float(line.split()[-1])
    raise AssertionError(f"no lag metric for {name}")


def test_run_ids_and_history_go_on_across_restarts_with_state_dir(tmp_path: Path) -> None:
    state = tmp_path / "state"
    command = '  - {name: push, cmd: /bin/sh, args: [-c, "echo ok"], delay: 50ms}\n'
    config = config_for(command, auth={"token": TOKEN}, stateDir=str(state))
    with start_daemon(tmp_path, config) as daemon:
        assert daemon.post("/run/push", b"", BEARER)[0] == 202
        _wait_status(daemon, "push", lambda c: c["runs"] == 1)
        assert daemon.post("/run/push", b"", BEARER)[0] == 202
        _wait_status(daemon, "push", lambda c: c["runs"] == 2)
    assert (state / "history" / "push.json").is_file()
    with start_daemon(tmp_path, config) as daemon:
        before = _status(daemon)["push"]
        assert [run["runId"] for run in before["recentRuns"]] == [2, 1]
        assert before["lastSuccess"] is not None and before["runs"] == 0
        assert daemon.post("/run/push", b"", BEARER)[0] == 202
        after = _wait_status(daemon, "push", lambda c: c["runs"] == 1)
        assert after["lastRun"]["runId"] == 3
        assert [run["runId"] for run in after["recentRuns"]] == [3, 2, 1]
        daemon.wait_for_log("push: run 3 succeeded")
    # Without stateDir, a restart starts over: there is nowhere to keep the count.
    plain = config_for(command, auth={"token": TOKEN})
    with start_daemon(tmp_path, plain) as daemon:
        assert daemon.post("/run/push", b"", BEARER)[0] == 202
        assert _wait_status(daemon, "push", lambda c: c["runs"] == 1)["lastRun"]["runId"] == 1


def test_a_stuck_command_shows_its_waiting_events_and_their_age(tmp_path: Path) -> None:
    fixed = tmp_path / "fixed"
    command = {
        "name": "stuck",
        "cmd": "/bin/sh",
        "args": ["-c", f"test -e {fixed}"],
        "delay": "50ms",
    }
    config = config_for(
        f"  - {json.dumps(command)}\n", auth={"token": TOKEN}, stateDir=str(tmp_path / "s")
    )
    with start_daemon(tmp_path, config) as daemon:
        assert _lag_metric(daemon, "stuck") == 0.0
        headers = {**REGISTRY_HEADERS, **BEARER}
        assert daemon.post("/trigger/stuck", TAGGED_PUSH, headers)[0] == 200
        failed = _wait_status(daemon, "stuck", lambda c: c["failures"] == 1)
        # Nothing pending to trigger a run, but the event is still not mirrored.
        assert failed["state"] == "idle" and failed["pendingTriggers"] == 0
        assert failed["pendingEvents"] == 1
        aged = _wait_status(daemon, "stuck", lambda c: c["pendingEventAgeSeconds"] >= 1.5)
        assert aged["pendingEvents"] == 1
        assert _lag_metric(daemon, "stuck") >= aged["pendingEventAgeSeconds"]
        page = daemon.get("/", BEARER)[2].decode()
        assert "<dt>events waiting</dt><dd>1, oldest accepted " in page
        assert "<dt>last success</dt><dd>never</dd>" in page

        fixed.touch()
        assert daemon.post("/run/stuck", b"", BEARER)[0] == 202
        done = _wait_status(daemon, "stuck", lambda c: c["runs"] == 2)
        assert (done["pendingEvents"], done["pendingEventAgeSeconds"]) == (0, 0.0)
        assert _lag_metric(daemon, "stuck") == 0.0
        assert [run["ok"] for run in done["recentRuns"]] == [True, False]


def test_the_lag_goes_on_across_a_restart_instead_of_starting_over(tmp_path: Path) -> None:
    # A daemon restarted (a deploy, a crash loop) while the mirror is behind must not
    # hide how far behind it is: the alert on the lag would never fire.
    command = {"name": "stuck", "cmd": "/bin/false", "delay": "50ms"}
    config = config_for(
        f"  - {json.dumps(command)}\n", auth={"token": TOKEN}, stateDir=str(tmp_path / "s")
    )
    with start_daemon(tmp_path, config) as daemon:
        headers = {**REGISTRY_HEADERS, **BEARER}
        assert daemon.post("/trigger/stuck", TAGGED_PUSH, headers)[0] == 200
        aged = _wait_status(
            daemon, "stuck", lambda c: c["failures"] == 1 and c["pendingEventAgeSeconds"] >= 1.5
        )
    with start_daemon(tmp_path, config) as daemon:
        after = _status(daemon)["stuck"]
        assert after["pendingEvents"] == 1
        assert after["pendingEventAgeSeconds"] >= aged["pendingEventAgeSeconds"]
        assert _lag_metric(daemon, "stuck") >= aged["pendingEventAgeSeconds"]
        daemon.wait_for_log("stuck: run 2 failed")  # the recovered run: the event still waits
        assert _status(daemon)["stuck"]["pendingEventAgeSeconds"] >= aged["pendingEventAgeSeconds"]


def test_output_keeps_its_order_in_the_log_and_the_live_tail(tmp_path: Path) -> None:
    release = tmp_path / "release"
    script = (
        "for i in 1 2 3 4 5 6 7 8; do echo out$i; echo err$i >&2; done; "
        f"while [ ! -e {release} ]; do sleep 0.05; done; echo done"
    )
    command = {"name": "talk", "cmd": "/bin/sh", "args": ["-c", script], "runOnStart": True}
    config = config_for(f"  - {json.dumps(command)}\n", auth={"token": TOKEN})
    expected = "".join(f"out{i}\nerr{i}\n" for i in range(1, 9))
    with start_daemon(tmp_path, config) as daemon:
        running = _wait_status(
            daemon, "talk", lambda c: (c["currentRun"] or {}).get("outputTail") == expected
        )
        assert running["state"] == "running"
        page = daemon.get("/", BEARER)[2].decode()
        assert "output of run #1 so far" in page and expected in page
        release.touch()
        last = _wait_status(daemon, "talk", lambda c: c["runs"] == 1)["lastRun"]
        assert last["outputTail"] == expected + "done\n"
        logged = [
            line.split("talk | ", 1)[1]
            for line in daemon.log_text().splitlines()
            if "talk | " in line
        ]
        assert logged == [*expected.splitlines(), "done"]
