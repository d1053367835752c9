"""Name a command's program or working directory that is not on this machine.

These are warnings, not errors: a config is often checked in CI, or on a laptop, before
it is deployed to the host that has the sync client; refusing it there would make
``check`` useless where it is most used. ``serve`` logs the same warnings at start, and
a run that cannot start fails with its own error, so nothing goes unsaid.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Mapping

from .checker import Checker


def check_presence(
    checker: Checker,
    path: str,
    cmd: str,
    workdir: str | None,
    search_path: str,
) -> None:
    """Warn, at ``path``, when ``cmd`` or ``workdir`` cannot be used on this machine."""
    if workdir is not None and not os.path.isdir(workdir):
        checker.warning(f"{path}.workdir", f"{workdir} is not a directory on this machine")
    if "/" not in cmd:
        if shutil.which(cmd, path=search_path) is None:
            checker.warning(f"{path}.cmd", f"{cmd} is not found on PATH on this machine")
        return
    # exec resolves a relative path with a slash from the run's working directory
    program = os.path.join(workdir or os.getcwd(), cmd)
    if not os.path.exists(program):
        checker.warning(f"{path}.cmd", f"{cmd} does not exist on this machine")
    elif os.path.isdir(program) or not os.access(program, os.X_OK):
        checker.warning(f"{path}.cmd", f"{cmd} is not executable")


def search_path_of(
    env: Mapping[str, str], unset: frozenset[str], inherit: bool, daemon_env: Mapping[str, str]
) -> str:
    """The PATH a command's program is looked up in: the one its process will get."""
    if "PATH" in env:
        return env["PATH"]
    if inherit and "PATH" not in unset and "PATH" in daemon_env:
        return daemon_env["PATH"]
    return os.defpath  # what exec falls back to without PATH
