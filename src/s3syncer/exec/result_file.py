"""What a command keeps beyond a run: its result file, and a directory for its state.

The result file is named in ``S3SYNCER_RESULT_FILE`` and read once the run ended.

It lives beside the run's events file in the private run directory and goes with it.
A file that is not there is no report; one that cannot be read as a
:class:`~s3syncer.model.pass_report.PassReport` is logged once for the run and left out:
the run's outcome is its exit code's, whatever the file holds.
"""

from __future__ import annotations

import contextlib
import logging
import os
import stat

from ..model.pass_report import RESULT_FILE_LIMIT, PassReport
from ..model.strict_json import strict_json

log = logging.getLogger("s3syncer.process")


def result_path(events_file: str) -> str:
    """Where the run whose events are in ``events_file`` may write its result."""
    return f"{events_file}.result"


def take_report(path: str, command: str, run_id: int) -> PassReport | None:
    """Read and remove the result file at ``path``; None when there is none or it is bad."""
    try:
        return PassReport.from_document(strict_json(_read(path)))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        log.warning(
            "%s: run %d: its result file is ignored: %s",
            *(command, run_id, reason),
            extra={"command": command, "run_id": run_id},
        )
        return None
    finally:
        with contextlib.suppress(OSError):
            os.unlink(path)


def _read(path: str) -> str:
    # The command writes it: no symlink followed, no FIFO waited on, no more than the limit.
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise ValueError("it is not a file")
        data = os.read(fd, RESULT_FILE_LIMIT + 1)
    finally:
        os.close(fd)
    if len(data) > RESULT_FILE_LIMIT:
        raise ValueError(f"it is over {RESULT_FILE_LIMIT} bytes")
    return data.decode("utf-8")


COMMANDS_DIR = "commands"  # under stateDir: one directory a command, for what it keeps


def command_state_dir(state_dir: str, command: str) -> str:
    """``STATEDIR/commands/NAME``, made (0700) if missing: the command's own place to keep
    state across runs and restarts (``S3SYNCER_STATE_DIR``), such as replicate's cache."""
    path = os.path.join(state_dir, COMMANDS_DIR, command)
    os.makedirs(path, mode=0o700, exist_ok=True)
    return path
