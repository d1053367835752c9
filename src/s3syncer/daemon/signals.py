"""Signals to the daemon: SIGTERM and SIGINT shut it down, SIGHUP asks for a reload."""

from __future__ import annotations

import logging
import signal

import trio

from .service import Service

log = logging.getLogger("s3syncer")


class EarlySignals:
    """Remembers SIGTERM/SIGINT that arrive before the event loop listens for them."""

    def __init__(self) -> None:
        self.received: list[int] = []

    def install(self) -> None:
        """Catch SIGTERM and SIGINT from now on, instead of dying mid-start."""
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, self._note)

    def _note(self, signum: int, _frame: object) -> None:
        self.received.append(signum)


async def watch_signals(
    service: Service,
    early: EarlySignals | None = None,
    *,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    """SIGTERM/SIGINT: graceful shutdown; a second one: stop at once. SIGHUP: reload."""
    with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT, signal.SIGHUP) as signals:
        task_status.started()
        if early is not None and early.received:
            log.info("%s received while starting", signal.Signals(early.received[0]).name)
            service.request_shutdown()
        async for signum in signals:
            name = signal.Signals(signum).name
            if signum == signal.SIGHUP:
                log.info("%s received: reloading the configuration", name)
                service.request_reload()
            elif service.shutting_down:
                log.warning("%s again: stopping now", name)
                raise KeyboardInterrupt
            else:
                log.info("%s received", name)
                service.request_shutdown()
