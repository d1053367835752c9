"""Durable pending triggers: what a registry was told is delivered survives a restart.

With ``stateDir`` set, each command has a journal: the events accepted for it
and not yet covered by a successful run. The webhook handler records events
and waits for the journal to reach the disk (its batch appended and fsync'd; see
:mod:`.journal_file` for the format) before it answers 200. Writes are
group-committed: one write in flight per command, and every request that
arrives meanwhile is covered by the next single write, so a burst costs a few
writes, not one per request. A successful run settles the events it covered
(a settle line, or the file removed when nothing is left); at start, a journal
that is not empty runs its command at once with reason ``recovered``. The file
also keeps when the oldest of its events was accepted, so the lag an operator
alerts on goes on across a restart.

A journal that cannot be read, whatever the reason (not UTF-8 or not JSON,
nested too deeply, NaN, the wrong shape, a FIFO or a directory in its place),
never stops or stalls the start: it is moved aside as
``NAME.json.corrupt-<time>`` for a person to look at, and the command runs at
once marked ``truncated``, so that run covers everything. So is one with a line
longer than any the daemon writes (a whole-document journal of an older version
that grew past the byte budget): a restart reads a line at a time and keeps at
most the budget of events, so its memory stays bounded whatever the file holds.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import trio

from ..model.event import Event
from ..model.event_log import MAX_EVENT_BYTES, MAX_EVENTS_PER_RUN, EventLog
from .atomic_file import FILE_DISK, Disk, move_aside, replace_file
from .journal_file import (
    MAX_LINE_BYTES,
    Batch,
    Recovered,
    Settle,
    batch_document,
    describe_read_error,
    read_records,
    snapshot_document,
)

# Batches recorded this close together share one accept time (the oldest's), so a
# command that keeps failing under a flood of pushes keeps at most one span a second.
ACCEPT_GRAIN = 1.0
# Past this many spans, a new batch joins the newest span (and so its older time): by then
# the lag is over an hour, and memory stays bounded however long the command fails.
MAX_ACCEPT_SPANS = 4096
# Appended lines the file may hold beyond twice its live events before it is replaced whole.
COMPACT_FLOOR = 4 * 1024 * 1024


class AcceptTimes:
    """When the unsettled batches were accepted, to tell the lag, in bounded memory.

    A span ``(last batch, time)`` stands for consecutive batches up to ``last batch``,
    the first of them accepted at ``time``. Joining batches to a span can only make a
    batch look older than it is, never younger: the lag may read high by up to
    ``ACCEPT_GRAIN``, never low.
    """

    def __init__(self) -> None:
        self._spans: deque[tuple[int, float]] = deque()

    def __len__(self) -> int:
        return len(self._spans)

    @property
    def oldest(self) -> float | None:
        """When the oldest unsettled batch was accepted (Unix time), if any."""
        return self._spans[0][1] if self._spans else None

    def add(self, batch: int, at: float) -> None:
        """Batch ``batch`` (higher than any before) was accepted at ``at``."""
        if self._spans and (
            at - self._spans[-1][1] < ACCEPT_GRAIN or len(self._spans) >= MAX_ACCEPT_SPANS
        ):
            self._spans[-1] = (batch, self._spans[-1][1])
        else:
            self._spans.append((batch, at))

    def settle(self, batch: int) -> None:
        """Forget every span that ends at or before ``batch``."""
        while self._spans and self._spans[0][0] <= batch:
            self._spans.popleft()

    def clear(self) -> None:
        """Nothing is waiting any more."""
        self._spans.clear()


class Journal:
    """One command's accepted, not yet successfully run events, mirrored to ``path``.

    Each flush appends what was recorded and settled since the last one (see
    :mod:`.journal_file`), so a webhook costs the bytes of its own events, not of every
    event pending; the file is replaced whole when it grew to twice what it holds.
    """

    def __init__(
        self,
        path: Path,
        limit: int = MAX_EVENTS_PER_RUN,
        *,
        max_bytes: int = MAX_EVENT_BYTES,
        disk: Disk = FILE_DISK,
    ) -> None:
        self.path = path
        self._disk = disk
        self._events = EventLog(limit, max_bytes)
        self._seq = 0
        self._accepted = AcceptTimes()
        self._version = 0
        self._saved_version = 0
        self._writing: trio.Event | None = None
        self._unsaved: list[dict[str, Any]] = []  # lines the next append adds
        # The next write replaces the file whole: so is the first, so that this process's
        # lines never follow another's, whose batch numbers mean something else.
        self._rewrite = True
        self._file_bytes = 0  # what the file holds, about

    def __len__(self) -> int:
        return len(self._events)

    @property
    def seq(self) -> int:
        """The sequence number of the last recorded batch."""
        return self._seq

    @property
    def truncated(self) -> bool:
        """Whether events were lost: too many, or an unreadable file at start."""
        return self._events.truncated

    @property
    def accepted_at(self) -> float | None:
        """When the oldest batch no successful run has covered was recorded (Unix time)."""
        return self._accepted.oldest

    def record(
        self, events: Iterable[Event], *, truncated: bool = False, at: float | None = None
    ) -> int:
        """Remember ``events`` (de-duplicated, bounded); return the batch's sequence number.

        ``at`` is when they were accepted (Unix time), if not now.
        """
        self._seq += 1
        when = time.time() if at is None else at
        kept, lost = self._add_batch(self._seq, events, truncated, when)
        if kept or lost:  # resends alone change nothing a restart needs
            self._unsaved.append(batch_document(self._seq, when, kept, lost))
        self._version += 1
        return self._seq

    def _add_batch(
        self, seq: int, events: Iterable[Event], truncated: bool, at: float
    ) -> tuple[list[Event], bool]:
        self._accepted.add(seq, at)
        kept = self._events.extend(events, seq)
        if truncated:
            self._events.mark_truncated(seq)
        return kept, self._events.truncated_batch == seq

    def settle(self, seq: int) -> None:
        """Forget what batches up to ``seq`` recorded: a run covering them succeeded."""
        if not len(self._events) and not self.truncated:
            return
        self._forget_through(seq)
        if len(self._events) or self.truncated:
            self._unsaved.append({"settle": seq})
        else:
            self._rewrite = True  # nothing is pending: the file goes
        self._version += 1

    def _forget_through(self, seq: int) -> None:
        self._events.forget_through(seq)
        if not len(self._events) and not self.truncated:
            self._accepted.clear()  # batches whose events were all resends: nothing waits
        else:
            self._accepted.settle(seq)

    async def flush(self) -> None:
        """Return once the file holds everything recorded before this call."""
        target = self._version
        while self._saved_version < target:
            if self._writing is None:
                await self._write_once()
            else:
                await self._writing.wait()

    async def _write_once(self) -> None:
        done = trio.Event()
        self._writing = done
        version = self._version
        records, self._unsaved = self._unsaved, []
        try:
            # The write itself cannot be cancelled halfway: a whole line, or a whole file.
            if self._rewrite or self._file_bytes > COMPACT_FLOOR + 2 * self._events.bytes:
                self._rewrite = False
                document = self._document()
                await self._disk.write(self.path, document)
                self._file_bytes = self._events.bytes
            elif records:
                self._file_bytes += await self._disk.append(self.path, records)
            self._saved_version = max(self._saved_version, version)
        except BaseException:
            # Those lines are not on disk, and an append may have left half of one: the
            # next write replaces the file whole, from what is in memory.
            self._rewrite = True
            raise
        finally:
            self._writing = None
            done.set()

    def _document(self) -> dict[str, Any] | None:
        """What the file should hold now; None when there is nothing to keep."""
        if not len(self._events) and not self.truncated:
            return None
        return snapshot_document(
            self._events, self.truncated, self.accepted_at, self._seq, time.time()
        )

    def load(self) -> Recovered | None:
        """Read the file left by a previous process; None when there is nothing to recover.

        Never raises for what the file holds and never blocks on it: an unreadable
        file is moved aside and reported in ``Recovered.problem``. Memory stays within
        the journal's budget however big the file: past it, the events are truncated.
        """
        try:
            for record in read_records(self._disk.read_lines(self.path, MAX_LINE_BYTES)):
                self._replay(record)
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as exc:
            self._forget_all()
            return self._set_aside(describe_read_error(exc))
        events, truncated = tuple(self._events), self.truncated
        # Never in the future: a clock set back must not make a negative lag.
        at = time.time() if self.accepted_at is None else min(self.accepted_at, time.time())
        # What was recovered is batch 1 of this process, which the recovery run covers; the
        # file is replaced at the first write, so its old batch numbers go with it.
        self._forget_all()
        self.record(events, truncated=truncated, at=at)
        self._unsaved = []
        self._rewrite = True
        self._saved_version = self._version
        return Recovered(events, truncated, at)

    def _replay(self, record: Batch | Settle) -> None:
        if isinstance(record, Settle):
            if len(self._events) or self.truncated:
                self._forget_through(record.seq)
            return
        # Batch numbers only grow; one read from a file that says otherwise joins the last.
        self._seq = max(self._seq + 1, record.seq)
        at = time.time() if record.at is None else record.at
        self._add_batch(self._seq, record.events, record.truncated, at)

    def _forget_all(self) -> None:
        self._events = EventLog(self._events.limit, self._events.max_bytes)
        self._accepted.clear()
        self._seq = 0

    def _set_aside(self, why: str) -> Recovered:
        # A spare full sync is cheap, a missed change is not: cover everything.
        at = time.time()  # what the file held is unknown, so is its age: count from now
        self.record((), truncated=True, at=at)
        self._unsaved = []
        problem = f"state file {self.path} is unreadable ({why})"
        try:
            aside = move_aside(self.path)
        except OSError as exc:
            self._rewrite = True
            return Recovered((), True, at, f"{problem} and cannot be moved aside ({exc.strerror})")
        problem += f"; moved it to {aside.name}"
        try:
            # Keep "cover everything" on disk: a restart before that run must not forget it.
            replace_file(self.path, self._document())
            self._saved_version = self._version
        except OSError as exc:
            self._rewrite = True
            problem += f"; cannot write a new one ({exc.strerror})"
        return Recovered((), True, at, problem)


def open_journal(state_dir: str, command: str, disk: Disk = FILE_DISK) -> Journal:
    """The journal of ``command`` in ``state_dir``, creating the directory if needed."""
    directory = Path(state_dir)
    directory.mkdir(parents=True, exist_ok=True)
    return Journal(directory / f"{command}.json", disk=disk)
