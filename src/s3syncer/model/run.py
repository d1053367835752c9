"""A run, from the trigger that asks for it to the record the history keeps.

A :class:`Trigger` asks for a run; the coalescer folds triggers into one :class:`RunRequest`;
the launcher fills its :class:`OutputTail` and returns a :class:`RunResult`; the runner keeps a
:class:`RunRecord` of the run in progress and the last one; the history keeps a
:class:`PastRun` of each. Times are Unix seconds until the web layer renders them.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, cast

from .event import Event
from .event_log import EventLog
from .pass_report import PassReport

TAIL_BYTES = 64 * 1024


class OutputTail:
    """The last ``limit`` bytes of a run's output (stdout and stderr, in the order written)."""

    def __init__(self, limit: int = TAIL_BYTES) -> None:
        self.limit = limit
        self._buffer = bytearray()

    def append(self, line: bytes) -> None:
        """Add one line (without its newline)."""
        self._buffer += line + b"\n"
        if len(self._buffer) > self.limit:
            del self._buffer[: len(self._buffer) - self.limit]

    def extend(self, data: bytes) -> None:
        """Add output as it came, newlines and all."""
        self._buffer += data[-self.limit :]
        if len(self._buffer) > self.limit:
            del self._buffer[: len(self._buffer) - self.limit]

    @property
    def text(self) -> str:
        """The kept bytes as text; bytes that are not UTF-8 are replaced."""
        return bytes(self._buffer).decode("utf-8", "replace")


KEEP_RUNS = 20

Reason = Literal["startup", "event", "reconcile", "schedule", "manual", "retry", "recovered"]


@dataclass(frozen=True)
class Trigger:
    """A request for a run. ``immediate`` skips the quiet period (startup, ticks when idle)."""

    reason: Reason
    events: tuple[Event, ...] = ()
    immediate: bool = False
    seq: int = 0  # the journal batch that recorded these events (durable state), if any
    truncated: bool = False  # some events of this trigger are unknown: sync everything
    accepted_at: float | None = None  # when its events were accepted, if before it came


@dataclass(frozen=True)
class RunRequest:
    """What one run is for: handed to the launcher."""

    run_id: int
    reason: Reason
    events: EventLog
    triggers: int
    seq: int = 0
    output: OutputTail = field(default_factory=OutputTail)  # filled by the launcher as it runs


@dataclass(frozen=True)
class RunResult:
    """How a run ended. A run fails on a non-zero exit, a signal, a timeout or no start."""

    exit_code: int | None = None
    signal: int | None = None
    timed_out: bool = False
    error: str | None = None
    output_tail: str = ""
    report: PassReport | None = None  # what the command said it found, if it said

    @property
    def ok(self) -> bool:
        """Whether the run succeeded."""
        return self.exit_code == 0 and not self.timed_out and self.error is None

    def describe(self) -> str:
        """A few words for a log line: ``exit 0``, ``killed by signal 9``, ``timed out``."""
        if self.error is not None:
            return self.error
        if self.timed_out:
            return "timed out"
        if self.signal is not None:
            return f"killed by signal {self.signal}"
        return f"exit {self.exit_code}"

    @classmethod
    def from_outcome(cls, ok: bool, outcome: str) -> RunResult:
        """The result a history's ``outcome`` (a :meth:`describe` text) stands for.

        The history keeps only the text, so a run from before a restart is read back from
        it: ``exit N``, ``killed by signal N`` and ``timed out`` as such, anything else (a
        run that could not start, one killed at shutdown) as its error. ``ok`` wins.
        """
        words = outcome.split()
        if ok:
            return cls(exit_code=0)
        if len(words) == 2 and words[0] == "exit" and _is_int(words[1]) and words[1] != "0":
            return cls(exit_code=int(words[1]))
        if outcome.startswith("killed by signal ") and _is_int(words[-1]) and len(words) == 4:
            return cls(signal=int(words[-1]))
        if outcome == "timed out":
            return cls(timed_out=True)
        return cls(error=outcome or "failed")


def _is_int(text: str) -> bool:
    return text.lstrip("-").isdigit()


@dataclass
class RunRecord:
    """The last run, as the status API shows it."""

    run_id: int
    reason: Reason
    started_at: float
    ended_at: float | None = None
    triggers: int = 0
    events: int = 0
    result: RunResult | None = None
    output: OutputTail | None = None  # while it runs: what it wrote so far
    before_restart: bool = False  # read back from the history: its output was not kept

    @property
    def duration(self) -> float | None:
        """Seconds the run took, once it ended."""
        return None if self.ended_at is None else self.ended_at - self.started_at


@dataclass(frozen=True)
class PastRun:
    """One finished run, as the history keeps it (its output stays with the last run only)."""

    run_id: int
    reason: str
    started_at: float
    ended_at: float
    triggers: int
    events: int
    ok: bool
    outcome: str  # "exit 0", "exit 3", "timed out", "killed by signal 9", "cannot start ..."

    @property
    def duration(self) -> float:
        """Seconds the run took."""
        return max(0.0, self.ended_at - self.started_at)

    @classmethod
    def of(cls, record: RunRecord) -> PastRun:
        """The history's view of a finished run."""
        assert record.result is not None and record.ended_at is not None
        return cls(
            run_id=record.run_id,
            reason=record.reason,
            started_at=record.started_at,
            ended_at=record.ended_at,
            triggers=record.triggers,
            events=record.events,
            ok=record.result.ok,
            outcome=record.result.describe(),
        )

    def as_record(self) -> RunRecord:
        """This run as the last run of a command that has not run since a restart."""
        return RunRecord(
            run_id=self.run_id,
            reason=cast(Reason, self.reason),  # shown as text, never matched on
            started_at=self.started_at,
            ended_at=self.ended_at,
            triggers=self.triggers,
            events=self.events,
            result=RunResult.from_outcome(self.ok, self.outcome),
            before_restart=True,
        )

    def to_json(self) -> dict[str, Any]:
        """The stored form."""
        return {
            "runId": self.run_id,
            "reason": self.reason,
            "start": self.started_at,
            "end": self.ended_at,
            "triggers": self.triggers,
            "events": self.events,
            "ok": self.ok,
            "outcome": self.outcome,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> PastRun:
        """Read the stored form back; ``ValueError`` if it is not one."""
        try:
            run = cls(
                run_id=int(data["runId"]),
                reason=str(data["reason"]),
                started_at=float(data["start"]),
                ended_at=float(data["end"]),
                triggers=int(data["triggers"]),
                events=int(data["events"]),
                ok=bool(data["ok"]),
                outcome=str(data["outcome"]),
            )
        except (KeyError, TypeError) as exc:
            raise ValueError(f"not a run: {exc}") from None
        return run


class RecentRuns:
    """A command's last ``keep`` runs, its last success, and the id the next run goes on from.

    This is the run log the runner writes to when nothing keeps it on disk; the daemon's
    :class:`~s3syncer.durable.history.RunHistory` is the same log, saved.
    """

    def __init__(self, keep: int = KEEP_RUNS) -> None:
        self.last_run_id = 0
        self.last_success: PastRun | None = None
        self._runs: deque[PastRun] = deque(maxlen=keep)

    def __iter__(self) -> Iterator[PastRun]:
        """Oldest first."""
        return iter(self._runs)

    def __len__(self) -> int:
        return len(self._runs)

    def started(self, run_id: int) -> None:
        """Note the id of a run that starts now: the next start goes on from it."""
        self.last_run_id = max(self.last_run_id, run_id)

    def add(self, run: PastRun) -> None:
        """Remember a finished run."""
        self._runs.append(run)
        if run.ok:
            self.last_success = run

    def close(self) -> None:
        """No more runs will be added."""
