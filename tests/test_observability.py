"""What an operator sees of a REAL ``s3syncer serve``: /metrics, /status, the page, the logs.

Every test starts the daemon with :mod:`daemon`, makes runs happen (a :class:`daemon.Recorder`
or a small ``sh -c`` script) and waits on conditions with bounds, never on a fixed sleep.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import re
import threading
import time
from collections.abc import Callable
from html.parser import HTMLParser
from pathlib import Path
from typing import Any, get_args

import pytest
from prometheus_client.parser import text_string_to_metric_families

from conftest import FIXTURES
from daemon import Daemon, Recorder, start_daemon
from s3syncer.model.run import Reason
from s3syncer.web.page import PAGE_SCRIPT
from waiting import free_port, wait_until

pytestmark = pytest.mark.integration

TOKEN = "tok-9f1c3e7a-observability-s3cr3t"
BEARER = {"Authorization": f"Bearer {TOKEN}"}
REGISTRY_HEADERS = {
    "User-Agent": "Go-http-client/1.1",
    "Content-Type": "application/vnd.docker.distribution.events.v1+json",
    **BEARER,
}
TAGGED = (FIXTURES / "05-push-manifest-tag-latest.json").read_bytes()  # matches: accepted
BLOB = (FIXTURES / "00-push-blob-layer.json").read_bytes()  # no tag: ignored
AUTH = {"token": TOKEN}

RUN_KEYS = {
    "runId",
    "reason",
    "start",
    "end",
    "durationSeconds",
    "triggers",
    "events",
    "ok",
    "outcome",
    "exitCode",
    "signal",
    "timedOut",
    "error",
    "outputTail",
    "beforeRestart",  # read back from the history after a restart: no output kept
}
COMMAND_KEYS = {
    "name",
    "state",
    "pendingTriggers",
    "pendingEvents",
    "pendingEventAgeSeconds",
    "pendingFullSync",
    "lastSuccess",
    "lastFullPass",
    "recentRuns",
    "nextRun",
    "currentRun",
    "lastRun",
    "nextReconcile",
    "nextSchedule",
    "runs",
    "failures",
}


def config_for(*commands: str, **top: Any) -> str:
    """A config file: top-level keys (as JSON values, which YAML reads) and command items."""
    lines = [f"{key}: {json.dumps(value)}\n" for key, value in top.items()]
    return "".join(lines) + "commands:\n" + "".join(commands)


def shell_command(name: str, script: str, **options: Any) -> str:
    """A ``commands:`` item running ``/bin/sh -c script`` (the test's script, not event data)."""
    item: dict[str, Any] = {"name": name, "cmd": "/bin/sh", "args": ["-c", script]}
    item.update(options)
    return f"  - {json.dumps(item)}\n"


def run_now(daemon: Daemon, name: str) -> None:
    """Ask for a manual run (``POST /run/NAME`` with the token)."""
    status, _, body = daemon.post(f"/run/{name}", b"", BEARER)
    assert status == 202, body


def authed_status(daemon: Daemon) -> dict[str, dict[str, Any]]:
    """``GET /status`` with the token, keyed by command name."""
    status, headers, body = daemon.get("/status", BEARER)
    assert status == 200, body
    assert headers["content-type"].startswith("application/json")
    document = json.loads(body)
    assert set(document) == {"commands"}
    return {command["name"]: command for command in document["commands"]}


def wait_status(
    daemon: Daemon, name: str, check: Callable[[dict[str, Any]], bool], timeout: float = 10.0
) -> dict[str, Any]:
    """Wait until command ``name``'s ``/status`` entry passes ``check``; return it."""
    seen: list[dict[str, Any]] = []

    def ready() -> dict[str, Any] | None:
        entry = authed_status(daemon)[name]
        seen[:] = [entry]
        return entry if check(entry) else None

    return wait_until(ready, timeout=timeout, message=lambda: f"{name}: last status {seen}")


def since(iso: str | None) -> float:
    """Seconds since an ISO time from ``/status`` (negative: in the future)."""
    assert iso is not None
    return time.time() - dt.datetime.fromisoformat(iso).timestamp()


# --- /metrics ----------------------------------------------------------------------------

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(daemon: Daemon) -> tuple[Samples, dict[str, str]]:
    """``GET /metrics`` WITHOUT a token, parsed: samples by (name, labels), and family types."""
    status, headers, body = daemon.get("/metrics")
    assert status == 200, body
    assert headers["content-type"].startswith("text/plain")
    samples: Samples = {}
    types: dict[str, str] = {}
    for family in text_string_to_metric_families(body.decode()):
        types[family.name] = family.type
        for sample in family.samples:
            samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return samples, types


def value(samples: Samples, name: str, **labels: str) -> float | None:
    """One sample's value, or None if the series does not exist."""
    return samples.get((name, frozenset(labels.items())))


def wait_metric(
    daemon: Daemon, name: str, expected: float, timeout: float = 10.0, **labels: str
) -> Samples:
    """Wait until a sample has ``expected``; return the whole scrape."""
    seen: list[float | None] = []

    def ready() -> Samples | None:
        samples, _ = scrape(daemon)
        seen[:] = [value(samples, name, **labels)]
        return samples if seen[0] == expected else None

    return wait_until(
        ready, timeout=timeout, message=lambda: f"{name}{labels} is {seen}, not {expected}"
    )


def assert_fresh(daemon: Daemon, commands: tuple[str, ...]) -> None:
    """Check a fresh daemon's metrics: the types, and every command's series at zero."""
    samples, types = scrape(daemon)
    assert types["s3syncer_triggers"] == "counter"
    assert types["s3syncer_runs"] == "counter"
    assert types["s3syncer_run_duration_seconds"] == "histogram"
    for gauge in ("last_success_timestamp_seconds", "running", "pending_triggers"):
        assert types[f"s3syncer_{gauge}"] == "gauge"
    for name in commands:
        for outcome in ("accepted", "ignored", "rejected"):
            assert value(samples, "s3syncer_triggers_total", command=name, outcome=outcome) == 0
        assert value(samples, "s3syncer_running", command=name) == 0
        assert value(samples, "s3syncer_pending_triggers", command=name) == 0
        assert value(samples, "s3syncer_last_success_timestamp_seconds", command=name) == 0
        assert value(samples, "s3syncer_run_duration_seconds_count", command=name) == 0
        # Every run series exists at 0, so increase() sees the first failure.
        for reason in get_args(Reason):
            for result in ("success", "failure"):
                labels = {"command": name, "reason": reason, "result": result}
                assert value(samples, "s3syncer_runs_total", **labels) == 0, labels
    runs_series = [key for key in samples if key[0] == "s3syncer_runs_total"]
    assert len(runs_series) == len(commands) * len(get_args(Reason)) * 2
    # The process's start time: an alert tells "no success yet" from "just started".
    started = value(samples, "process_start_time_seconds")
    assert started is not None and 0 <= time.time() - started < 60


def test_metrics_follow_triggers_and_runs(tmp_path: Path) -> None:
    good = Recorder(tmp_path / "good", blocking=True)
    bad = Recorder(tmp_path / "bad", exit_code=1)
    config = config_for(
        good.command_yaml("good", delay="150ms"),
        bad.command_yaml("bad", delay="50ms"),
        shell_command("off", "exit 0", disable=True),
        auth=AUTH,
        shutdownGrace="2s",
    )
    with start_daemon(tmp_path, config) as daemon:
        # Every command's series exist at zero before anything happens; no token needed.
        assert_fresh(daemon, ("good", "bad", "off"))

        # One accepted and one ignored event; a disabled command ignores; a bad body is rejected.
        assert daemon.post("/trigger/good", TAGGED, REGISTRY_HEADERS)[0] == 200
        assert daemon.post("/trigger/good", BLOB, REGISTRY_HEADERS)[0] == 200
        assert daemon.post("/trigger/off", TAGGED, REGISTRY_HEADERS)[0] == 200
        assert daemon.post("/trigger/good", b"not json", REGISTRY_HEADERS)[0] == 400
        good.wait_starts(1)
        samples, _ = scrape(daemon)
        triggers = {
            (dict(labels)["command"], dict(labels)["outcome"]): count
            for (name, labels), count in samples.items()
            if name == "s3syncer_triggers_total" and count
        }
        assert triggers == {
            ("good", "accepted"): 1,
            ("good", "ignored"): 1,
            ("good", "rejected"): 1,
            ("off", "ignored"): 1,
        }
        # Running is set before the process starts; nothing pending, no success yet.
        assert value(samples, "s3syncer_running", command="good") == 1
        assert value(samples, "s3syncer_pending_triggers", command="good") == 0
        assert value(samples, "s3syncer_last_success_timestamp_seconds", command="good") == 0

        # A trigger during the run is pending until the follow-up starts.
        assert daemon.post("/trigger/good", TAGGED, REGISTRY_HEADERS)[0] == 200
        wait_metric(daemon, "s3syncer_pending_triggers", 1, command="good")
        released_at = time.time()
        good.release()
        good.wait_ends(2)
        samples = wait_metric(
            daemon, "s3syncer_runs_total", 2, command="good", reason="event", result="success"
        )
        assert value(samples, "s3syncer_running", command="good") == 0
        assert value(samples, "s3syncer_pending_triggers", command="good") == 0
        assert value(samples, "s3syncer_run_duration_seconds_count", command="good") == 2
        duration_sum = value(samples, "s3syncer_run_duration_seconds_sum", command="good")
        assert duration_sum is not None and duration_sum > 0
        # The +Inf bucket holds every run; the buckets go up to hours.
        inf_bucket = value(
            samples, "s3syncer_run_duration_seconds_bucket", command="good", le="+Inf"
        )
        assert inf_bucket == 2
        assert value(samples, "s3syncer_run_duration_seconds_bucket", command="good", le="7200.0")
        last_success = value(samples, "s3syncer_last_success_timestamp_seconds", command="good")
        assert last_success is not None and released_at <= last_success <= time.time()

        # A failed run counts as a failure and leaves the last success alone.
        run_now(daemon, "bad")
        samples = wait_metric(
            daemon, "s3syncer_runs_total", 1, command="bad", reason="manual", result="failure"
        )
        labels = {"command": "bad", "reason": "manual", "result": "success"}
        assert value(samples, "s3syncer_runs_total", **labels) == 0
        assert value(samples, "s3syncer_last_success_timestamp_seconds", command="bad") == 0
        assert value(samples, "s3syncer_run_duration_seconds_count", command="bad") == 1
        assert value(samples, "s3syncer_running", command="bad") == 0
        # The other command's success is untouched by it.
        after = value(samples, "s3syncer_last_success_timestamp_seconds", command="good")
        assert after == last_success


# --- /status -----------------------------------------------------------------------------


def test_status_shows_states_and_the_last_run(tmp_path: Path) -> None:
    work = Recorder(tmp_path / "work", blocking=True)
    config = config_for(
        work.command_yaml("work", delay="50ms", reconcile="1h", runAt="0 0 1 1 *"),
        shell_command("slow", "exit 0", delay="60s"),
        shell_command("off", "exit 0", disable=True),
        auth=AUTH,
        shutdownGrace="2s",
    )
    with start_daemon(tmp_path, config) as daemon:
        # /status needs the token.
        assert daemon.get("/status")[0] == 401
        commands = authed_status(daemon)
        assert list(commands) == ["work", "slow", "off"]
        for entry in commands.values():
            assert set(entry) == COMMAND_KEYS, entry
        initial = commands["work"]
        assert initial["state"] == "idle"
        assert (initial["pendingTriggers"], initial["runs"], initial["failures"]) == (0, 0, 0)
        assert initial["lastRun"] is None
        assert -3600 - 5 < since(initial["nextReconcile"]) < -3600 + 5
        tick = dt.datetime.fromisoformat(initial["nextSchedule"]).astimezone()
        assert (tick.month, tick.day, tick.hour, tick.minute) == (1, 1, 0, 0)
        assert since(initial["nextSchedule"]) < 0
        assert commands["slow"]["nextReconcile"] is None
        assert commands["slow"]["nextSchedule"] is None
        assert commands["off"]["state"] == "disabled"

        # waiting: a trigger in its quiet period.
        assert daemon.post("/trigger/slow", TAGGED, REGISTRY_HEADERS)[0] == 200
        slow = wait_status(daemon, "slow", lambda c: c["state"] == "waiting")
        assert slow["pendingTriggers"] == 1 and slow["lastRun"] is None
        assert slow["pendingEvents"] == 1 and 0 <= slow["pendingEventAgeSeconds"] < 10
        assert 50 < -since(slow["nextRun"]) <= 60  # delay 60s from the trigger
        assert initial["nextRun"] is None and initial["recentRuns"] == []

        # running: no last run until it ends.
        run_now(daemon, "work")
        work.wait_starts(1)
        running = authed_status(daemon)["work"]
        assert running["state"] == "running"
        assert running["lastRun"] is None
        current = running["currentRun"]
        assert (current["runId"], current["reason"]) == (1, "manual")
        assert set(current) == {"runId", "reason", "start", "triggers", "events", "outputTail"}
        work.release()
        done = wait_status(daemon, "work", lambda c: c["runs"] == 1)
        assert done["state"] == "idle" and done["failures"] == 0
        last = done["lastRun"]
        assert set(last) == RUN_KEYS
        assert last["runId"] == 1 and last["reason"] == "manual"
        assert (last["triggers"], last["events"]) == (1, 0)
        assert (last["ok"], last["exitCode"], last["signal"]) == (True, 0, None)
        assert (last["timedOut"], last["error"], last["outputTail"]) == (False, None, "")
        start = dt.datetime.fromisoformat(last["start"])
        end = dt.datetime.fromisoformat(last["end"])
        assert start.tzinfo is not None and start <= end
        assert abs((end - start).total_seconds() - last["durationSeconds"]) < 0.01
        assert 0 <= since(last["end"]) < 10
        assert done["lastSuccess"] == last["end"]
        assert done["recentRuns"] == [
            {
                "runId": 1,
                "reason": "manual",
                "start": last["start"],
                "durationSeconds": last["durationSeconds"],
                "ok": True,
                "result": "exit 0",
                "triggers": 1,
                "events": 0,
            }
        ]
        # Reconcile counts from the end of the last run.
        assert abs(since(done["nextReconcile"]) - (since(last["end"]) - 3600)) < 5


def test_status_shows_how_a_run_failed(tmp_path: Path) -> None:
    config = config_for(
        shell_command(
            "flaky", "echo failing; exit 3", delay="50ms", retry={"attempts": 1, "backoff": "60s"}
        ),
        shell_command("killed", "echo bye; kill -KILL $$", delay="50ms"),
        shell_command("late", "exec sleep 30", delay="50ms", timeout="300ms"),
        f'  - {{"name": "ghost", "cmd": "{tmp_path / "no-such-binary"}", "delay": "50ms"}}\n',
        auth=AUTH,
    )
    with start_daemon(tmp_path, config) as daemon:
        for name in ("flaky", "killed", "late", "ghost"):
            run_now(daemon, name)
        # backoff: a failed run with a retry to come; its output is kept.
        flaky = wait_status(daemon, "flaky", lambda c: c["runs"] == 1)
        assert (flaky["state"], flaky["failures"]) == ("backoff", 1)
        last = flaky["lastRun"]
        assert set(last) == RUN_KEYS
        assert (last["ok"], last["exitCode"], last["reason"]) == (False, 3, "manual")
        assert (last["signal"], last["timedOut"], last["error"]) == (None, False, None)
        assert last["outputTail"] == "failing\n"

        killed = wait_status(daemon, "killed", lambda c: c["runs"] == 1)["lastRun"]
        assert (killed["ok"], killed["exitCode"], killed["signal"]) == (False, None, 9)
        assert killed["outcome"] == "killed by signal 9"
        assert killed["outputTail"] == "bye\n"
        late = wait_status(daemon, "late", lambda c: c["runs"] == 1)["lastRun"]
        assert (late["ok"], late["timedOut"], late["exitCode"]) == (False, True, None)
        assert late["outcome"] == "timed out"
        assert 0.3 <= late["durationSeconds"] < 5
        ghost = wait_status(daemon, "ghost", lambda c: c["runs"] == 1)
        assert ghost["state"] == "idle" and ghost["failures"] == 1
        assert ghost["lastRun"]["ok"] is False
        assert ghost["lastRun"]["error"].startswith("cannot start ")
        assert ghost["lastRun"]["exitCode"] is None

        for entry in authed_status(daemon).values():
            assert set(entry) == COMMAND_KEYS
            assert entry["lastRun"] is None or set(entry["lastRun"]) == RUN_KEYS
        _, _, raw = daemon.get("/status", BEARER)
        assert TOKEN.encode() not in raw


# --- the page ------------------------------------------------------------------------------


class _Tags(HTMLParser):
    """Collects the start tags of a page and the text of each command's section."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[str] = []
        self.sections: dict[str, str] = {}
        self._section: str | None = None
        self._text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        if tag == "section":
            self._section = dict(attrs).get("class") or ""
            self._text = []

    def handle_endtag(self, tag: str) -> None:
        if tag == "section" and self._section is not None:
            text = " ".join(self._text)
            self.sections[text.split()[0]] = f"{self._section} :: {text}"
            self._section = None

    def handle_data(self, data: str) -> None:
        if self._section is not None and data.strip():
            self._text.append(data.strip())


def basic(user: str, password: str) -> dict[str, str]:
    """An HTTP Basic ``Authorization`` header."""
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


def test_page_marks_each_command_and_escapes_output(tmp_path: Path) -> None:
    busy = Recorder(tmp_path / "busy", blocking=True)
    config = config_for(
        shell_command("xss", "echo '<script>alert(1)</script>'", delay="50ms"),
        shell_command("broken", "echo '</pre><b>boom</b> & more' >&2; exit 1", delay="50ms"),
        busy.command_yaml("busy", runOnStart=True),
        shell_command("never", "exit 0", delay="60s"),
        auth=AUTH,
        shutdownGrace="2s",
    )
    with start_daemon(tmp_path, config) as daemon:
        assert daemon.get("/")[0] == 401  # test_operator checks the challenges
        assert daemon.get("/", basic("any", "wrong"))[0] == 401

        run_now(daemon, "xss")
        run_now(daemon, "broken")
        busy.wait_starts(1)
        wait_status(daemon, "xss", lambda c: c["runs"] == 1)
        wait_status(daemon, "broken", lambda c: c["runs"] == 1)

        status, headers, body = daemon.get("/", basic("any", TOKEN))
        assert status == 200, body
        assert headers["content-type"].startswith("text/html")
        html = body.decode()
        (tmp_path / "page.html").write_text(html, encoding="utf-8")  # to look at, on failure
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
        assert "&lt;/pre&gt;&lt;b&gt;boom&lt;/b&gt; &amp; more" in html
        assert html.count(f"<script>{PAGE_SCRIPT}</script>") == 1  # the page's own
        html = html.replace(f"<script>{PAGE_SCRIPT}</script>", "")
        assert "<script" not in html.lower()
        assert TOKEN not in html

        page = _Tags()
        page.feed(html)
        assert "script" not in page.tags and "b" not in page.tags
        assert page.tags.count("section") == 4
        marks = {name: text.split(" :: ")[0] for name, text in page.sections.items()}
        assert marks == {
            "xss": "cmd ok",
            "broken": "cmd failed",
            "busy": "cmd running",
            "never": "cmd idle",
        }
        assert "just now" in page.sections["xss"]
        assert "exit 1" in page.sections["broken"]
        assert "no run yet" in page.sections["never"]
        assert re.search(r'http-equiv=refresh content="\d+"', html)

        # Bearer works too, and the page is the same facts as /status.
        status, _, body = daemon.get("/", BEARER)
        assert status == 200
        assert "&lt;script&gt;" in body.decode()
        busy.release()


# --- logs ------------------------------------------------------------------------------------

TEXT_LINE = re.compile(
    r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z (DEBUG|INFO|WARNING|ERROR|CRITICAL) +\S.*"
)


def json_lines(daemon: Daemon) -> list[dict[str, Any]]:
    """Every log line, each of which must be one JSON object with time, level and message."""
    records = []
    for line in daemon.log_text().splitlines():
        record = json.loads(line)
        assert isinstance(record, dict), line
        assert {"time", "level", "message"} <= set(record), line
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", record["time"]), line
        assert record["level"] in ("debug", "info", "warning", "error", "critical"), line
        records.append(record)
    return records


def test_json_logs_carry_the_fields_of_each_run(tmp_path: Path) -> None:
    config = config_for(
        shell_command("push", "echo copied; echo careful >&2", delay="50ms"),
        shell_command("bad", "exit 4", delay="50ms"),
        shell_command("killed", "kill -KILL $$", delay="50ms"),
        auth=AUTH,
    )
    with start_daemon(tmp_path, config, args=["--log-format", "json"]) as daemon:
        assert daemon.post("/trigger/push", TAGGED, REGISTRY_HEADERS)[0] == 200
        run_now(daemon, "bad")
        run_now(daemon, "killed")
        daemon.wait_for_log('"message": "push: run 1 succeeded')
        daemon.wait_for_log('"message": "bad: run 1 failed')
        daemon.wait_for_log('"message": "killed: run 1 failed')
        # Refused requests are logged (rate-limited); the token in them never is.
        assert daemon.post("/trigger/push", TAGGED, {"Authorization": "Bearer wrong"})[0] == 401
        daemon.wait_for_log("refused '/trigger/push': 401")
        daemon.get("/", BEARER)
        daemon.get("/status", BEARER)
        records = json_lines(daemon)

        def one(pattern: str) -> dict[str, Any]:
            found = [r for r in records if re.search(pattern, r["message"])]
            assert len(found) == 1, (pattern, records)
            return found[0]

        assert one(r"^listening on http://")["level"] == "info"
        start = one(r"^push: run 1 started \(reason event, 1 event\)$")
        assert {k: start[k] for k in ("command", "run_id", "reason", "triggers", "events")} == {
            "command": "push",
            "run_id": 1,
            "reason": "event",
            "triggers": 1,
            "events": 1,
        }
        finish = one(r"^push: run 1 succeeded in \d+\.\d\ds$")
        assert (finish["command"], finish["run_id"], finish["reason"]) == ("push", 1, "event")
        assert finish["exit_code"] == 0 and finish["level"] == "info"
        assert isinstance(finish["duration"], float) and finish["duration"] >= 0
        # stdout and stderr share one pipe: one stream, in the order the command wrote.
        outputs = [r for r in records if r["message"].startswith("push | ")]
        assert [r["message"] for r in outputs] == ["push | copied", "push | careful"]
        fields = {(r["stream"], r["command"], r["run_id"]) for r in outputs}
        assert fields == {("output", "push", 1)}

        failed = one(r"^bad: run 1 failed \(exit 4\)")
        assert failed["level"] == "error"
        assert (failed["command"], failed["run_id"], failed["reason"]) == ("bad", 1, "manual")
        assert failed["exit_code"] == 4 and failed["duration"] >= 0
        # A run without an exit code still says so: exit_code is there, as null.
        killed = one(r"^killed: run 1 failed \(killed by signal 9\)")
        assert killed["exit_code"] is None and killed["duration"] >= 0
        assert one(r"^refused '/trigger/push': 401")["level"] == "warning"
        # Requests themselves are not logged: no access log, no line per webhook.
        assert not [r for r in records if "/status" in r["message"] or "GET /" in r["message"]]
        assert TOKEN not in daemon.log_text()


def test_log_level_warning_keeps_only_failures(tmp_path: Path) -> None:
    config = config_for(
        shell_command("push", "echo copied", delay="50ms"),
        shell_command("bad", "echo oops; exit 4", delay="50ms"),
    )
    port = free_port()
    args = ["--log-level", "warning"]
    listen = f"127.0.0.1:{port}"
    with start_daemon(tmp_path, config, args=args, listen=listen, wait_listening=False) as daemon:
        # "listening on" is an info line, not logged at this level: find the server by port.
        daemon.host, daemon.port = "127.0.0.1", port
        wait_until(lambda: _answers(daemon), timeout=15, message=daemon.log_text)
        run_now(daemon, "push")
        run_now(daemon, "bad")
        daemon.wait_for_log("bad: run 1 failed (exit 4)")
        wait_status(daemon, "push", lambda c: c["runs"] == 1)
        lines = daemon.log_text().splitlines()
        for line in lines:
            assert TEXT_LINE.fullmatch(line), line
            assert " INFO " not in line, line
        # Neither the runs' starts nor their output ("bad | oops") is a warning.
        assert len(lines) == 1, lines
        assert re.search(r" ERROR +bad: run 1 failed \(exit 4\) after \d+\.\d\ds$", lines[0])


def _answers(daemon: Daemon) -> bool:
    """Whether the daemon answers ``/health`` yet."""
    try:
        return daemon.get("/health", timeout=1)[0] == 200
    except OSError:
        return False


BURST = 10_000
SENDERS = 4


def send_burst(daemon: Daemon, count: int, senders: int) -> list[int]:
    """POST ``count`` webhooks from ``senders`` threads, each on one keep-alive connection, as
    a registry would; a 503 (buffer full) is retried like the registry does. Returns how many
    503s each sender saw."""
    retried = [0] * senders
    errors: list[BaseException] = []

    def sender(index: int) -> None:
        connection = daemon.connection(timeout=30)
        try:
            for _ in range(count // senders + (index < count % senders)):
                while True:
                    connection.request("POST", "/trigger/push", TAGGED, REGISTRY_HEADERS)
                    response = connection.getresponse()
                    answer = response.read()
                    if response.status != 503:
                        break
                    retried[index] += 1
                assert response.status == 200, answer
                assert json.loads(answer) == {"accepted": 1, "ignored": 0}
        except BaseException as exc:  # reported by the main thread
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=sender, args=(i,)) for i in range(senders)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not any(thread.is_alive() for thread in threads), "a sender hung"
    if errors:
        raise errors[0]
    return retried


def test_a_burst_of_webhooks_logs_per_run_not_per_request(tmp_path: Path) -> None:
    # Run 1 (at start) blocks, so the whole burst arrives during it and makes exactly one
    # follow-up run, whatever the machine's speed.
    recorder = Recorder(tmp_path / "push", blocking=True)
    config = config_for(
        recorder.command_yaml("push", runOnStart=True, delay="50ms"), auth=AUTH, shutdownGrace="2s"
    )
    with start_daemon(tmp_path, config) as daemon:  # the default: text
        recorder.wait_starts(1)
        before = len(daemon.log_text())
        began = time.monotonic()
        retried = send_burst(daemon, BURST, SENDERS)
        took = time.monotonic() - began
        wait_status(daemon, "push", lambda c: c["pendingTriggers"] == BURST)
        recorder.release()
        daemon.wait_for_log("push: run 2 succeeded", start=before)
        wait_status(daemon, "push", lambda c: c["runs"] == 2 and c["state"] == "idle")

        burst_lines = daemon.log_text()[before:].splitlines()
        assert len(burst_lines) <= 20, f"{len(burst_lines)} lines for {BURST} webhooks"
        coalesced = [line for line in burst_lines if "coalesced" in line]
        assert len(coalesced) == 1, burst_lines
        assert coalesced[0].endswith(
            f" INFO    push: {BURST} triggers coalesced into run 2 (reason event, 1 event)"
        )
        # The events file de-duplicates: one event id, sent 10,000 times.
        run = recorder.wait_starts(2)[1]
        assert run["reason"] == "event" and len(run["events"]["events"]) == 1

        log_text = daemon.log_text()
        for line in log_text.splitlines():
            assert TEXT_LINE.fullmatch(line), line
        assert TOKEN not in log_text
        status, _, page = daemon.get("/", BEARER)
        assert status == 200 and TOKEN.encode() not in page
        _, _, raw_status = daemon.get("/status", BEARER)
        assert TOKEN.encode() not in raw_status
        samples, _ = scrape(daemon)
        accepted = value(samples, "s3syncer_triggers_total", command="push", outcome="accepted")
        assert accepted == BURST
        print(f"{BURST} webhooks in {took:.1f}s, {sum(retried)} retried after 503")
