"""``s3syncer serve``: configure logging, load the config, run the daemon, map its end to an exit
code.
"""

from __future__ import annotations

import logging
import os
import sys
from functools import partial
from typing import TYPE_CHECKING

from .check import config_path, load_file
from .exit_codes import EXIT_FAILURE, EXIT_OK, EXIT_USAGE

if TYPE_CHECKING:
    from ..daemon.early_signals import EarlySignals
    from ..daemon.service import Service

log = logging.getLogger("s3syncer")


def serve(
    config_flag: str | None,
    listen_flag: str | None,
    fmt: str,
    level: str,
    early: EarlySignals | None = None,
) -> int:
    """``s3syncer serve``: run until SIGTERM or SIGINT.

    ``early`` holds the signal handlers ``main`` installed before anything else ran;
    without it, they are installed here.
    """
    # the daemon's stack (trio, Quart, Hypercorn) loads here, not with the module: it costs
    # `replicate` and `verify`, which a command runs on every push, 1-2 s of start each
    import trio  # noqa: PLC0415

    from ..daemon.service import build_service  # noqa: PLC0415
    from ..exec.fd_budget import raise_open_files_limit  # noqa: PLC0415
    from ..exec.leftovers import become_subreaper  # noqa: PLC0415
    from ..model.config import DEFAULT_LISTEN, ListenError, parse_listen  # noqa: PLC0415
    from ..obs.logs import configure_logging  # noqa: PLC0415

    if early is None:
        early = catch_signals_early()
    configure_logging(fmt, level)
    config = load_file(config_flag)
    if config is None:
        return EXIT_USAGE
    for warning in config.warnings:
        log.warning("%s: %s", config.source, warning)
    override = listen_flag or os.environ.get("S3SYNCER_LISTEN")
    listen = override or config.listen or DEFAULT_LISTEN
    try:
        parse_listen(listen)
    except ListenError as exc:
        print(f"s3syncer: {exc}", file=sys.stderr)
        return EXIT_USAGE
    raise_open_files_limit()
    become_subreaper()  # orphans of a run come to us, not to init: see exec/leftovers.py
    service = build_service(
        config, listen, config_path=config_path(config_flag), listen_override=override
    )
    try:
        trio.run(partial(_serve, service, early))
    except BaseException as exc:
        return _exit_code_for(exc)
    return EXIT_OK


def catch_signals_early() -> EarlySignals:
    """Install SIGHUP, SIGTERM and SIGINT handlers now; it imports only ``signal``."""
    from ..daemon.early_signals import EarlySignals  # noqa: PLC0415

    early = EarlySignals()
    early.install()
    return early


async def _serve(service: Service, early: EarlySignals) -> None:
    import trio  # noqa: PLC0415

    from ..daemon.signals import watch_signals  # noqa: PLC0415

    async with trio.open_nursery() as nursery:
        await nursery.start(watch_signals, service, early)
        await service.run()
        nursery.cancel_scope.cancel()


def _exit_code_for(exc: BaseException) -> int:
    from ..model.errors import StartupError, leaf_errors  # noqa: PLC0415

    leaves = leaf_errors(exc)
    if all(isinstance(leaf, KeyboardInterrupt) for leaf in leaves):
        log.warning("stopped without a graceful shutdown")
        return EXIT_FAILURE
    for leaf in leaves:
        if isinstance(leaf, StartupError):
            log.error("%s", leaf.strerror)
        elif not isinstance(leaf, KeyboardInterrupt):
            log.error("s3syncer failed", exc_info=leaf)
    return EXIT_FAILURE
