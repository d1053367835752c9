"""Prometheus metrics, on a registry of our own so tests and reloads never collide."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from typing import get_args

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    ProcessCollector,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from ..model.run import Reason

CONTENT_TYPE = CONTENT_TYPE_LATEST
# A `_created` series per counter and histogram doubled what a scrape carries for a
# timestamp nobody alerts on (process_start_time_seconds says when counting began).
# The switch is global to prometheus_client; only the daemon uses it in this process.
disable_created_metrics()  # type: ignore[no-untyped-call]
# Sync runs last from a second to hours; the default buckets stop at 10 s.
RUN_BUCKETS = (0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600, 7200, float("inf"))
# Every reason and result exists at 0 from the start: increase() cannot see a counter's
# first step if the series is born at 1, so an alert on the first failure would never fire.
RUN_REASONS: tuple[str, ...] = get_args(Reason)
RUN_RESULTS = ("success", "failure")
TRIGGER_OUTCOMES = ("accepted", "ignored", "rejected")


class Metrics:
    """The daemon's metrics; each method is one thing that happened."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        # process_start_time_seconds lets an alert tell "no success yet" from "just started";
        # memory and file descriptors show the daemon stays bounded under bursts.
        ProcessCollector(registry=self.registry)
        self.triggers = Counter(
            "s3syncer_triggers",
            "Webhook events received, by outcome: accepted (matched a rule), ignored, rejected.",
            ["command", "outcome"],
            registry=self.registry,
        )
        self.runs = Counter(
            "s3syncer_runs",
            "Finished runs by reason and result (success or failure).",
            ["command", "reason", "result"],
            registry=self.registry,
        )
        self.duration = Histogram(
            "s3syncer_run_duration_seconds",
            "How long runs took.",
            ["command"],
            buckets=RUN_BUCKETS,
            registry=self.registry,
        )
        self.last_success = Gauge(
            "s3syncer_last_success_timestamp_seconds",
            "Unix time of the end of the last successful run (0: none since start).",
            ["command"],
            registry=self.registry,
        )
        self.last_run_success = Gauge(
            "s3syncer_last_run_success",
            "1 if the command's last run succeeded, 0 if it failed (absent before a run).",
            ["command"],
            registry=self.registry,
        )
        self.running_gauge = Gauge(
            "s3syncer_running",
            "1 while the command runs.",
            ["command"],
            registry=self.registry,
        )
        self.pending_gauge = Gauge(
            "s3syncer_pending_triggers",
            "Triggers accepted and not yet covered by a started run.",
            ["command"],
            registry=self.registry,
        )

        self.pending_event_age = Gauge(
            "s3syncer_pending_event_age_seconds",
            "Age of the oldest accepted event no successful run has covered yet (0: none).",
            ["command"],
            registry=self.registry,
        )

    def add_command(self, name: str) -> None:
        """Make a command's series exist (at zero) before anything happens to it."""
        for metric, labels in self._series(name):
            # Born later: the last run's success at its end (no alert before any run),
            # the event lag when the supervisor hands its reader over.
            if metric is not self.last_run_success and metric is not self.pending_event_age:
                metric.labels(*labels)
        self.running_gauge.labels(name).set(0)
        self.pending_gauge.labels(name).set(0)

    def remove_command(self, name: str) -> None:
        """Drop a command's series (it left the configuration): no alert on a ghost."""
        for metric, labels in self._series(name):
            # A series that never existed is fine to "remove".
            with contextlib.suppress(KeyError):
                metric.remove(*labels)

    def _series(self, name: str) -> Iterator[tuple[Counter | Gauge | Histogram, tuple[str, ...]]]:
        """Every series command ``name`` has, as its metric and its labels."""
        for metric in (
            self.last_success,
            self.last_run_success,
            self.running_gauge,
            self.pending_gauge,
            self.pending_event_age,
            self.duration,
        ):
            yield metric, (name,)
        for outcome in TRIGGER_OUTCOMES:
            yield self.triggers, (name, outcome)
        for reason in RUN_REASONS:
            for result in RUN_RESULTS:
                yield self.runs, (name, reason, result)

    def track_pending_event_age(self, name: str, age: Callable[[], float]) -> None:
        """Read the command's event lag from ``age`` at each scrape: it grows between events."""
        self.pending_event_age.labels(name).set_function(age)

    def triggered(self, name: str, accepted: int, ignored: int) -> None:
        """Count the events of one webhook request."""
        if accepted:
            self.triggers.labels(name, "accepted").inc(accepted)
        if ignored:
            self.triggers.labels(name, "ignored").inc(ignored)

    def rejected(self, name: str) -> None:
        """Count a request that was refused (bad body, no token, full buffer)."""
        self.triggers.labels(name, "rejected").inc()

    def pending(self, name: str, count: int) -> None:
        """Set the number of pending triggers."""
        self.pending_gauge.labels(name).set(count)

    def running(self, name: str, running: bool) -> None:
        """Mark the command as running or not."""
        self.running_gauge.labels(name).set(1 if running else 0)

    def run_finished(self, name: str, reason: str, ok: bool, duration: float) -> None:
        """Record a finished run."""
        self.runs.labels(name, reason, "success" if ok else "failure").inc()
        self.duration.labels(name).observe(duration)
        self.last_run_success.labels(name).set(1 if ok else 0)
        if ok:
            self.last_success.labels(name).set(time.time())

    def render(self) -> bytes:
        """The Prometheus text exposition of every metric."""
        return generate_latest(self.registry)
