"""The directory that holds the runs' events files, owned by one daemon at a time.

Events files used to go to TMPDIR, where a daemon killed mid-run left them for good. Now
they live in a directory of the daemon's own, locked while it runs:

- with ``stateDir``: ``STATEDIR/runs``, the one place a restart must find again; its lock
  also keeps a second daemon off the stateDir's journals;
- without: a fresh directory made with ``mkdtemp`` (0700, a random name) under TMPDIR.
  A fixed name there (it was ``s3syncer-UID-HASH``) lets any local user create it first:
  the daemon then adopted a 0777 directory of theirs, created a file through their
  ``.lock`` symlink and ran commands on their events files. The name starts with
  ``s3syncer-UID-HASH-`` (HASH of the config file's path), so a restart still finds what
  a killed daemon left there, but only directories that are ours (owner, mode 0700, not
  a symlink) and that no running daemon locks are cleaned; nothing is ever adopted.

At start the daemon ends every process of an earlier run there (they carry its path in
``S3SYNCER_EVENTS_FILE``) and removes what they left. tmpfiles ageing or an ``rm -rf`` may
remove the directory while the daemon runs: :meth:`RunDirectory.ensure`, called before
each run, makes it again (a new one under TMPDIR), so no later run fails with ENOENT.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import logging
import os
import shutil
import stat
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path

import trio

from .leftovers import end_processes, processes_of_runs_in

log = logging.getLogger("s3syncer")

LOCK_NAME = ".lock"
_NO_FOLLOW = os.O_NOFOLLOW | os.O_CLOEXEC


class DirectoryInUseError(OSError):
    """Another running s3syncer holds the directory's lock."""


@dataclass(frozen=True)
class Location:
    """Where a daemon keeps its runs' files: a fixed path, or a prefix under TMPDIR."""

    path: str | None = None  # STATEDIR/runs
    parent: str = ""  # without stateDir: TMPDIR
    prefix: str = "s3syncer-runs-"  # ... and the start of the directory's name

    @property
    def legacy(self) -> str:
        """The fixed name earlier versions used under TMPDIR: cleaned if it is ours."""
        return os.path.join(self.parent, self.prefix.rstrip("-"))


def default_location(state_dir: str | None, config_path: str | None) -> Location:
    """Where a daemon with this ``stateDir`` and config file keeps its runs' files."""
    if state_dir is not None:
        return Location(path=os.path.join(state_dir, "runs"))
    parent = tempfile.gettempdir()
    if config_path is None:
        return Location(parent=parent)
    digest = hashlib.sha256(os.fsencode(os.path.abspath(config_path))).hexdigest()[:16]
    return Location(parent=parent, prefix=f"s3syncer-{os.geteuid()}-{digest}-")


def is_private(info: os.stat_result) -> bool:
    """A real directory (not a symlink) of this user that nobody else may enter."""
    return (
        stat.S_ISDIR(info.st_mode)
        and info.st_uid == os.geteuid()
        and not info.st_mode & (stat.S_IRWXG | stat.S_IRWXO)
    )


class RunDirectory:
    """A directory only this daemon writes to; :meth:`claim` it before the first run."""

    def __init__(self, location: Location | str | None) -> None:
        if not isinstance(location, Location):
            location = Location(path=location) if location else Location(parent=_tmp())
        self.location = location
        self.path: str | None = None
        self._lock_fd: int | None = None
        self._identity: tuple[int, int] | None = None
        self._leftovers: list[str] = []  # earlier daemons' directories, for clear()
        self._mutex = threading.Lock()  # runs of two commands may find it gone at once

    def claim(self, *, exclusive: bool = False) -> None:
        """Create and lock the directory; without a lock, fall back to a fresh one.

        ``exclusive`` when the directory is a stateDir's: another daemon holding it shares our
        journals, so raise DirectoryInUseError rather than fall back.
        """
        if self.location.path is not None:
            try:
                self._claim_fixed(self.location.path)
                return
            except BlockingIOError:
                if exclusive:
                    raise DirectoryInUseError(
                        errno.EBUSY, f"{self.location.path} is locked by another s3syncer"
                    ) from None
                log.warning(
                    "%s is in use by another s3syncer; using a new directory", self.location.path
                )
            except OSError as exc:
                log.warning("cannot use %s for events files: %s", self.location.path, exc)
            self.location = Location(parent=_tmp())
        self._leftovers = self._find_leftovers()
        self._claim_fresh()

    def ensure(self) -> str:
        """The directory, made again if it went away (or was replaced) since the last run."""
        with self._mutex:
            assert self.path is not None, "claim() first"
            if self._intact():
                return self.path
            gone = self.path
            self._unlock()
            try:
                if self.location.path is not None:
                    self._claim_fixed(self.location.path)
                else:
                    self._claim_fresh()
            except OSError:
                self.location = Location(parent=_tmp())
                self._claim_fresh()
            log.warning("the run directory %s went away; made %s", gone, self.path)
            return self.path

    def _intact(self) -> bool:
        try:
            info = os.lstat(self.path or "")
        except OSError:
            return False
        # the very directory we made and locked: not one made since under its name
        return stat.S_ISDIR(info.st_mode) and (info.st_dev, info.st_ino) == self._identity

    def _claim_fixed(self, path: str) -> None:
        os.makedirs(path, 0o700, exist_ok=True)  # the stateDir too, on a first start
        info = os.lstat(path)
        if stat.S_ISLNK(info.st_mode) or not stat.S_ISDIR(info.st_mode):
            raise OSError(errno.ENOTDIR, f"{path} is not a directory (a symlink?)")
        self._lock(path, os.O_CREAT)

    def _claim_fresh(self) -> None:
        # mkdtemp: a name nobody could guess or create first, mode 0700
        path = tempfile.mkdtemp(prefix=self.location.prefix, dir=self.location.parent)
        self._lock(path, os.O_CREAT | os.O_EXCL)

    def _lock(self, path: str, create: int) -> None:
        fd = os.open(os.path.join(path, LOCK_NAME), os.O_RDWR | create | _NO_FOLLOW, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            info = os.lstat(path)
        except OSError:
            os.close(fd)
            raise
        self.path, self._lock_fd = path, fd
        self._identity = (info.st_dev, info.st_ino)

    def _unlock(self) -> None:
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    def _find_leftovers(self) -> list[str]:
        """Earlier daemons' directories of this config: ours, private, and not locked."""
        parent, prefix = self.location.parent, self.location.prefix
        legacy = os.path.basename(self.location.legacy)
        try:
            names = [n for n in os.listdir(parent) if n.startswith(prefix) or n == legacy]
        except OSError:
            return []
        return [
            os.path.join(parent, n) for n in sorted(names) if _abandoned(os.path.join(parent, n))
        ]

    async def clear(self, kill_grace: float) -> None:
        """End every process of an earlier daemon's runs here, then remove its files."""
        assert self.path is not None
        for path in [self.path, *self._leftovers]:
            leftover = processes_of_runs_in(path)
            await end_processes(leftover, kill_grace, "left by runs before this start", reap=False)
        removed = await trio.to_thread.run_sync(self._empty)
        for path in self._leftovers:
            await trio.to_thread.run_sync(_remove_tree, path)
        self._leftovers = []
        if removed:
            log.warning("removed %d events file(s) left by runs before this start", removed)

    def _empty(self) -> int:
        removed = 0
        for directory in [self.path, *self._leftovers]:
            assert directory is not None
            with contextlib.suppress(OSError):
                for entry in Path(directory).iterdir():
                    if entry.name != LOCK_NAME and _remove_entry(entry):
                        removed += 1
        return removed

    def release(self) -> None:
        """After a clean shutdown (no run left): remove the directory and drop the lock."""
        if self.path is None or self._lock_fd is None:
            return
        if self._intact():
            with contextlib.suppress(OSError):
                os.unlink(os.path.join(self.path, LOCK_NAME))
                os.rmdir(self.path)
        self._unlock()


def _tmp() -> str:
    return tempfile.gettempdir()


def _abandoned(path: str) -> bool:
    """Whether ``path`` is a directory of ours that no running daemon holds."""
    try:
        if not is_private(os.lstat(path)):
            return False  # someone else's, or a symlink: never touched
        fd = os.open(os.path.join(path, LOCK_NAME), os.O_RDONLY | _NO_FOLLOW)
    except FileNotFoundError:
        return os.path.isdir(path)  # ours, and its daemon never locked it or let it go
    except OSError:
        return False  # a .lock that is a symlink, say: not ours to judge
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return False  # a running daemon's
    finally:
        os.close(fd)  # the lock goes with it: the directory is removed right after
    return True


def _remove_entry(entry: Path) -> bool:
    try:
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry)
        else:
            entry.unlink()
    except OSError:
        return False
    return True


def _remove_tree(path: str) -> None:
    with contextlib.suppress(OSError):
        shutil.rmtree(path)
