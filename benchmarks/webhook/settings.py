"""What the webhook benchmark sends, how much load each figure applies, and its targets."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent
REPO = PACKAGE.parent.parent
RESULTS = REPO / "benchmarks" / "results"
FIXTURES = Path(
    os.environ.get("S3SYNCER_FIXTURES", REPO / "tests" / "fixtures" / "distribution-2.8")
)
# A tagged manifest push, the notification a registry sends most.
FIXTURE = FIXTURES / "05-push-manifest-tag-latest.json"
CONTENT_TYPE = "application/vnd.docker.distribution.events.v1+json"
HOST = "127.0.0.1"

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
