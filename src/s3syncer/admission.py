"""What the service answers when asked for a run: :class:`Accepted` or :class:`Refused`.

The web layer turns these into HTTP answers; nothing here knows a status code,
so the same answers serve any front end (and tests, which call the service directly).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Refusal = Literal["unknown", "disabled", "shutting down", "busy", "not durable", "bad request"]


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
