"""The figures: serial delivery (1), bursts on a running command (2, 2b), start latency and
idle CPU (3). Each scenario drives load and returns raw measurements; :mod:`.report` judges.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

from benchmarks.webhook import BenchmarkError
from benchmarks.webhook.load import WrkResult, post, run_wrk, serial, stable, wait_for
from benchmarks.webhook.servers import Server, cpu_seconds, rss_kib
from benchmarks.webhook.settings import BURST_DELAY, BURST_SLEEP, FIXTURE, LATENCY_DELAY, Settings

SERVERS = ("s3syncer", "baseline", "quart")


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


@dataclass(frozen=True)
class BurstFigure:
    """Figure 2 for one server: wrk's figures, memory around the burst, what followed it."""

    wrk: WrkResult
    rss_before_kib: int
    rss_after_kib: int
    log_bytes: int = 0
    runs: int = 0

    @property
    def rss_growth_mb(self) -> float:
        """Growth of resident memory over the burst, in MB (10^6 bytes)."""
        return (self.rss_after_kib - self.rss_before_kib) * 1024 / 1e6


@dataclass(frozen=True)
class StartFigure:
    """Figure 3: trigger-to-start beyond ``delay``, and the bare cost of starting the command."""

    over_delay: list[float]
    spawn: list[float]


@dataclass(frozen=True)
class Figures:
    """Everything one run measured."""

    serial: dict[str, SerialFigure]
    bursts: dict[str, BurstFigure]
    unique: BurstFigure | None
    start: StartFigure
    idle_pct: dict[str, float]


def round_ratios(figures: dict[str, SerialFigure], name: str, reference: str) -> list[float]:
    """The rate ratio ``name``/``reference`` of each round."""
    pairs = zip(figures[name].rates, figures[reference].rates, strict=True)
    return [a / b for a, b in pairs]


def paired_ratio(figures: dict[str, SerialFigure], name: str, reference: str) -> float:
    """The median over rounds of the rate ratio ``name``/``reference`` in the same round."""
    return statistics.median(round_ratios(figures, name, reference))


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
        # Rotating the order spreads drift and noise from the rest of the machine over all.
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


def _lines(path: Path) -> list[str]:
    return path.read_text().splitlines()


def _starts(path: Path) -> int:
    return _lines(path).count("start")


def _started_more(path: Path, count: int) -> bool:
    return _starts(path) > count


def _all_ended(path: Path) -> bool:
    seen = _lines(path)
    return seen.count("start") == seen.count("end")


def _grew(path: Path, count: int) -> bool:
    return len(_lines(path)) > count


def burst_on_running_command(
    wrk: str, daemon: Server, name: str, *, runs_file: Path, settings: Settings, script: str
) -> BurstFigure:
    """Figure 2 for s3syncer: start a run of ``name``, burst while it runs, count what follows."""
    runs_before = _starts(runs_file)
    status, _ = post(daemon, f"/trigger/{name}", FIXTURE.read_bytes())
    if status != 200:
        raise BenchmarkError(f"priming trigger for {name} answered {status}")
    wait_for(partial(_started_more, runs_file, runs_before), 5.0, f"a run of {name}")
    rss_before, log_before = rss_kib(daemon.pid), daemon.log_size()
    result = run_wrk(wrk, daemon, f"/trigger/{name}", settings.burst_seconds, script)
    time.sleep(BURST_DELAY + 1.0)  # the follow-up run starts `delay` after the last trigger
    rss_after = rss_kib(daemon.pid)
    # Count the log of the whole episode: the running command's end and the follow-up run.
    # Settled: every run has ended and none started for a second (a follow-up starts right
    # after the run it follows, so a single look between the two would count too few).
    wait_for(partial(stable, partial(_all_ended, runs_file), 1.0), 2 * BURST_SLEEP + 10, "runs")
    return BurstFigure(
        result,
        rss_before,
        rss_after,
        log_bytes=daemon.log_size() - log_before,
        runs=_starts(runs_file) - runs_before,
    )


def burst_plain(wrk: str, server: Server, settings: Settings) -> BurstFigure:
    """Figure 2 for a comparison server: the same wrk burst, memory before and after."""
    rss_before = rss_kib(server.pid)
    result = run_wrk(wrk, server, "/trigger/burst", settings.burst_seconds, "post.lua")
    time.sleep(1.0)
    return BurstFigure(result, rss_before, rss_kib(server.pid))


def measure_trigger_to_start(daemon: Server, stamps: Path, count: int) -> StartFigure:
    """Send ``count`` triggers spaced wider than ``delay``; each run stamps its start time."""
    body = FIXTURE.read_bytes()
    over: list[float] = []
    for _ in range(count):
        seen = len(_lines(stamps))
        sent = time.time()
        status, _ = post(daemon, "/trigger/latency", body)
        if status != 200:
            raise BenchmarkError(f"latency trigger answered {status}")
        wait_for(partial(_grew, stamps, seen), LATENCY_DELAY + 5.0, "a latency run")
        started = float(_lines(stamps)[-1])
        over.append(started - sent - LATENCY_DELAY)
        time.sleep(0.2)
    return StartFigure(over, measure_bare_spawn(count))


def measure_bare_spawn(count: int) -> list[float]:
    """The floor of figure 3: the same command started directly, no daemon, no delay."""
    spawn: list[float] = []
    with tempfile.NamedTemporaryFile("r", suffix=".txt") as floor:
        for _ in range(count):
            began = time.time()
            subprocess.run(
                ["/bin/sh", "-c", 'exec date +%s.%N >> "$0"', floor.name], check=True, timeout=5
            )
            spawn.append(float(Path(floor.name).read_text().splitlines()[-1]) - began)
    return spawn


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


def measure_all(
    servers: dict[str, Server],
    files: dict[str, Path],
    wrk: str,
    settings: Settings,
    step: Callable[[str], None],
) -> Figures:
    """Every figure, in an order that keeps them apart (bursts after serial, idle last)."""
    order = [servers[name] for name in SERVERS]
    daemon = servers["s3syncer"]
    burst = partial(burst_on_running_command, wrk, daemon, settings=settings)
    step(f"1. serial: {settings.rounds} rounds x {settings.per_round} POSTs per server")
    serial_figs = measure_serial(order, FIXTURE.read_bytes(), settings)
    step(f"2. burst: {settings.burst_seconds}s wrk on s3syncer while its command runs")
    bursts = {"s3syncer": burst("burst", runs_file=files["burst"], script="post.lua")}
    step("2. burst: again, on the same daemon (is the growth a high-water mark or a leak?)")
    bursts["s3syncer-again"] = burst("burst", runs_file=files["burst"], script="post.lua")
    step("2. burst: the same on the baseline and the Quart-Trio route")
    bursts["baseline"] = burst_plain(wrk, servers["baseline"], settings)
    bursts["quart"] = burst_plain(wrk, servers["quart"], settings)
    unique = None
    if settings.unique_burst:
        step("2b. burst with a fresh event id per request")
        unique = burst("unique", runs_file=files["unique"], script="post_unique.lua")
    step(f"3. trigger-to-start: {settings.triggers} triggers, delay {LATENCY_DELAY}s")
    start = measure_trigger_to_start(daemon, files["latency"], settings.triggers)
    step(f"3. idle CPU over {settings.idle_seconds:g}s")
    idle = measure_idle_cpu(order, settings.idle_seconds)
    return Figures(serial_figs, bursts, unique, start, idle)
