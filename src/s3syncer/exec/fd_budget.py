"""File descriptors: raise the soft limit at start, and keep some for the runs.

Every client connection costs a descriptor, and so does every run. Containers
often start with a soft limit of 1024. A flood of connections must never leave a
run unable to open its files, so the server accepts at most the limit less a
reserve for runs.

The reserve is what the runs can hold *at once*, not the worst moment of each
run added up. Every command may be running together (nothing caps that), and a
running command holds two descriptors in the daemon for its whole length: its
output pipe's read end and its pidfd (``exec/process.py``). Everything else a
run opens is brief and never happens for many runs at the same moment: a spawn
(the pipe's write end, ``/dev/null``, Popen's error pipe) runs on the event
loop's one thread, one at a time; the events file, the journal and the history
are written in trio's worker threads, at most ``THREAD_LIMIT`` at once, each
holding a file and its directory. So: a fixed reserve for those, plus a small
share per command. The former 16 per command cut 300 commands at nofile 4096 to
one connection at once.
"""

from __future__ import annotations

import logging
import os
import resource

log = logging.getLogger("s3syncer")

RESERVED_BASE = 64
"""Descriptors kept free whatever the commands: reloads, /proc reads, the one spawn at a time."""

THREAD_LIMIT = 40
"""trio's default limit on worker threads, each of which may write one state or events file."""

RESERVED_FOR_THREADS = 2 * THREAD_LIMIT
"""A file and its directory (for the fsync) per worker thread."""

HELD_PER_RUN = 2
"""What a running command holds for its whole length: its output pipe and its pidfd."""

RESERVED_PER_COMMAND = 2 * HELD_PER_RUN
"""Kept per command: what its run holds, twice over (a /proc read while it ends, slack)."""

NO_HARD_LIMIT_TARGET = 1 << 20
"""The soft limit to ask for when the hard one is unlimited (the kernel's default nr_open)."""

MAX_CONNECTIONS = 1000
"""The most client connections at once, whatever the limit: a registry needs a few."""

MIN_CONNECTIONS = 64
"""The fewest, when the limit has room for them beyond the fixed reserve: with more commands
than the limit lets run at once (10,000 at nofile 20,000), one connection at a time meant
every poller evicted the registry's webhook. Runs that find no descriptor fail and retry."""


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
    fixed = limit - open_descriptors() - RESERVED_BASE - RESERVED_FOR_THREADS
    budget = min(MAX_CONNECTIONS, fixed - RESERVED_PER_COMMAND * commands)
    return max(1, budget, min(MIN_CONNECTIONS, fixed))
