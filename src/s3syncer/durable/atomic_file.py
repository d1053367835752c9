"""Files replaced whole or not at all: write, fsync, rename, fsync the directory.

The journal and the run history are written this way, so a crash leaves the old file or
the new one, never half of either; what a crash cut short is removed at the next start.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import stat
import time
from pathlib import Path
from typing import Any, Protocol

import trio

# What replace_file writes before its rename: ``.NAME.json.<pid>.tmp``.
_TEMPORARY = re.compile(r"\..+\.json\.[0-9]+\.tmp")
# State files are the daemon's alone: events can name private repositories.
PRIVATE_MODE = 0o600
PRIVATE_DIRECTORY_MODE = 0o700
_CREATE_PRIVATE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC


def move_aside(path: Path) -> Path:
    """Rename ``path`` to ``NAME.corrupt-<UTC time>``, never over an earlier one."""
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    aside = path.with_name(f"{path.name}.corrupt-{stamp}")
    number = 1
    while aside.exists() or aside.is_symlink():
        number += 1
        aside = path.with_name(f"{path.name}.corrupt-{stamp}-{number}")
    path.rename(aside)
    _fsync_dir(path.parent)
    return aside


def replace_file(path: Path, document: dict[str, Any] | None) -> None:
    """Atomically replace ``path`` with ``document`` (write, fsync, rename), or remove it."""
    if document is None:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
        _fsync_dir(path.parent)
        return
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    # A name left at the temporary path (a crash, or a link planted by someone who can
    # write the directory) is removed, never followed: unlink drops a link, not its target.
    with contextlib.suppress(FileNotFoundError):
        temporary.unlink()
    try:
        # O_EXCL|O_NOFOLLOW: if a link is planted again between the unlink and here, the
        # open fails instead of writing through it. 0600: the events are the daemon's own.
        fd = os.open(temporary, _CREATE_PRIVATE, PRIVATE_MODE)
        with open(fd, "w", encoding="utf-8") as file:
            json.dump(document, file, separators=(",", ":"))
            file.write("\n")  # the journal appends records after it, one a line
            file.flush()
            os.fsync(file.fileno())
        temporary.replace(path)
    except BaseException:
        # ENOSPC halfway: a partial temporary file would hold the space for good.
        with contextlib.suppress(OSError):
            temporary.unlink()
        raise
    _fsync_dir(path.parent)


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def remove_stale_temporaries(state_dir: str) -> list[Path]:
    """Remove what writes cut short by a crash left in ``state_dir``; return what went.

    Call it at start, before any journal writes: every temporary file is then stale.
    """
    removed = []
    # No directory, no leftovers: opening the journals reports a bad stateDir.
    with contextlib.suppress(FileNotFoundError, NotADirectoryError):
        for entry in Path(state_dir).iterdir():
            if _TEMPORARY.fullmatch(entry.name):
                with contextlib.suppress(FileNotFoundError, IsADirectoryError):
                    entry.unlink()
                    removed.append(entry)
    return removed


class Disk(Protocol):
    """The state files as the journal and the history see them: the port tests fake."""

    def read_text(self, path: Path) -> str:
        """The UTF-8 text of ``path``; FileNotFoundError if there is none, ValueError (or
        another OSError) if it cannot be read as a file."""

    async def write(
        self, path: Path, document: dict[str, Any] | None, *, make_directory: bool = False
    ) -> None:
        """Replace ``path`` with ``document`` as JSON, whole or not at all; None removes it.

        With ``make_directory``, the file's directory is made first if it is missing.
        """


class FileDisk:
    """The real disk: reads that never block on a FIFO, writes in a worker thread."""

    def read_text(self, path: Path) -> str:
        """The UTF-8 text of the regular file ``path``."""
        # O_NONBLOCK: opening a FIFO for reading would wait for a writer for ever.
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        try:
            kind = os.fstat(fd).st_mode
            if not stat.S_ISREG(kind):
                raise ValueError(f"it is {_describe_kind(kind)}, not a file")
            with open(fd, "rb", closefd=False) as file:
                return file.read().decode("utf-8")
        finally:
            os.close(fd)

    async def write(
        self, path: Path, document: dict[str, Any] | None, *, make_directory: bool = False
    ) -> None:
        """:func:`replace_file` in a worker thread, so no fsync holds the loop."""
        await trio.to_thread.run_sync(_replace_in, path, document, make_directory)


FILE_DISK = FileDisk()


def _replace_in(path: Path, document: dict[str, Any] | None, make_directory: bool) -> None:
    if make_directory and document is not None:
        path.parent.mkdir(mode=PRIVATE_DIRECTORY_MODE, exist_ok=True)
    replace_file(path, document)


def _describe_kind(mode: int) -> str:
    if stat.S_ISDIR(mode):
        return "a directory"
    if stat.S_ISFIFO(mode):
        return "a FIFO"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "a device"
