"""Files replaced whole or not at all (write, fsync, rename, fsync the directory), or appended to.

The journal and the run history are written this way, so a crash leaves the old file or
the new one, never half of either; what a crash cut short is removed at the next start.
The journal also appends lines (write, fsync): a crash may cut its last line short, which
its reader skips. Every state file is created 0600 and never through a symbolic link.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import re
import stat
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO, Protocol

import trio

# What replace_file writes before its rename: ``.NAME.json.<pid>.tmp``.
_TEMPORARY = re.compile(r"\..+\.json\.[0-9]+\.tmp")
# State files are the daemon's alone: events can name private repositories.
PRIVATE_MODE = 0o600
PRIVATE_DIRECTORY_MODE = 0o700
_CREATE_PRIVATE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
# O_NONBLOCK: opening a FIFO to write would wait for a reader for ever.
_APPEND = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC


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


def append_lines(path: Path, records: list[dict[str, Any]]) -> int:
    """Append each of ``records`` to ``path`` as one JSON line and fsync; return the bytes added.

    The file is created 0600 if missing; a link or anything but a file at ``path`` is an
    OSError, never followed.
    """
    data = "".join(json.dumps(r, separators=(",", ":")) + "\n" for r in records).encode()
    fd = os.open(path, _APPEND, PRIVATE_MODE)
    try:
        status = os.fstat(fd)
        if not stat.S_ISREG(status.st_mode):
            raise OSError(errno.EINVAL, f"it is {_describe_kind(status.st_mode)}, not a file")
        if stat.S_IMODE(status.st_mode) != PRIVATE_MODE:
            os.fchmod(fd, PRIVATE_MODE)  # made by an older version, 0644
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)
        except BaseException:
            # ENOSPC halfway: half a line would hold the space, and a new file nothing.
            _take_back(fd, path, status.st_size)
            raise
    finally:
        os.close(fd)
    if status.st_size == 0:
        _fsync_dir(path.parent)  # a new file: its name must survive a crash too
    return len(data)


def _take_back(fd: int, path: Path, size: int) -> None:
    with contextlib.suppress(OSError):
        if size == 0:
            path.unlink()
        else:
            os.ftruncate(fd, size)


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

    def read_lines(self, path: Path, max_line: int) -> Iterator[str]:
        """The UTF-8 lines of ``path``, with their newlines (the last may have none).

        Raises as :meth:`read_text` does, and ValueError at a line over ``max_line`` bytes:
        memory stays bounded whatever the file holds.
        """

    async def append(self, path: Path, records: list[dict[str, Any]]) -> int:
        """Append ``records`` to ``path`` as JSON lines, fsync'd; return the bytes added."""

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
        with _regular_file(path) as file:
            return file.read().decode("utf-8")

    def read_lines(self, path: Path, max_line: int) -> Iterator[str]:
        """The lines of the regular file ``path``, read one at a time."""
        with _regular_file(path) as file:
            while line := file.readline(max_line + 1):
                if len(line) > max_line:
                    raise ValueError(f"a line of over {max_line} bytes")
                yield line.decode("utf-8")

    async def append(self, path: Path, records: list[dict[str, Any]]) -> int:
        """:func:`append_lines` in a worker thread, so no fsync holds the loop."""
        return await trio.to_thread.run_sync(append_lines, path, records)

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


@contextlib.contextmanager
def _regular_file(path: Path) -> Iterator[BinaryIO]:
    """``path`` opened for reading if it is a regular file; ValueError says what it is else."""
    # O_NONBLOCK: opening a FIFO for reading would wait for a writer for ever.
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        kind = os.fstat(fd).st_mode
        if not stat.S_ISREG(kind):
            raise ValueError(f"it is {_describe_kind(kind)}, not a file")
        with open(fd, "rb", closefd=False) as file:
            yield file
    finally:
        os.close(fd)


def _describe_kind(mode: int) -> str:
    if stat.S_ISDIR(mode):
        return "a directory"
    if stat.S_ISFIFO(mode):
        return "a FIFO"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "a device"
