"""The run's one pool of worker threads for small requests (HEAD, GET of a manifest, links).

Created once per run and shut down at its end; every step maps over it. An exception in one
item is reported and turned into a failed result, never a crash of the run.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from types import TracebackType
from typing import TypeVar

T = TypeVar("T")
R = TypeVar("R")


class Pool:
    """``jobs`` threads that live as long as the run (a context manager)."""

    def __init__(self, jobs: int, on_error: Callable[[object, BaseException], None]) -> None:
        self.jobs = max(1, jobs)
        self._executor = ThreadPoolExecutor(max_workers=self.jobs, thread_name_prefix="s3")
        self._on_error = on_error

    def map(self, fn: Callable[[T], R], items: Iterable[T], failed: R) -> list[R]:
        """``fn`` over ``items`` in parallel, results in order; an error gives ``failed``."""

        def guarded(item: T) -> R:
            try:
                return fn(item)
            except Exception as exc:
                self._on_error(item, exc)
                return failed

        return list(self._executor.map(guarded, items))

    def close(self) -> None:
        """Wait for running items and stop the threads."""
        self._executor.shutdown(wait=True)

    def __enter__(self) -> Pool:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
