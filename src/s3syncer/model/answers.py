"""What taking a request in answers: accepted, or refused and why.

Nothing here knows a status code: the web layer maps a :class:`Refused` to HTTP, and tests
read the answers directly.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

# What was wrong with a request that could not be read.
BadRequest = Literal["bad request", "too large", "unsupported media type"]
Refusal = Literal["unknown", "disabled", "shutting down", "busy", "not durable", BadRequest]


@dataclass(frozen=True)
class Accepted:
    """Handed to the runner (and, with ``stateDir``, on disk): ``accepted`` events matched."""

    accepted: int = 0
    ignored: int = 0


@dataclass(frozen=True)
class Refused:
    """Not taken. ``detail`` is one line for the client; ``retry_after`` says when to retry.

    A refusal with ``retry_after`` loses nothing: the registry redelivers what it was refused.
    """

    why: Refusal
    detail: str
    retry_after: int | None = None


SHUTTING_DOWN = Refused("shutting down", "shutting down, retry", retry_after=1)


BUSY = Refused("busy", "busy, retry", retry_after=1)


NOT_DURABLE = Refused("not durable", "cannot record it durably, retry", retry_after=5)
