"""File descriptors: raise the soft limit at start, and keep some for the runs.

Every client connection costs a descriptor, and so does every run (its events
file, its output pipes). Containers often start with a soft limit of 1024. A
flood of connections must never leave a run unable to open its files, so the
server accepts at most the limit less a reserve for runs.
"""

from __future__ import annotations

import logging
import os
import resource

log = logging.getLogger("s3syncer")

RESERVED_BASE = 64
"""Descriptors kept free whatever the commands: reloads, state files, /proc reads."""

RESERVED_PER_COMMAND = 16
"""What one run may hold at once: events file, pipes while spawning, pidfd, /proc reads."""

NO_HARD_LIMIT_TARGET = 1 << 20
"""The soft limit to ask for when the hard one is unlimited (the kernel's default nr_open)."""

MAX_CONNECTIONS = 1000
"""The most client connections at once, whatever the limit: a registry needs a few."""


# Before raise_open_files_limit(): what the commands get back (see process.py).
_AT_START = resource.getrlimit(resource.RLIMIT_NOFILE)


def limits_at_start() -> tuple[int, int]:
    """The soft and hard RLIMIT_NOFILE as the process started with them."""
    return _AT_START


def raise_open_files_limit() -> int:
    """Raise the soft RLIMIT_NOFILE to the hard one, log it, and return the soft limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    # Go's runtime does the same since 1.19: the low soft limit only protects select(),
    # which nothing here uses. An unlimited hard limit is not a value the kernel takes.
    target = NO_HARD_LIMIT_TARGET if hard == resource.RLIM_INFINITY else hard
    if soft >= target:
        return soft
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    except (ValueError, OSError) as exc:
        log.warning("cannot raise the open files limit from %d to %d: %s", soft, target, exc)
        return soft
    log.info("open files limit raised from %d to %d", soft, target)
    return target


def open_files_limit() -> int:
    """The soft RLIMIT_NOFILE now."""
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def open_descriptors() -> int:
    """How many descriptors this process has open now."""
    try:
        return len(os.listdir("/proc/self/fd")) - 1  # less the one listdir itself opened
    except OSError:
        return 32  # no /proc: a guess at the start-up count


def connection_budget(limit: int, commands: int) -> int:
    """How many client connections may be open at once, leaving room for ``commands`` runs."""
    reserve = RESERVED_BASE + RESERVED_PER_COMMAND * commands
    return max(1, min(MAX_CONNECTIONS, limit - open_descriptors() - reserve))
