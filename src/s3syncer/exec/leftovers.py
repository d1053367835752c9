"""Ending what a run leaves behind: its process group, orphans, and runs of a killed daemon.

A command runs as the leader of a session (and process group) of its own, so
its group is one signal away. Three things escape the group:

- a process that started a session of its own (``setsid``, a double fork).
  The daemon is a child subreaper, so such orphans are re-parented to it
  instead of to init, and it ends them once no run is left that could own them;
- the run's leader when the daemon dies without cleaning up (SIGKILL, a crash):
  it gets a parent-death signal (SIGTERM);
- everything else of a run whose daemon was killed: every process of a run has
  ``S3SYNCER_EVENTS_FILE`` in its environment, naming a file in the daemon's
  run directory, so the next start finds and ends them.

Out of reach: a process that clears its environment *and* escapes while the
daemon is SIGKILLed, or any process that changes its user.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import logging
import os
import signal
from collections.abc import Callable, Iterable

import trio

log = logging.getLogger("s3syncer.process")

POLL = 0.05
PR_SET_PDEATHSIG = 1
PR_SET_CHILD_SUBREAPER = 36
PR_GET_CHILD_SUBREAPER = 37
_libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
_prctl = _libc.prctl
# prctl takes unsigned longs: an int passed through "..." could carry garbage upper bits.
_prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong]
_prctl.restype = ctypes.c_int


def become_subreaper() -> bool:
    """Have orphaned descendants re-parented to this process rather than to init."""
    if _prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        log.warning("cannot become a child subreaper: %s", os.strerror(ctypes.get_errno()))
        return False
    return True


def is_subreaper() -> bool:
    """Whether :func:`become_subreaper` took effect (then every adopted child is a run's)."""
    flag = ctypes.c_int(0)
    if _prctl(PR_GET_CHILD_SUBREAPER, ctypes.addressof(flag), 0, 0, 0) != 0:
        return False
    return flag.value == 1


def set_parent_death_signal(signum: int) -> None:
    """In a child between fork and exec: get ``signum`` when the parent thread ends.

    One foreign call, prepared in the parent: about as little as code may do there."""
    _prctl(PR_SET_PDEATHSIG, signum, 0, 0, 0)


# --- reading /proc ---------------------------------------------------------------------


def _stat(pid: str) -> tuple[str, int, int] | None:
    """``(state, ppid, pgrp)`` of ``pid``, or None if it is gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as file:
            stat = file.read()
    except OSError:
        return None
    # "pid (comm) state ppid pgrp ...": comm may hold spaces and parentheses.
    fields = stat[stat.rfind(b")") + 2 :].split()
    return fields[0].decode(), int(fields[1]), int(fields[2])


def _pids() -> list[str]:
    return [entry for entry in os.listdir("/proc") if entry.isdigit()]


def _alive(pid: int) -> bool:
    stat = _stat(str(pid))
    return stat is not None and stat[0] not in ("Z", "X")


# --- process groups --------------------------------------------------------------------


def group_alive(pgid: int) -> bool:
    """Whether a process of group ``pgid`` still runs; zombies do not count."""
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # kill() also reaches zombies, which wait for their parent to reap them; they hold
    # nothing open and cannot run, so look past them.
    try:
        pids = _pids()
    except OSError:
        return True  # no /proc to ask: trust kill()
    for pid in pids:
        stat = _stat(pid)
        if stat is not None and stat[2] == pgid and stat[0] != "Z":
            return True
    return False


def _signal_group(pgid: int, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, signum)


async def _until(gone: Callable[[], bool]) -> None:
    # The kernel offers no event for "this group is empty" or "these are gone": poll.
    while not gone():  # noqa: ASYNC110
        await trio.sleep(POLL)


async def end_group(pgid: int, kill_grace: float) -> None:
    """SIGTERM every process in group ``pgid``, then SIGKILL what is left after the grace."""
    if not group_alive(pgid):
        return
    _signal_group(pgid, signal.SIGTERM)
    with trio.move_on_after(kill_grace) as waiting:
        await _until(lambda: not group_alive(pgid))
    if not waiting.cancelled_caught:
        return
    log.warning("process group %d outlived SIGTERM by %gs; sending SIGKILL", pgid, kill_grace)
    _signal_group(pgid, signal.SIGKILL)
    with trio.move_on_after(kill_grace):
        await _until(lambda: not group_alive(pgid))


# --- processes that left the group ------------------------------------------------------


def reap_ended(pids: Iterable[int]) -> None:
    """Collect the exit status of our ``pids`` that have ended (never blocks)."""
    for pid in pids:
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)


async def end_processes(pids: set[int], kill_grace: float, what: str, *, reap: bool) -> None:
    """SIGTERM ``pids``, SIGKILL those left after the grace; ``reap`` the ones we adopted."""
    if not pids:
        return
    log.warning("ending %d process(es) %s: %s", len(pids), what, " ".join(map(str, sorted(pids))))
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGTERM)

    def gone() -> bool:
        if reap:
            reap_ended(pids)  # an adopted process only stops being a zombie once we reap it
        return not any(_alive(pid) for pid in pids)

    with trio.move_on_after(kill_grace) as waiting:
        await _until(gone)
    if not waiting.cancelled_caught:
        return
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)
    with trio.move_on_after(kill_grace):
        await _until(gone)


def adopted_children(known: set[int]) -> tuple[set[int], set[int]]:
    """Our children that we did not start, orphans of some run re-parented to us: the live
    ones, and the zombies.

    Nothing is reaped here. The scan runs on a worker thread while the loop may start a run:
    its leader, forked mid-scan and not yet in ``known``, looks like an orphan, and one that
    died at once (``sh -c 'kill -KILL $$'``) is a zombie; reaped here, its own wait would find
    no child and report the run as exit 0. The caller reaps the zombies on the loop's thread,
    once it knows that no run is starting (:func:`reap_ended`).
    """
    me = os.getpid()
    live: set[int] = set()
    zombies: set[int] = set()
    for pid in _pids():
        stat = _stat(pid)
        if stat is None or stat[1] != me or int(pid) in known:
            continue
        (zombies if stat[0] == "Z" else live).add(int(pid))
    return live, zombies


def processes_of_runs_in(directory: str) -> set[int]:
    """Live processes whose ``S3SYNCER_EVENTS_FILE`` lies in ``directory`` (our runs')."""
    marker = b"S3SYNCER_EVENTS_FILE=" + os.fsencode(os.path.join(directory, ""))
    me = os.getpid()
    found: set[int] = set()
    for pid in _pids():
        if int(pid) == me:
            continue
        try:
            with open(f"/proc/{pid}/environ", "rb") as file:
                environ = file.read()
        except OSError:
            continue  # gone, or another user's
        if any(entry.startswith(marker) for entry in environ.split(b"\0")) and _alive(int(pid)):
            found.add(int(pid))
    return found
