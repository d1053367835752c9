"""What one ``replicate`` run covers: the events it was given, or a full convergent pass.

The daemon runs the one command for every reason. When the reason is an event, the run copies
what the events name. When the run was started without an event (``startup``, ``reconcile``,
``schedule``, ``manual``), when its events file is empty for any reason but an event, or when
the file is ``truncated`` (events were dropped, so not all changes are known), the run makes a
full convergent pass instead, as ``--all`` does: notifications are lost (a registry restart
drops those in memory, zot sends each once, garbage collection sends none), and only such a
pass finds what they would have named. The runner never runs one command twice at once, so the
pass and the event runs never race.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .arguments import UsageError

# A run started by the clock or by hand: no event says what changed, so look at everything.
FULL_PASS_REASONS = frozenset({"startup", "reconcile", "schedule", "manual"})


@dataclass(frozen=True)
class RunInput:
    """The run's events, and why it makes a full pass (None: it copies the events only)."""

    events: list[Any] = field(default_factory=list)
    full_pass: str | None = None

    @property
    def full(self) -> bool:
        """Whether the run copies every tag of the source."""
        return self.full_pass is not None


def load_events(path: str) -> tuple[list[Any], bool, str | None]:
    """Read an events file: ``(events, truncated, reason)``. A bare registry envelope works."""
    data = json.loads(Path(path).read_text(encoding="utf-8"))
    if not isinstance(data, dict) or not isinstance(data.get("events"), list):
        raise ValueError("not an events file: no 'events' list")
    reason = data.get("reason")
    return data["events"], bool(data.get("truncated", False)), reason if reason else None


def read_input(args: argparse.Namespace, env: Mapping[str, str]) -> RunInput:
    """What the run covers, from ``--all`` or its events file; UsageError or OSError."""
    if args.all:
        if args.events:
            raise UsageError("--all copies every tag: it takes no --events file")
        return RunInput(full_pass="--all")
    path = args.events or env.get("S3SYNCER_EVENTS_FILE")
    if not path:
        raise UsageError("no events: pass --events FILE, set S3SYNCER_EVENTS_FILE, or use --all")
    try:
        events, truncated, reason = load_events(path)
    except (OSError, ValueError) as exc:
        raise OSError(f"cannot read events file {path}: {exc}") from None
    reason = reason or env.get("S3SYNCER_REASON") or None
    return RunInput(events, _why_full(path, len(events), truncated, reason))


def _why_full(path: str, count: int, truncated: bool, reason: str | None) -> str | None:
    """Why a run with this events file makes a full pass, as the run says it; None if not."""
    if truncated:
        return (
            f"the events file {path} is marked truncated (the {count} events it holds are "
            "not all that happened): copying every tag of the source instead, as --all does"
        )
    if reason in FULL_PASS_REASONS:
        return f"run for {reason}: a full pass over every tag of the source, as --all does"
    if not count and reason != "event":
        # A run by hand with an empty file, or a retry of a failed full pass: no event names
        # anything, so only a full pass can converge. An event run whose events all went
        # elsewhere has nothing to do: it stays a no-op that sends no request.
        return (
            f"no events (reason {reason or 'not given'}): a full pass over every tag of the "
            "source, as --all does"
        )
    return None
