"""Benchmark s3syncer against a bare Hypercorn-Trio ASGI app, in one run, and print a table.

Usage (from anywhere)::

    python benchmarks/run.py            # or: benchmarks/run
    python benchmarks/run.py --quick    # a shorter, noisier run while developing

It starts three servers on 127.0.0.1, each in its own process: s3syncer itself
(``python -m s3syncer serve``), the baseline (``benchmarks/baseline_app.py``, a bare
ASGI app that only answers 200) and a minimal Quart-Trio route
(``benchmarks/quart_app.py``). Every figure of s3syncer is set against the
baseline measured in the same run. All load is on loopback and bounded in count
and in time. The table goes to stdout and into the RESULTS section of
``benchmarks/README.md``.

What it installs when missing: ``wrk`` (``apt-get update && apt-get install -y
wrk``), and ``py-spy`` from PyPI only when the serial target is missed and a
profile is wanted (``--profile auto``, the default).
"""

from __future__ import annotations

import argparse
import http.client
import importlib.util
import json
import os
import platform
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import partial
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
README = BENCH / "README.md"
FIXTURES = Path(
    os.environ.get("S3SYNCER_FIXTURES", REPO.parent / "shared" / "fixtures" / "distribution-2.8")
)
FIXTURE = FIXTURES / "05-push-manifest-tag-latest.json"
CONTENT_TYPE = "application/vnd.docker.distribution.events.v1+json"
HOST = "127.0.0.1"
BEGIN_MARK = "<!-- RESULTS:BEGIN (written by benchmarks/run.py) -->"
END_MARK = "<!-- RESULTS:END -->"

SERIAL_TARGET = 0.9
RSS_TARGET_MB = 5.0
RUNS_TARGET = 2
LOG_TARGET = 64 * 1024
START_TARGET_MS = 20.0
IDLE_TARGET_PCT = 1.0

BURST_DELAY = 0.1
BURST_SLEEP = 5
LATENCY_DELAY = 0.5
SERVER_START_TIMEOUT = 20.0
REQUEST_TIMEOUT = 5.0


@dataclass(frozen=True)
class Settings:
    """How much load each figure applies."""

    warmup: int = 300
    rounds: int = 6
    per_round: int = 500
    burst_seconds: int = 10
    triggers: int = 10
    idle_seconds: float = 10.0
    profile_seconds: int = 10
    unique_burst: bool = True


QUICK = Settings(
    warmup=50,
    rounds=3,
    per_round=200,
    burst_seconds=3,
    triggers=4,
    idle_seconds=3.0,
    profile_seconds=4,
    unique_burst=False,
)


class BenchmarkError(RuntimeError):
    """Something kept a figure from being measured."""


# --------------------------------------------------------------------------- processes


@dataclass
class Server:
    """One server process under test, with its stderr (and stdout) in ``log_path``."""

    name: str
    proc: subprocess.Popen[bytes]
    log_path: Path
    host: str = HOST
    port: int = 0

    @property
    def pid(self) -> int:
        """The server's process id (the Python interpreter itself, not a wrapper)."""
        return self.proc.pid

    def log_size(self) -> int:
        """Bytes the server has written to stdout and stderr so far."""
        return self.log_path.stat().st_size

    def stop(self) -> None:
        """SIGTERM, wait a little, then SIGKILL."""
        if self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=5)


def start_server(name: str, argv: Sequence[str], workdir: Path) -> Server:
    """Start ``argv`` and wait for its ``listening on http://HOST:PORT`` line."""
    log_path = workdir / f"{name}.log"
    with log_path.open("wb") as log_file:
        proc = subprocess.Popen(
            list(argv),
            cwd=REPO,
            stdin=subprocess.DEVNULL,
            stdout=log_file,
            stderr=log_file,
            start_new_session=True,
        )
    server = Server(name, proc, log_path)
    deadline = time.monotonic() + SERVER_START_TIMEOUT
    pattern = re.compile(r"listening on http://([^\s:/]+):(\d+)")
    while time.monotonic() < deadline:
        found = pattern.search(log_path.read_text(errors="replace"))
        if found:
            server.host, server.port = found.group(1), int(found.group(2))
            return server
        if proc.poll() is not None:
            break
        time.sleep(0.02)
    server.stop()
    tail = log_path.read_text(errors="replace")[-2000:]
    raise BenchmarkError(f"{name} did not start listening:\n{tail}")


def rss_kib(pid: int) -> int:
    """Resident memory of ``pid`` in KiB, from /proc/PID/status VmRSS."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise BenchmarkError(f"no VmRSS for pid {pid}")


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time of ``pid`` (not of its children), from /proc/PID/stat."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2 :].split()
    # After "pid (comm) ", field 3 (state) is fields[0]; utime is 14, stime 15.
    utime, stime = int(fields[11]), int(fields[12])
    return (utime + stime) / os.sysconf("SC_CLK_TCK")


# --------------------------------------------------------------------------- setup


def ensure_wrk() -> str:
    """The path of ``wrk``, installing the Debian package first when it is missing."""
    found = shutil.which("wrk")
    if found:
        return found
    sudo = [] if os.geteuid() == 0 else ["sudo"]
    print("wrk is missing: apt-get update && apt-get install -y wrk", file=sys.stderr)
    subprocess.run([*sudo, "apt-get", "update"], check=True, timeout=300)
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run([*sudo, "apt-get", "install", "-y", "wrk"], check=True, timeout=300, env=env)
    found = shutil.which("wrk")
    if not found:
        raise BenchmarkError("apt-get installed wrk but it is not on PATH")
    return found


def ensure_py_spy() -> str:
    """The path of ``py-spy``, pip-installing it into this interpreter's environment if needed."""
    beside = Path(sys.executable).parent / "py-spy"
    found = shutil.which("py-spy") or (str(beside) if beside.exists() else None)
    if found:
        return found
    print("py-spy is missing: pip install py-spy", file=sys.stderr)
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "py-spy"], check=True, timeout=300
    )
    if beside.exists():
        return str(beside)
    found = shutil.which("py-spy")
    if not found:
        raise BenchmarkError("pip installed py-spy but it cannot be found")
    return found


def write_config(workdir: Path) -> dict[str, Path]:
    """The s3syncer config of this benchmark; returns the files its commands write."""
    files = {
        "burst": workdir / "burst-runs.txt",
        "unique": workdir / "unique-runs.txt",
        "latency": workdir / "latency-starts.txt",
    }
    for path in files.values():
        path.touch()
    sleeper = f'echo start >> "$0"; sleep {BURST_SLEEP}; echo end >> "$0"'
    stamp = 'exec date +%s.%N >> "$0"'
    config = {
        "shutdownGrace": "2s",
        "commands": [
            # Figure 1: nothing runs while it is measured (delay 1h); only the webhook counts.
            {"name": "serial", "cmd": "true", "delay": "1h"},
            # Figure 2: a run that lasts 5 s, so the burst lands on a running command.
            {
                "name": "burst",
                "cmd": "/bin/sh",
                "args": ["-c", sleeper, str(files["burst"])],
                "delay": f"{int(BURST_DELAY * 1000)}ms",
            },
            {
                "name": "unique",
                "cmd": "/bin/sh",
                "args": ["-c", sleeper, str(files["unique"])],
                "delay": f"{int(BURST_DELAY * 1000)}ms",
            },
            # Figure 3: the command stamps the wall clock the moment it starts.
            {
                "name": "latency",
                "cmd": "/bin/sh",
                "args": ["-c", stamp, str(files["latency"])],
                "delay": f"{int(LATENCY_DELAY * 1000)}ms",
            },
        ],
    }
    # JSON is YAML: no YAML writer needed.
    (workdir / "config.yaml").write_text(json.dumps(config, indent=2))
    return files


# --------------------------------------------------------------------------- clients


def post(server: Server, path: str, body: bytes) -> tuple[int, bytes]:
    """One POST on a new connection, as a registry sends it; returns status and body."""
    conn = http.client.HTTPConnection(server.host, server.port, timeout=REQUEST_TIMEOUT)
    try:
        conn.request("POST", path, body=body, headers={"Content-Type": CONTENT_TYPE})
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def serial(server: Server, path: str, body: bytes, count: int) -> tuple[float, list[float]]:
    """``count`` POSTs one after another, a new connection each: (seconds, latencies)."""
    latencies: list[float] = []
    clock = time.perf_counter
    began = clock()
    for _ in range(count):
        sent = clock()
        status, _ = post(server, path, body)
        latencies.append(clock() - sent)
        if status != 200:
            raise BenchmarkError(f"{server.name}: POST {path} answered {status}")
    return clock() - began, latencies


@dataclass
class WrkResult:
    """What wrk reports about one burst."""

    requests: int
    rate: float
    non_2xx: int
    socket_errors: int


def run_wrk(wrk: str, server: Server, path: str, seconds: int, script: str) -> WrkResult:
    """``wrk -t2 -c50 -dNs -s SCRIPT`` against ``server``; bounded by wrk's own -d."""
    argv = [
        *(wrk, "-t2", "-c50", f"-d{seconds}s", "--timeout", "2s"),
        *("-s", str(BENCH / script), f"http://{server.host}:{server.port}{path}"),
        *("--", str(FIXTURE)),
    ]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 30, check=True)
    out = done.stdout

    def number(pattern: str) -> float:
        found = re.search(pattern, out)
        return float(found.group(1)) if found else 0.0

    errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    return WrkResult(
        requests=int(number(r"(\d+) requests in")),
        rate=number(r"Requests/sec:\s+([\d.]+)"),
        non_2xx=int(number(r"Non-2xx or 3xx responses: (\d+)")),
        socket_errors=sum(int(g) for g in errors.groups()) if errors else 0,
    )


def wait_for(condition: Callable[[], bool], timeout: float, what: str) -> None:
    """Poll ``condition`` every 2 ms until true; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise BenchmarkError(f"timed out waiting for {what}")
        time.sleep(0.002)


def stable(condition: Callable[[], bool], hold: float) -> bool:
    """Whether ``condition`` holds now and at every look over the next ``hold`` seconds."""
    deadline = time.monotonic() + hold
    while time.monotonic() < deadline:
        if not condition():
            return False
        time.sleep(0.01)
    return condition()


def lines(path: Path) -> list[str]:
    """The lines of a file the benchmark commands append to."""
    return path.read_text().splitlines()


def grew(path: Path, count: int) -> bool:
    """Whether ``path`` has more than ``count`` lines."""
    return len(lines(path)) > count


def started_more(path: Path, count: int) -> bool:
    """Whether more than ``count`` runs have written ``start`` to ``path``."""
    return lines(path).count("start") > count


def all_ended(path: Path) -> bool:
    """Whether every run that wrote ``start`` to ``path`` has also written ``end``."""
    seen = lines(path)
    return seen.count("start") == seen.count("end")


# --------------------------------------------------------------------------- figures


def percentile(values: Sequence[float], fraction: float) -> float:
    """The ``fraction`` percentile (nearest rank) of ``values``."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(fraction * len(ordered)) - 1))]


@dataclass
class SerialFigure:
    """Figure 1 for one server: per-round rates and all latencies."""

    rates: list[float] = field(default_factory=list)
    latencies: list[float] = field(default_factory=list)
    cpu_seconds: float = 0.0
    requests: int = 0

    @property
    def cpu_per_request_us(self) -> float:
        """The server's own CPU time (user + system) per request, in microseconds."""
        return 1e6 * self.cpu_seconds / self.requests

    @property
    def rate(self) -> float:
        """The median of the per-round request rates."""
        return statistics.median(self.rates)


def measure_serial(
    servers: Sequence[Server], body: bytes, settings: Settings
) -> dict[str, SerialFigure]:
    """Figure 1: rounds of serial POSTs, the order of the servers rotated every round."""
    path = "/trigger/serial"
    status, answer = post(servers[0], path, body)
    if status != 200 or json.loads(answer) != {"accepted": 1, "ignored": 0}:
        raise BenchmarkError(f"s3syncer did not accept the fixture: {status} {answer!r}")
    for server in servers:
        serial(server, path, body, settings.warmup)
    figures = {server.name: SerialFigure() for server in servers}
    for round_no in range(settings.rounds):
        shift = round_no % len(servers)
        for server in [*servers[shift:], *servers[:shift]]:
            cpu_before = cpu_seconds(server.pid)
            seconds, latencies = serial(server, path, body, settings.per_round)
            figure = figures[server.name]
            figure.cpu_seconds += cpu_seconds(server.pid) - cpu_before
            figure.requests += settings.per_round
            figure.rates.append(settings.per_round / seconds)
            figure.latencies.extend(latencies)
    return figures


def round_ratios(figures: dict[str, SerialFigure], name: str, reference: str) -> list[float]:
    """The rate ratio ``name``/``reference`` of each round."""
    pairs = zip(figures[name].rates, figures[reference].rates, strict=True)
    return [a / b for a, b in pairs]


def paired_ratio(figures: dict[str, SerialFigure], name: str, reference: str) -> float:
    """The median over rounds of the rate ratio ``name``/``reference`` in the same round."""
    return statistics.median(round_ratios(figures, name, reference))


@dataclass
class BurstFigure:
    """Figure 2 for one server."""

    wrk: WrkResult
    rss_before_kib: int
    rss_after_kib: int
    log_bytes: int = 0
    runs: int = 0

    @property
    def rss_growth_mb(self) -> float:
        """Growth of resident memory over the burst, in MB (10^6 bytes)."""
        return (self.rss_after_kib - self.rss_before_kib) * 1024 / 1e6


def burst_on_running_command(
    wrk: str, daemon: Server, name: str, *, runs_file: Path, settings: Settings, script: str
) -> BurstFigure:
    """Figure 2 for s3syncer: start a run of ``name``, burst while it runs, count what follows."""
    runs_before = lines(runs_file).count("start")
    status, _ = post(daemon, f"/trigger/{name}", FIXTURE.read_bytes())
    if status != 200:
        raise BenchmarkError(f"priming trigger for {name} answered {status}")
    wait_for(partial(started_more, runs_file, runs_before), 5.0, f"a run of {name}")
    rss_before, log_before = rss_kib(daemon.pid), daemon.log_size()
    result = run_wrk(wrk, daemon, f"/trigger/{name}", settings.burst_seconds, script)
    time.sleep(BURST_DELAY + 1.0)  # the follow-up run starts `delay` after the last trigger
    rss_after = rss_kib(daemon.pid)
    # Count the log of the whole episode: the running command's end and the follow-up run.
    # Settled: every run has ended and none started for a second (a follow-up starts right
    # after the run it follows, so a single look between the two would count too few).
    wait_for(partial(stable, partial(all_ended, runs_file), 1.0), 2 * BURST_SLEEP + 10, "runs")
    figure = BurstFigure(result, rss_before, rss_after, daemon.log_size() - log_before)
    figure.runs = lines(runs_file).count("start") - runs_before
    return figure


def burst_plain(wrk: str, server: Server, settings: Settings) -> BurstFigure:
    """Figure 2 for a comparison server: the same wrk burst, memory before and after."""
    rss_before = rss_kib(server.pid)
    result = run_wrk(wrk, server, "/trigger/burst", settings.burst_seconds, "post.lua")
    time.sleep(1.0)
    return BurstFigure(result, rss_before, rss_kib(server.pid))


@dataclass
class StartFigure:
    """Figure 3: trigger-to-start beyond ``delay``, and the bare cost of starting the command."""

    over_delay: list[float]
    spawn: list[float]


def measure_trigger_to_start(daemon: Server, stamps: Path, count: int) -> StartFigure:
    """Send ``count`` triggers spaced wider than ``delay``; each run stamps its start time."""
    body = FIXTURE.read_bytes()
    over: list[float] = []
    for _ in range(count):
        seen = len(lines(stamps))
        sent = time.time()
        status, _ = post(daemon, "/trigger/latency", body)
        if status != 200:
            raise BenchmarkError(f"latency trigger answered {status}")
        wait_for(partial(grew, stamps, seen), LATENCY_DELAY + 5.0, "a latency run")
        started = float(lines(stamps)[-1])
        over.append(started - sent - LATENCY_DELAY)
        time.sleep(0.2)
    # The floor: the same command started directly by this process, no daemon, no delay.
    spawn: list[float] = []
    with tempfile.NamedTemporaryFile("r", suffix=".txt") as floor:
        for _ in range(count):
            began = time.time()
            subprocess.run(
                ["/bin/sh", "-c", 'exec date +%s.%N >> "$0"', floor.name], check=True, timeout=5
            )
            spawn.append(float(Path(floor.name).read_text().splitlines()[-1]) - began)
    return StartFigure(over, spawn)


def measure_idle_cpu(servers: Sequence[Server], seconds: float) -> dict[str, float]:
    """CPU of each server over the same ``seconds`` of no traffic, in percent of one core."""
    before = {server.name: cpu_seconds(server.pid) for server in servers}
    began = time.monotonic()
    time.sleep(seconds)
    elapsed = time.monotonic() - began
    return {
        server.name: 100 * (cpu_seconds(server.pid) - before[server.name]) / elapsed
        for server in servers
    }


# --------------------------------------------------------------------------- profile


def profile_serial(daemon: Server, settings: Settings, workdir: Path) -> list[str]:
    """py-spy the daemon under serial load; save a flame graph and return a summary."""
    py_spy = ensure_py_spy()
    body = FIXTURE.read_bytes()
    stop = threading.Event()

    def load() -> None:
        deadline = time.monotonic() + 2 * settings.profile_seconds + 10
        for _ in range(200_000):
            if stop.is_set() or time.monotonic() > deadline:
                return
            post(daemon, "/trigger/serial", body)

    worker = threading.Thread(target=load, daemon=True)
    worker.start()
    try:
        time.sleep(0.5)
        collapsed = workdir / "profile.collapsed"
        for fmt, out in (("flamegraph", BENCH / "profile.svg"), ("raw", collapsed)):
            subprocess.run(
                [
                    *(py_spy, "record", "--pid", str(daemon.pid)),
                    *("-d", str(settings.profile_seconds), "-r", "200"),
                    *("--format", fmt, "-o", str(out)),
                ],
                check=True,
                capture_output=True,
                timeout=settings.profile_seconds + 60,
            )
    finally:
        stop.set()
        worker.join(timeout=REQUEST_TIMEOUT + 5)
    shutil.copy(collapsed, BENCH / "profile.collapsed")
    return summarise_profile(collapsed.read_text())


def _frame_key(frame: str) -> str:
    # "function (path/to/module.py:123)" -> "function (module.py)"
    found = re.match(r"(.*) \((.*?):\d+\)$", frame)
    if not found:
        return frame
    function, path = found.groups()
    parts = Path(path).parts
    where = "/".join(parts[-2:]) if len(parts) >= 2 else path
    return f"{function} ({where})"


def _area(frame: str) -> str:
    for marker, label in (
        ("s3syncer/", "s3syncer"),
        ("hypercorn/", "hypercorn"),
        ("h11/", "h11"),
        ("trio/", "trio"),
        ("quart/", "quart"),
        ("json/", "json"),
    ):
        if marker in frame:
            return label
    return "other"


def summarise_profile(collapsed: str) -> list[str]:
    """Top self-time frames and self time by library from py-spy's collapsed stacks."""
    own: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    areas: Counter[str] = Counter()
    total = 0
    for line in collapsed.splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = stack.split(";")
        total += count
        own[_frame_key(frames[-1])] += count
        areas[_area(frames[-1])] += count
        for key in {_frame_key(frame) for frame in frames}:
            inclusive[key] += count
    if not total:
        return ["py-spy recorded no samples"]
    out = [f"py-spy: {total} samples of the daemon under serial load"]
    out.append(
        "self time by library: "
        + ", ".join(f"{name} {100 * n / total:.0f}%" for name, n in areas.most_common())
    )
    out.append("top self time:")
    out += [f"  {100 * n / total:5.1f}%  {name}" for name, n in own.most_common(12)]
    out.append("top inclusive time (selected):")
    interesting = [
        (name, n)
        for name, n in inclusive.most_common(80)
        if any(m in name for m in ("web.py", "events.py", "hypercorn", "h11", "json", "runner"))
    ]
    out += [f"  {100 * n / total:5.1f}%  {name}" for name, n in interesting[:14]]
    return out


# --------------------------------------------------------------------------- report


@dataclass
class Row:
    """One line of the results table."""

    figure: str
    s3syncer: str
    quart: str
    baseline: str
    ratio: str
    verdict: str


def spread(values: Sequence[float]) -> tuple[float, float]:
    """The smallest and the largest of ``values``."""
    return min(values), max(values)


def verdict(ok: bool | None) -> str:
    """PASS, FAIL, or ``info`` for a figure without a target."""
    return "info" if ok is None else ("PASS" if ok else "FAIL")


def build_rows(
    serial_figs: dict[str, SerialFigure],
    bursts: dict[str, BurstFigure],
    unique: BurstFigure | None,
    start: StartFigure,
    idle: dict[str, float],
) -> list[Row]:
    """The table, s3syncer set against the baseline of the same run."""
    s3, qt, base = serial_figs["s3syncer"], serial_figs["quart"], serial_figs["baseline"]
    ratio = paired_ratio(serial_figs, "s3syncer", "baseline")
    quart_ratio = paired_ratio(serial_figs, "quart", "baseline")
    rows = [
        Row(
            "1. serial req/s (new connection each)",
            f"{s3.rate:.0f}",
            f"{qt.rate:.0f} ({quart_ratio:.2f}x)",
            f"{base.rate:.0f}",
            f"{ratio:.2f}x (>= {SERIAL_TARGET})",
            verdict(ratio >= SERIAL_TARGET),
        ),
        Row(
            "1. serial: ratio per round (min-max)",
            "{:.2f}-{:.2f}".format(*spread(round_ratios(serial_figs, "s3syncer", "baseline"))),
            "{:.2f}-{:.2f}".format(*spread(round_ratios(serial_figs, "quart", "baseline"))),
            "1.00",
            f"{len(s3.rates)} rounds",
            "info",
        ),
        Row(
            "1. serial: server CPU per request, us",
            f"{s3.cpu_per_request_us:.0f}",
            f"{qt.cpu_per_request_us:.0f}",
            f"{base.cpu_per_request_us:.0f}",
            f"{s3.cpu_per_request_us / base.cpu_per_request_us:.2f}x",
            "info",
        ),
    ]
    for label, fraction in (("p50", 0.5), ("p99", 0.99)):
        values = {k: 1000 * percentile(f.latencies, fraction) for k, f in serial_figs.items()}
        rows.append(
            Row(
                f"1. serial latency {label} ms",
                f"{values['s3syncer']:.2f}",
                f"{values['quart']:.2f}",
                f"{values['baseline']:.2f}",
                f"{values['s3syncer'] / values['baseline']:.2f}x",
                "info",
            )
        )
    b3, bq, bb = bursts["s3syncer"], bursts["quart"], bursts["baseline"]
    again = bursts["s3syncer-again"]
    rows += [
        Row(
            "2. burst wrk -t2 -c50 req/s",
            f"{b3.wrk.rate:.0f}",
            f"{bq.wrk.rate:.0f}",
            f"{bb.wrk.rate:.0f}",
            f"{b3.wrk.rate / bb.wrk.rate:.2f}x",
            "info",
        ),
        Row(
            "2. burst non-2xx answers / socket errors",
            f"{b3.wrk.non_2xx} / {b3.wrk.socket_errors} of {b3.wrk.requests}",
            f"{bq.wrk.non_2xx} / {bq.wrk.socket_errors}",
            f"{bb.wrk.non_2xx} / {bb.wrk.socket_errors}",
            "0 expected",
            verdict(b3.wrk.non_2xx == 0 and b3.wrk.socket_errors == 0),
        ),
        Row(
            "2. burst RSS growth MB",
            f"{b3.rss_growth_mb:+.2f} ({b3.rss_before_kib / 1024:.1f} -> "
            f"{b3.rss_after_kib / 1024:.1f} MiB)",
            f"{bq.rss_growth_mb:+.2f}",
            f"{bb.rss_growth_mb:+.2f}",
            f"<= {RSS_TARGET_MB:g} MB",
            verdict(b3.rss_growth_mb <= RSS_TARGET_MB),
        ),
        Row(
            "2. second burst: RSS growth MB / runs",
            f"{again.rss_growth_mb:+.2f} / {again.runs}",
            "-",
            "-",
            "high-water or leak?",
            "info",
        ),
        Row(
            "2. burst runs (one running + follow-ups)",
            str(b3.runs),
            "-",
            "-",
            f"<= {RUNS_TARGET}",
            verdict(b3.runs <= RUNS_TARGET),
        ),
        Row(
            "2. burst log bytes written",
            str(b3.log_bytes),
            "-",
            "-",
            f"<= {LOG_TARGET // 1024} KiB",
            verdict(b3.log_bytes <= LOG_TARGET),
        ),
    ]
    if unique is not None:
        rows += [
            Row(
                "2b. burst, unique event ids: RSS growth MB",
                f"{unique.rss_growth_mb:+.2f} ({unique.wrk.requests} events)",
                "-",
                "-",
                f"<= {RSS_TARGET_MB:g} MB",
                verdict(unique.rss_growth_mb <= RSS_TARGET_MB),
            ),
            Row(
                "2b. burst, unique event ids: runs / log bytes",
                f"{unique.runs} / {unique.log_bytes}",
                "-",
                "-",
                f"<= {RUNS_TARGET} / <= {LOG_TARGET // 1024} KiB",
                verdict(unique.runs <= RUNS_TARGET and unique.log_bytes <= LOG_TARGET),
            ),
        ]
    over_ms = [1000 * v for v in start.over_delay]
    spawn_ms = [1000 * v for v in start.spawn]
    rows += [
        Row(
            f"3. trigger-to-start minus delay, p50 ms (n={len(over_ms)})",
            f"{statistics.median(over_ms):.1f}",
            "-",
            f"{statistics.median(spawn_ms):.1f} (bare spawn)",
            f"<= {START_TARGET_MS:g} ms",
            verdict(statistics.median(over_ms) <= START_TARGET_MS),
        ),
        Row(
            "3. trigger-to-start minus delay, max ms",
            f"{max(over_ms):.1f}",
            "-",
            f"{max(spawn_ms):.1f} (bare spawn)",
            f"<= {START_TARGET_MS:g} ms",
            verdict(max(over_ms) <= START_TARGET_MS),
        ),
        Row(
            "3. idle CPU % of one core",
            f"{idle['s3syncer']:.2f}",
            f"{idle['quart']:.2f}",
            f"{idle['baseline']:.2f}",
            f"< {IDLE_TARGET_PCT:g}%",
            verdict(idle["s3syncer"] < IDLE_TARGET_PCT),
        ),
    ]
    return rows


HEADER = ("figure", "s3syncer", "quart-trio", "baseline", "ratio / target", "result")


def render_text(rows: Sequence[Row]) -> str:
    """The table for a terminal."""
    cells = [
        HEADER,
        *((r.figure, r.s3syncer, r.quart, r.baseline, r.ratio, r.verdict) for r in rows),
    ]
    widths = [max(len(row[i]) for row in cells) for i in range(len(HEADER))]
    out = []
    for n, row in enumerate(cells):
        out.append("  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row)).rstrip())
        if n == 0:
            out.append("  ".join("-" * w for w in widths))
    return "\n".join(out)


def render_markdown(rows: Sequence[Row]) -> str:
    """The table for the README."""
    out = ["| " + " | ".join(HEADER) + " |", "|" + "---|" * len(HEADER)]
    for r in rows:
        cells = (r.figure, r.s3syncer, r.quart, r.baseline, r.ratio, f"**{r.verdict}**")
        out.append("| " + " | ".join(cells) + " |")
    return "\n".join(out)


def _version(module: str) -> str:
    try:
        return version(module)
    except PackageNotFoundError:
        return "?"


def describe_machine(wrk: str) -> list[str]:
    """nproc, CPU model, Python, kernel and the versions of the stack."""
    model = "unknown"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            model = line.split(":", 1)[1].strip()
            break
    wrk_version = subprocess.run([wrk, "-v"], check=False, capture_output=True, text=True)
    wrk_text = wrk_version.stdout.split("[")[0]
    stack = ", ".join(
        f"{name} {_version(name)}"
        for name in ("s3syncer", "hypercorn", "trio", "quart-trio", "h11")
    )
    return [
        f"- CPUs (nproc): {os.cpu_count()}; model: {model}",
        f"- Python {platform.python_version()} ({platform.python_implementation()}); "
        f"kernel {platform.release()} ({platform.machine()})",
        f"- {stack}; {wrk_text.strip()}",
    ]


def write_readme(section: str) -> None:
    """Replace the RESULTS section of benchmarks/README.md (between the markers)."""
    text = README.read_text() if README.exists() else ""
    block = f"{BEGIN_MARK}\n{section.rstrip()}\n{END_MARK}"
    if BEGIN_MARK in text and END_MARK in text:
        head, rest = text.split(BEGIN_MARK, 1)
        tail = rest.split(END_MARK, 1)[1]
        text = head + block + tail
    else:
        text = text.rstrip() + "\n\n## Results\n\n" + block + "\n"
    README.write_text(text)


# --------------------------------------------------------------------------- main


@contextmanager
def servers_running(workdir: Path, config: Path) -> Iterator[dict[str, Server]]:
    """s3syncer, the baseline and the Quart-Trio route, each in its own process."""
    python = sys.executable
    started: dict[str, Server] = {}
    try:
        started["s3syncer"] = start_server(
            "s3syncer",
            [python, "-m", "s3syncer", "serve", "--config", str(config), "--listen", f"{HOST}:0"],
            workdir,
        )
        started["baseline"] = start_server(
            "baseline", [python, "-m", "benchmarks.baseline_app", f"{HOST}:0"], workdir
        )
        started["quart"] = start_server(
            "quart", [python, "-m", "benchmarks.quart_app", f"{HOST}:0"], workdir
        )
        yield started
    finally:
        for server in started.values():
            server.stop()


def check_environment() -> None:
    """Fail early with a useful message when the interpreter cannot run the servers."""
    for module in ("hypercorn", "quart_trio", "s3syncer"):
        if importlib.util.find_spec(module) is None:
            raise BenchmarkError(
                f"{sys.executable} cannot import {module}: run with the project's venv "
                "(benchmarks/run does), or pip install -e . first"
            )
    if not FIXTURE.exists():
        raise BenchmarkError(f"missing fixture {FIXTURE} (set S3SYNCER_FIXTURES)")


def measure(
    servers: dict[str, Server],
    files: dict[str, Path],
    wrk: str,
    settings: Settings,
    step: Callable[[str], None],
) -> tuple[list[Row], float]:
    """Every figure, in an order that keeps them apart; returns the rows and the serial ratio."""
    order = [servers["s3syncer"], servers["baseline"], servers["quart"]]
    daemon = servers["s3syncer"]
    step(f"1. serial: {settings.rounds} rounds x {settings.per_round} POSTs per server")
    serial_figs = measure_serial(order, FIXTURE.read_bytes(), settings)
    step(f"2. burst: {settings.burst_seconds}s wrk on s3syncer while its command runs")
    bursts = {
        "s3syncer": burst_on_running_command(
            wrk, daemon, "burst", runs_file=files["burst"], settings=settings, script="post.lua"
        )
    }
    step("2. burst: again, on the same daemon (is the growth a high-water mark or a leak?)")
    bursts["s3syncer-again"] = burst_on_running_command(
        wrk, daemon, "burst", runs_file=files["burst"], settings=settings, script="post.lua"
    )
    step("2. burst: the same on the baseline and the Quart-Trio route")
    bursts["baseline"] = burst_plain(wrk, servers["baseline"], settings)
    bursts["quart"] = burst_plain(wrk, servers["quart"], settings)
    unique = None
    if settings.unique_burst:
        step("2b. burst with a fresh event id per request")
        unique = burst_on_running_command(
            wrk,
            daemon,
            "unique",
            runs_file=files["unique"],
            settings=settings,
            script="post_unique.lua",
        )
    step(f"3. trigger-to-start: {settings.triggers} triggers, delay {LATENCY_DELAY}s")
    start = measure_trigger_to_start(daemon, files["latency"], settings.triggers)
    step(f"3. idle CPU over {settings.idle_seconds:g}s")
    idle = measure_idle_cpu(order, settings.idle_seconds)
    rows = build_rows(serial_figs, bursts, unique, start, idle)
    return rows, paired_ratio(serial_figs, "s3syncer", "baseline")


def report(
    rows: Sequence[Row], profile_lines: Sequence[str], elapsed: float, wrk: str, quick: bool
) -> str:
    """The RESULTS section of the README."""
    section = [
        f"Measured {time.strftime('%Y-%m-%d %H:%M %Z')} by `python benchmarks/run.py`"
        f"{' --quick' if quick else ''} in {elapsed:.0f} s, on:",
        "",
        *describe_machine(wrk),
        "",
        render_markdown(rows),
    ]
    if profile_lines:
        section += [
            "",
            "Profile of the daemon under the serial load (`benchmarks/profile.svg`, "
            "collapsed stacks in `benchmarks/profile.collapsed`):",
            "",
            "```",
            *profile_lines,
            "```",
        ]
    return "\n".join(section)


def run(settings: Settings, profile: str, update_readme: bool) -> int:
    """Measure everything, print the table, write the README; exit 0 when every target holds."""
    began = time.monotonic()
    check_environment()
    wrk = ensure_wrk()

    def step(text: str) -> None:
        print(f"[{time.monotonic() - began:6.1f}s] {text}", file=sys.stderr, flush=True)

    profile_lines: list[str] = []
    with tempfile.TemporaryDirectory(prefix="s3syncer-bench-") as tmp:
        workdir = Path(tmp)
        files = write_config(workdir)
        step("starting s3syncer, the baseline and the Quart-Trio route")
        with servers_running(workdir, workdir / "config.yaml") as servers:
            rows, ratio = measure(servers, files, wrk, settings, step)
            if profile == "always" or (profile == "auto" and ratio < SERIAL_TARGET):
                step("profiling the daemon under serial load with py-spy")
                try:
                    profile_lines = profile_serial(servers["s3syncer"], settings, workdir)
                except (BenchmarkError, subprocess.SubprocessError, OSError) as exc:
                    profile_lines = [f"profiling failed: {exc}"]
    elapsed = time.monotonic() - began
    print()
    print(render_text(rows))
    if profile_lines:
        print()
        print("\n".join(profile_lines))
    print(f"\nthe benchmark took {elapsed:.0f}s")
    if update_readme:
        write_readme(report(rows, profile_lines, elapsed, wrk, settings == QUICK))
        print(f"results written to {README}")
    return 0 if all(r.verdict != "FAIL" for r in rows) else 1


def main(argv: Sequence[str] | None = None) -> int:
    """Parse the flags and run the benchmark."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="smaller loads, for development")
    parser.add_argument(
        "--profile",
        choices=("auto", "always", "never"),
        default="auto",
        help="py-spy the daemon under serial load: when the target is missed (auto), always, never",
    )
    parser.add_argument(
        "--no-readme", action="store_true", help="print the table only; leave README.md alone"
    )
    args = parser.parse_args(argv)
    try:
        return run(QUICK if args.quick else Settings(), args.profile, not args.no_readme)
    except BenchmarkError as exc:
        print(f"benchmark failed: {exc}", file=sys.stderr)
        return 2


def _reexec_in_venv() -> None:
    """Re-run under the project's venv when this interpreter lacks s3syncer."""
    if importlib.util.find_spec("s3syncer") is None:
        venv_python = REPO / ".venv" / "bin" / "python"
        if venv_python.exists() and Path(sys.executable) != venv_python:
            os.execv(venv_python, [str(venv_python), __file__, *sys.argv[1:]])


if __name__ == "__main__":
    if str(REPO) not in sys.path:
        sys.path.insert(0, str(REPO))
    _reexec_in_venv()
    sys.exit(main())
