"""The run's one pool of worker threads for small requests (HEAD, GET of a manifest, links).

Created once per run and shut down at its end; every step maps over it. An exception in one
item is reported and turned into a failed result, never a crash of the run.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from types import TracebackType
from typing import TypeVar

T = TypeVar("T")
R = TypeVar("R")
# Items in flight per thread: enough that no thread waits for the next item, few enough that
# a step over every tag of a large registry never holds a future (about 1 KB, with its
# condition and locks) for each of them at once, as ThreadPoolExecutor.map would.
WINDOW_PER_JOB = 4


class Pool:
    """``jobs`` threads that live as long as the run (a context manager)."""

    def __init__(self, jobs: int, on_error: Callable[[object, BaseException], None]) -> None:
        self.jobs = max(1, jobs)
        self._executor = ThreadPoolExecutor(max_workers=self.jobs, thread_name_prefix="s3")
        self._on_error = on_error

    def map(self, fn: Callable[[T], R], items: Iterable[T], failed: R) -> list[R]:
        """``fn`` over ``items`` in parallel, results in order; an error gives ``failed``.

        At most ``jobs`` x :data:`WINDOW_PER_JOB` items are submitted and unfinished at once:
        ``items`` is read as the work goes, so a generator is never held whole.
        """

        def guarded(item: T) -> R:
            try:
                return fn(item)
            except Exception as exc:
                self._on_error(item, exc)
                return failed

        results: list[R] = []
        pending: dict[Future[R], int] = {}  # unfinished, by the index of its result
        limit = self.jobs * WINDOW_PER_JOB

        def collect(finished: Iterable[Future[R]]) -> None:
            for future in finished:
                results[pending.pop(future)] = future.result()

        try:
            for index, item in enumerate(items):
                if len(pending) >= limit:
                    # any finished item frees its place: a slow one (a large blob) holds one
                    # place, never the others' threads
                    collect(wait(pending, return_when=FIRST_COMPLETED).done)
                results.append(failed)  # its place, until its result
                pending[self._executor.submit(guarded, item)] = index
            collect(wait(pending).done)
        except BaseException:
            for future in pending:  # as ThreadPoolExecutor.map does: the rest is not started
                future.cancel()
            raise
        return results

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
