"""The ports the runner is handed: how a run is launched, and how its events are settled.

The daemon plugs :class:`~s3syncer.exec.process.ProcessLauncher` (or a test's fake) into
``Launch`` and the journal into ``Settle``; the runner knows neither.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from ..model.config import CommandConfig
from ..model.run import RunRequest, RunResult

Launch = Callable[[CommandConfig, RunRequest], Awaitable[RunResult]]


Settle = Callable[[int], Awaitable[None]]
