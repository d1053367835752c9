"""Errors that stop the daemon at start, each with the exit code and message it deserves."""

from __future__ import annotations


class StartupError(OSError):
    """Something the daemon needs at start is not there; ``strerror`` says what."""


class BindError(StartupError):
    """The listen address cannot be bound (taken, not ours, no such interface)."""


def leaf_errors(exc: BaseException) -> list[BaseException]:
    """The exceptions inside ``exc``, however deeply exception groups nest them."""
    if isinstance(exc, BaseExceptionGroup):
        return [leaf for inner in exc.exceptions for leaf in leaf_errors(inner)]
    return [exc]


class StateDirError(StartupError):
    """``stateDir`` cannot be created or written."""
