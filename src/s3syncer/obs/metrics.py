"""Prometheus metrics: each command's series kept as plain numbers, rendered in slices.

A scrape of 10,000 commands is some 300,000 lines. prometheus_client builds a sample
object for each and renders them in one go: 4.8 s of the event loop (41 MB with the
``_created`` series), during which no trigger was answered; in a worker thread the GIL
handed the loop back only now and then. So the daemon's own series are numbers in one
small object per command, and :meth:`Metrics.render_in_slices` writes the text exposition
format itself, a slice of commands between two checkpoints of the loop. Only the process
metrics (memory, descriptors, start time) still come from prometheus_client's collector.
There are no ``_created`` series: ``process_start_time_seconds`` says when counting began.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import get_args

import trio
import trio.lowlevel
from prometheus_client import CollectorRegistry, ProcessCollector, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.utils import floatToGoString

from ..model.pass_report import TAG_COUNTS, PassReport
from ..model.run import Reason

CONTENT_TYPE = CONTENT_TYPE_LATEST
# Sync runs last from a second to hours; the default buckets stop at 10 s.
RUN_BUCKETS = (0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600, 7200, float("inf"))
# Every reason and result exists at 0 from the start: increase() cannot see a counter's
# first step if the series is born at 1, so an alert on the first failure would never fire.
RUN_REASONS: tuple[str, ...] = get_args(Reason)
RUN_RESULTS = ("success", "failure")
TRIGGER_OUTCOMES = ("accepted", "ignored", "rejected")
SLICE = 200  # commands rendered between two checkpoints of the loop (a few ms)

_BUCKET_LABELS: tuple[str, ...] = tuple(
    floatToGoString(bound)  # type: ignore[no-untyped-call]
    for bound in RUN_BUCKETS
)


@dataclass
class CommandSeries:
    """Every number one command's series show."""

    triggers: dict[str, float] = field(default_factory=lambda: dict.fromkeys(TRIGGER_OUTCOMES, 0.0))
    runs: dict[tuple[str, str], float] = field(
        default_factory=lambda: {(r, s): 0.0 for r in RUN_REASONS for s in RUN_RESULTS}
    )
    buckets: list[float] = field(default_factory=lambda: [0.0] * len(RUN_BUCKETS))  # cumulative
    duration_sum: float = 0.0
    last_success: float = 0.0
    last_run_success: float | None = None  # absent before a run: no alert before any
    running: float = 0.0
    pending: float = 0.0
    age: Callable[[], float] | None = None  # born when the supervisor hands its reader over
    full_pass: dict[str, float] | None = None  # born when a full pass reports its counts
    full_pass_at: float | None = None


Family = tuple[str, str, str, Callable[[str, CommandSeries], Iterator[str]]]


def _value(number: float) -> str:
    text: str = floatToGoString(number)  # type: ignore[no-untyped-call]
    return text


def _triggers(labels: str, series: CommandSeries) -> Iterator[str]:
    for outcome, count in series.triggers.items():
        yield f's3syncer_triggers_total{{{labels},outcome="{outcome}"}} {_value(count)}\n'


def _runs(labels: str, series: CommandSeries) -> Iterator[str]:
    for (reason, result), count in series.runs.items():
        yield (
            f's3syncer_runs_total{{{labels},reason="{reason}",result="{result}"}} {_value(count)}\n'
        )


def _duration(labels: str, series: CommandSeries) -> Iterator[str]:
    name = "s3syncer_run_duration_seconds"
    for bound, count in zip(_BUCKET_LABELS, series.buckets, strict=True):
        yield f'{name}_bucket{{{labels},le="{bound}"}} {_value(count)}\n'
    yield f"{name}_count{{{labels}}} {_value(series.buckets[-1])}\n"
    yield f"{name}_sum{{{labels}}} {_value(series.duration_sum)}\n"


def _gauge(
    name: str, read: Callable[[CommandSeries], float | None]
) -> Callable[[str, CommandSeries], Iterator[str]]:
    def lines(labels: str, series: CommandSeries) -> Iterator[str]:
        number = read(series)
        if number is not None:
            yield f"{name}{{{labels}}} {_value(number)}\n"

    return lines


def _full_pass(labels: str, series: CommandSeries) -> Iterator[str]:
    for outcome, count in (series.full_pass or {}).items():
        yield f's3syncer_last_full_pass_tags{{{labels},outcome="{outcome}"}} {_value(count)}\n'


def _age(series: CommandSeries) -> float | None:
    return None if series.age is None else series.age()


FAMILIES: tuple[Family, ...] = (
    (
        "s3syncer_triggers_total",
        "counter",
        "Webhook events received, by outcome: accepted (matched a rule), ignored, rejected.",
        _triggers,
    ),
    (
        "s3syncer_runs_total",
        "counter",
        "Finished runs by reason and result (success or failure).",
        _runs,
    ),
    ("s3syncer_run_duration_seconds", "histogram", "How long runs took.", _duration),
    (
        "s3syncer_last_success_timestamp_seconds",
        "gauge",
        "Unix time of the end of the last successful run, restarts included (0: none).",
        _gauge("s3syncer_last_success_timestamp_seconds", lambda s: s.last_success),
    ),
    (
        "s3syncer_last_run_success",
        "gauge",
        "1 if the command's last run succeeded, 0 if it failed (absent before a run).",
        _gauge("s3syncer_last_run_success", lambda s: s.last_run_success),
    ),
    (
        "s3syncer_running",
        "gauge",
        "1 while the command runs.",
        _gauge("s3syncer_running", lambda s: s.running),
    ),
    (
        "s3syncer_pending_triggers",
        "gauge",
        "Triggers accepted and not yet covered by a started run.",
        _gauge("s3syncer_pending_triggers", lambda s: s.pending),
    ),
    (
        "s3syncer_pending_event_age_seconds",
        "gauge",
        "Age of the oldest accepted event no successful run has covered yet (0: none).",
        _gauge("s3syncer_pending_event_age_seconds", _age),
    ),
    (
        "s3syncer_last_full_pass_tags",
        "gauge",
        "Tags the command's last full pass reported, by what it did: checked, repaired, "
        "deleted, kept (a repair is a change no notification brought).",
        _full_pass,
    ),
    (
        "s3syncer_last_full_pass_timestamp_seconds",
        "gauge",
        "Unix time the command's last full pass reported its counts.",
        _gauge("s3syncer_last_full_pass_timestamp_seconds", lambda s: s.full_pass_at),
    ),
)


def _labels(name: str) -> str:
    escaped = name.replace("\\", r"\\").replace("\n", r"\n").replace('"', r"\"")
    return f'command="{escaped}"'


class Metrics:
    """The daemon's metrics; each method is one thing that happened."""

    def __init__(self) -> None:
        # process_start_time_seconds lets an alert tell "no success yet" from "just started";
        # memory and file descriptors show the daemon stays bounded under bursts.
        self.process = CollectorRegistry(auto_describe=True)
        ProcessCollector(registry=self.process)
        self.commands: dict[str, CommandSeries] = {}

    def add_command(self, name: str) -> None:
        """Make a command's series exist (at zero) before anything happens to it."""
        self._series(name)

    def remove_command(self, name: str) -> None:
        """Drop a command's series (it left the configuration): no alert on a ghost."""
        self.commands.pop(name, None)

    def _series(self, name: str) -> CommandSeries:
        series = self.commands.get(name)
        if series is None:
            series = self.commands[name] = CommandSeries()
        return series

    def track_pending_event_age(self, name: str, age: Callable[[], float]) -> None:
        """Read the command's event lag from ``age`` at each scrape: it grows between events."""
        self._series(name).age = age

    def triggered(self, name: str, accepted: int, ignored: int) -> None:
        """Count the events of one webhook request."""
        series = self._series(name)
        series.triggers["accepted"] += accepted
        series.triggers["ignored"] += ignored

    def rejected(self, name: str) -> None:
        """Count a request that was refused (bad body, no token, full buffer)."""
        self._series(name).triggers["rejected"] += 1

    def pending(self, name: str, count: int) -> None:
        """Set the number of pending triggers."""
        self._series(name).pending = count

    def running(self, name: str, running: bool) -> None:
        """Mark the command as running or not."""
        self._series(name).running = 1 if running else 0

    def run_finished(self, name: str, reason: str, ok: bool, duration: float) -> None:
        """Record a finished run."""
        series = self._series(name)
        key = (reason, "success" if ok else "failure")
        series.runs[key] = series.runs.get(key, 0.0) + 1
        for index, bound in enumerate(RUN_BUCKETS):
            if duration <= bound:
                series.buckets[index] += 1
        series.duration_sum += duration
        series.last_run_success = 1 if ok else 0
        if ok:
            series.last_success = time.time()

    def full_pass(self, name: str, report: PassReport) -> None:
        """Record the counts a full pass reported; a count it left out reads 0."""
        series = self._series(name)
        series.full_pass = {outcome: float(report.tags.get(outcome, 0)) for outcome in TAG_COUNTS}
        series.full_pass_at = time.time()

    def restore(self, name: str, last_ok: bool | None, last_success_at: float | None) -> None:
        """Set a command's last result and last success as its history has them at start.

        Without this a restart resolves an alert on a failed last run, and the last success
        reads 0 ("none") until the next run ends.
        """
        series = self._series(name)
        if last_ok is not None:
            series.last_run_success = 1 if last_ok else 0
        if last_success_at is not None:
            series.last_success = last_success_at

    def render(self) -> bytes:
        """The Prometheus text exposition of every metric, at once."""
        parts = [generate_latest(self.process).decode()]
        for name, _type, _help, lines in FAMILIES:
            parts.append(self._head(name, _type, _help))
            for command, series in self.commands.items():
                parts.extend(lines(_labels(command), series))
        return "".join(parts).encode()

    async def render_in_slices(self) -> bytes:
        """:meth:`render`, with a checkpoint of the loop every ``SLICE`` commands."""
        parts = [generate_latest(self.process).decode()]
        for name, _type, _help, lines in FAMILIES:
            parts.append(self._head(name, _type, _help))
            commands = list(self.commands)
            for start in range(0, len(commands), SLICE):
                for command in commands[start : start + SLICE]:
                    series = self.commands.get(command)
                    if series is not None:  # removed since the list was taken: no ghost
                        parts.extend(lines(_labels(command), series))
                await trio.lowlevel.checkpoint()
        return "".join(parts).encode()

    @staticmethod
    def _head(name: str, kind: str, text: str) -> str:
        return f"# HELP {name} {text}\n# TYPE {name} {kind}\n"
