"""Durable pending triggers: what a registry was told is delivered survives a restart.

With ``stateDir`` set, each command has a journal: the events accepted for it
and not yet covered by a successful run. The webhook handler records events
and waits for the journal to reach the disk (write, fsync, rename) before it
answers 200. Writes are group-committed: one write in flight per command, and
every request that arrives meanwhile is covered by the next single write, so a
burst costs a few writes, not one per request. A successful run settles the
events it covered; at start, a journal that is not empty runs its command at
once with reason ``recovered``.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import trio

from .events import MAX_EVENTS_PER_RUN, Event, EventLog, event_from_document

log = logging.getLogger("s3syncer.journal")

FORMAT_VERSION = 1


@dataclass(frozen=True)
class Recovered:
    """What a journal held at start: its events, and whether some were lost or cut."""

    events: tuple[Event, ...]
    truncated: bool


class Journal:
    """One command's accepted, not yet successfully run events, mirrored to ``path``."""

    def __init__(self, path: Path, limit: int = MAX_EVENTS_PER_RUN) -> None:
        self.path = path
        self._events = EventLog(limit)
        self._seq = 0
        self._version = 0
        self._saved_version = 0
        self._writing: trio.Event | None = None

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

    def record(self, events: Iterable[Event], *, truncated: bool = False) -> int:
        """Remember ``events`` (de-duplicated, bounded); return the batch's sequence number."""
        self._seq += 1
        self._events.extend(events, self._seq)
        self._events.truncated = self._events.truncated or truncated
        self._version += 1
        return self._seq

    def settle(self, seq: int) -> None:
        """Forget what batches up to ``seq`` recorded: a run covering them succeeded."""
        if not len(self._events) and not self.truncated:
            return
        self._events.forget_through(seq)
        self._version += 1

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
        events = [event.to_document() for event in self._events]
        document = None
        if events or self.truncated:
            document = {
                "version": FORMAT_VERSION,
                "events": events,
                "truncated": self.truncated,
                "savedAt": time.time(),
            }
        try:
            # The write itself cannot be cancelled halfway: the file is replaced whole or not.
            await trio.to_thread.run_sync(_replace_file, self.path, document)
            self._saved_version = max(self._saved_version, version)
        finally:
            self._writing = None
            done.set()

    def load(self) -> Recovered | None:
        """Read the file left by a previous process; None when there is nothing to recover."""
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return None
        except (OSError, UnicodeDecodeError) as exc:
            return self._unreadable(f"cannot read it: {exc}")
        try:
            document = json.loads(text)
            if not isinstance(document, dict) or not isinstance(document.get("events"), list):
                raise ValueError("no events list")
            events = [
                event_from_document(index, raw) for index, raw in enumerate(document["events"])
            ]
        except ValueError as exc:
            return self._unreadable(f"it is corrupt ({exc})")
        truncated = bool(document.get("truncated", False))
        self.record(events, truncated=truncated)
        self._saved_version = self._version
        return Recovered(tuple(events), truncated)

    def _unreadable(self, why: str) -> Recovered:
        # A spare sync is cheap, a missed one is not: run anyway, and say the list is partial.
        log.warning("state file %s: %s; the command runs anyway with no event list", self.path, why)
        self.record((), truncated=True)
        return Recovered((), truncated=True)


def _replace_file(path: Path, document: dict[str, Any] | None) -> None:
    """Atomically replace ``path`` with ``document`` (write, fsync, rename), or remove it."""
    if document is None:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
        _fsync_dir(path.parent)
        return
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with temporary.open("w", encoding="utf-8") as file:
        json.dump(document, file, separators=(",", ":"))
        file.flush()
        os.fsync(file.fileno())
    temporary.replace(path)
    _fsync_dir(path.parent)


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def open_journal(state_dir: str, command: str) -> Journal:
    """The journal of ``command`` in ``state_dir``, creating the directory if needed."""
    directory = Path(state_dir)
    directory.mkdir(parents=True, exist_ok=True)
    return Journal(directory / f"{command}.json")
