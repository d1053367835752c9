"""A command's recent runs: the last 20, its last success, and the id the next run gets.

With ``stateDir`` the history lives in ``STATEDIR/history/NAME.json`` (replaced
atomically, once when a run starts and once when it ends), so run ids go on
across restarts and the page still shows what ran before one. Without it, the
history is kept in memory only. The runner only records, through its run-log port;
:meth:`RunHistory.keep_saved`, a task the supervisor starts beside the runner, does the
writing, so no run waits on the disk.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

import trio

from ..model.run import KEEP_RUNS, PastRun, RecentRuns
from ..model.strict_json import strict_json
from .atomic_file import FILE_DISK, Disk

if TYPE_CHECKING:
    pass

log = logging.getLogger("s3syncer.history")

FORMAT_VERSION = 1
# Not runs/: that holds the runs' events files, and is emptied at every start.
HISTORY_DIR = "history"


class RunHistory(RecentRuns):
    """:class:`RecentRuns`, saved to ``path`` by :meth:`keep_saved` after each change."""

    def __init__(
        self, path: Path | None = None, keep: int = KEEP_RUNS, *, disk: Disk = FILE_DISK
    ) -> None:
        super().__init__(keep)
        self.path = path
        self._disk = disk
        self._failed_to_save = False
        self._changed = trio.Event()
        self._closed = False
        self._dirty = False
        self._lock = trio.Lock()
        self.done = trio.Event()  # set once the last change is on disk after close()

    def started(self, run_id: int) -> None:
        """Note the id of a run that starts now; saved at once, so the id is never reused."""
        super().started(run_id)
        self._changed_now()

    def add(self, run: PastRun) -> None:
        """Remember a finished run."""
        super().add(run)
        self._changed_now()

    def _changed_now(self) -> None:
        self._dirty = True
        self._changed.set()

    def close(self) -> None:
        """No more runs: :meth:`keep_saved` writes what is left and ends."""
        self._closed = True
        self._changed.set()

    async def keep_saved(self) -> None:
        """Write the history each time it changed, until :meth:`close`; then set ``done``."""
        try:
            while True:
                if not self._changed.is_set():
                    await self._changed.wait()
                self._changed = trio.Event()
                if self._dirty:
                    self._dirty = False
                    with trio.CancelScope(shield=True):  # a write is never left half done
                        await self.save()
                # A change made while that write was on its way is written before the end.
                if self._closed and not self._dirty:
                    return
        finally:
            self.done.set()

    def load(self) -> None:
        """Read what a previous process saved; a missing file is a first start."""
        if self.path is None:
            return
        try:
            # Read like the journal: a FIFO, a directory or 100,000 nested brackets in its
            # place is an unreadable history, never a start that hangs or dies.
            document = strict_json(self._disk.read_text(self.path))
            if not isinstance(document, dict) or not isinstance(document.get("runs"), list):
                raise ValueError("no runs list")
            runs = [PastRun.from_json(run) for run in document["runs"]]
            success = document.get("lastSuccess")
            last_success = None if success is None else PastRun.from_json(success)
            last_id = int(document["lastRunId"])
        except FileNotFoundError:
            return
        except (OSError, ValueError, KeyError, TypeError) as exc:
            # Only the page's past is lost; the runs themselves are not affected.
            log.warning("run history %s cannot be read (%s); starting a new one", self.path, exc)
            return
        self._runs.extend(runs)
        self.last_success = last_success
        self.last_run_id = max([last_id, *(run.run_id for run in runs)])

    async def save(self) -> None:
        """Write the history to ``path`` (if any); a failure is logged once, never raised."""
        if self.path is None:
            return
        document = {
            "version": FORMAT_VERSION,
            "lastRunId": self.last_run_id,
            "lastSuccess": None if self.last_success is None else self.last_success.to_json(),
            "runs": [run.to_json() for run in self._runs],
        }
        try:
            async with self._lock:
                # Made by the first write: a command that never ran leaves nothing.
                await self._disk.write(self.path, document, make_directory=True)
        except OSError as exc:
            if not self._failed_to_save:
                log.error("cannot save run history %s: %s", self.path, exc.strerror)
            self._failed_to_save = True
        else:
            self._failed_to_save = False


def open_history(state_dir: str | None, command: str, disk: Disk = FILE_DISK) -> RunHistory:
    """The history of ``command``: kept in ``state_dir`` if given, else in memory."""
    if state_dir is None:
        return RunHistory()
    # The directory is made by the first write: a command that never ran leaves nothing.
    history = RunHistory(Path(state_dir) / HISTORY_DIR / f"{command}.json", disk=disk)
    history.load()
    return history
