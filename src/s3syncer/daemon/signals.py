"""Signals to the daemon: SIGTERM and SIGINT shut it down, SIGHUP asks for a reload."""

from __future__ import annotations

import logging
import signal

import trio

from .early_signals import EarlySignals
from .service import Service

__all__ = ["EarlySignals", "watch_signals"]

log = logging.getLogger("s3syncer")


async def watch_signals(
    service: Service,
    early: EarlySignals | None = None,
    *,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    """SIGTERM/SIGINT: graceful shutdown; a second one: stop at once. SIGHUP: reload."""
    with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT, signal.SIGHUP) as signals:
        task_status.started()
        if early is not None:
            _act_on_early(service, early)
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


def _act_on_early(service: Service, early: EarlySignals) -> None:
    """What came before the loop listened: a stop wins over a reload."""
    if early.stop_requested:
        name = next(signal.Signals(s).name for s in early.received if s != signal.SIGHUP)
        log.info("%s received while starting", name)
        service.request_shutdown()
    elif early.reload_requested:
        log.info("SIGHUP received while starting: reloading the configuration")
        service.request_reload()
