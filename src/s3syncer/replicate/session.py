"""The opening both tools share: flags checked, boto3 found, both sides' clients made.

``replicate`` and ``verify`` start the same way and differ only in what they do next, so the
steps (and the exit code each failure means) live here once.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Mapping
from dataclasses import dataclass, field

from .arguments import SIDES, Sides, UsageError, parse_sides
from .sides import (
    INSTALL_HINT,
    RequestCounter,
    SharedLoader,
    Side,
    botocore_missing,
    describe,
    make_client,
)

EXIT_OK, EXIT_FAILURE, EXIT_USAGE = 0, 1, 2


class OpeningError(Exception):
    """The tool cannot start: ``code`` is its exit code (2 usage, 1 failure)."""

    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        self.code = code


@dataclass
class Session:
    """Both sides, connected, and the requests sent to each so far."""

    sides: Sides
    source: Side
    dest: Side
    same_identity: bool  # one endpoint and one identity: a server-side copy can work
    counters: dict[str, RequestCounter] = field(default_factory=dict)

    @property
    def requests(self) -> int:
        """Every request sent to either side, retries included."""
        return sum(counter.count for counter in self.counters.values())


def connect(sides: Sides, counters: Mapping[str, RequestCounter]) -> tuple[Side, Side, bool]:
    """Both sides' clients, and whether they are one identity (server-side copy possible)."""
    loader = SharedLoader()
    clients = {
        side: make_client(sides.configs[side], sides.jobs, counters[side], loader) for side in SIDES
    }
    (src_client, src_id), (dst_client, dst_id) = clients["source"], clients["dest"]
    return Side(src_client, sides.source), Side(dst_client, sides.dest), src_id == dst_id


def check_sides(args: argparse.Namespace, environ: Mapping[str, str] | None = None) -> Sides:
    """The shared flags checked, and boto3 present; OpeningError (exit 2) otherwise."""
    env = os.environ if environ is None else environ
    try:
        sides = parse_sides(args, env)
    except UsageError as exc:
        raise OpeningError(str(exc), EXIT_USAGE) from None
    if botocore_missing():
        raise OpeningError(f"boto3 is not installed; install it with: {INSTALL_HINT}", EXIT_USAGE)
    return sides


def open_session(sides: Sides) -> Session:
    """Both sides' clients; OpeningError (exit 1) when they cannot be made."""
    counters = {side: RequestCounter() for side in SIDES}
    try:
        source, dest, same = connect(sides, counters)
    except Exception as exc:
        raise OpeningError(f"cannot set up S3 clients: {describe(exc)}", EXIT_FAILURE) from None
    return Session(sides, source, dest, same, counters)
