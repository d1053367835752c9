"""The directory that holds the runs' events files, owned by one daemon at a time.

Events files used to go to TMPDIR, where a daemon killed mid-run left them for
good. Now they live in a directory of the daemon's own: ``STATEDIR/runs``, or
without ``stateDir`` one under TMPDIR named after the config file, so a restart
finds it again. The daemon holds a lock on it while it runs, and at start
ends every process of an earlier run there (they carry its path in
``S3SYNCER_EVENTS_FILE``) and empties it.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import logging
import os
import shutil
import tempfile
from pathlib import Path

import trio

from .leftovers import end_processes, processes_of_runs_in

log = logging.getLogger("s3syncer")

LOCK_NAME = ".lock"


class DirectoryInUseError(OSError):
    """Another running s3syncer holds the directory's lock."""


def default_location(state_dir: str | None, config_path: str | None) -> str | None:
    """Where a daemon with this ``stateDir`` and config file keeps its runs' files."""
    if state_dir is not None:
        return os.path.join(state_dir, "runs")
    if config_path is None:
        return None
    digest = hashlib.sha256(os.fsencode(os.path.abspath(config_path))).hexdigest()[:16]
    return os.path.join(tempfile.gettempdir(), f"s3syncer-{os.getuid()}-{digest}")


class RunDirectory:
    """A directory only this daemon writes to; :meth:`claim` it before the first run."""

    def __init__(self, path: str | None) -> None:
        self.path = path
        self._lock_fd: int | None = None

    def claim(self, *, exclusive: bool = False) -> None:
        """Create and lock the directory; without a lock, fall back to a fresh one.

        ``exclusive`` when the directory is a stateDir's: another daemon holding it shares our
        journals, so raise DirectoryInUseError rather than fall back.
        """
        if self.path is not None:
            try:
                self._lock(self.path)
                return
            except BlockingIOError:
                if exclusive:
                    raise DirectoryInUseError(
                        errno.EBUSY, f"{self.path} is locked by another s3syncer"
                    ) from None
                log.warning("%s is in use by another s3syncer; using a new directory", self.path)
            except OSError as exc:
                log.warning("cannot use %s for events files: %s", self.path, exc.strerror)
        self.path = tempfile.mkdtemp(prefix="s3syncer-runs-")
        self._lock(self.path)

    def _lock(self, path: str) -> None:
        os.makedirs(path, mode=0o700, exist_ok=True)
        fd = os.open(os.path.join(path, LOCK_NAME), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            raise
        self._lock_fd = fd

    async def clear(self, kill_grace: float) -> None:
        """End every process of an earlier daemon's runs here, then remove its files."""
        assert self.path is not None
        leftover = processes_of_runs_in(self.path)
        await end_processes(leftover, kill_grace, "left by runs before this start", reap=False)
        removed = await trio.to_thread.run_sync(self._empty)
        if removed:
            log.warning("removed %d events file(s) left by runs before this start", removed)

    def _empty(self) -> int:
        assert self.path is not None
        removed = 0
        for entry in Path(self.path).iterdir():
            if entry.name == LOCK_NAME:
                continue
            with contextlib.suppress(OSError):
                if entry.is_dir() and not entry.is_symlink():
                    shutil.rmtree(entry)
                else:
                    entry.unlink()
                removed += 1
        return removed

    def release(self) -> None:
        """After a clean shutdown (no run left): remove the directory and drop the lock."""
        if self.path is None or self._lock_fd is None:
            return
        with contextlib.suppress(OSError):
            os.unlink(os.path.join(self.path, LOCK_NAME))
            os.rmdir(self.path)
        os.close(self._lock_fd)
        self._lock_fd = None
