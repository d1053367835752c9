"""The ports the runner is handed: launching a run, settling its events, logging it.

The daemon plugs :class:`~s3syncer.exec.process.ProcessLauncher` (or a test's fake) into
``Launch``, its journal into ``Settle`` and :class:`~s3syncer.durable.history.RunHistory`
into ``RunLog``; the runner knows none of them.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterator
from typing import Protocol

from ..model.config import CommandConfig
from ..model.run import PastRun, RunRequest, RunResult

Launch = Callable[[CommandConfig, RunRequest], Awaitable[RunResult]]

Settle = Callable[[int], Awaitable[None]]


class RunLog(Protocol):
    """Where the runner writes its runs: the id each takes when it starts, each when it ends."""

    @property
    def last_run_id(self) -> int:
        """The id of the latest run started, here or before a restart; run ids go on from it."""

    @property
    def last_success(self) -> PastRun | None:
        """The latest run that succeeded, if any."""

    def __iter__(self) -> Iterator[PastRun]:
        """The runs kept, oldest first."""

    def started(self, run_id: int) -> None:
        """A run took ``run_id``: it is never given again, whatever happens to the run."""

    def add(self, run: PastRun) -> None:
        """A run ended."""

    def close(self) -> None:
        """The runner stopped: no run comes after this."""
