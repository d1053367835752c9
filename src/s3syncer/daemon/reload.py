"""Reloading the configuration: one reload at a time, and one per change.

SIGHUP and the file watcher only *request* a reload. Requests fold like the
runner's triggers: any number of them while a reload runs cause exactly one
follow-up reload, and two reloads never run at once (two at once retired the
same command twice, or started two runners under one name). The watcher asks
only when the file differs from the version the last reload read, so an edit
followed by a SIGHUP reloads once, not once for each.
"""

from __future__ import annotations

import gc
import logging
import os
from collections.abc import Awaitable, Callable

import trio

from ..config.file import load_config
from ..model.config import Config, ConfigError

log = logging.getLogger("s3syncer")

CONFIG_POLL = 2.0
PARSE_INLINE_BYTES = 64 * 1024
"""A config file up to this size (a few hundred commands) is read on the event loop."""

FileIdentity = tuple[int, int, int, int]
Apply = Callable[[Config], Awaitable[None]]


def file_identity(path: str) -> FileIdentity | None:
    """What tells one version of the file from the next, or None when it cannot be read."""
    try:
        stat = os.stat(path)
    except OSError:
        return None
    return (stat.st_dev, stat.st_ino, stat.st_mtime_ns, stat.st_size)


class Reloader:
    """Reads ``path`` on request or when it changes, and hands each good version on.

    Start it with ``nursery.start(reloader.run, apply)``: ``task_status`` gets a cancel scope that
    ends it. A bad file, or an ``apply`` that fails, is logged and changes nothing else: the
    daemon goes on with what it has, and the next request tries again.
    """

    def __init__(self, path: str, *, poll: float = CONFIG_POLL) -> None:
        self.path = path
        self.poll = poll
        self._requested = trio.Event()
        # The version the daemon started with is the one the caller read.
        self._read = file_identity(path)
        self.stopped = trio.Event()

    def request(self) -> None:
        """Ask for a reload; folds into the one pending, never waits."""
        self._requested.set()

    async def run(
        self,
        apply: Apply,
        *,
        task_status: trio.TaskStatus[trio.CancelScope] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """Reload on every request, one at a time, handing each good version to ``apply``."""
        try:
            with trio.CancelScope() as scope:
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(self._watch)
                    task_status.started(scope)
                    while True:
                        await self._requested.wait()
                        self._requested = trio.Event()
                        await self._reload_once(apply)
        finally:
            self.stopped.set()

    async def _reload_once(self, apply: Apply) -> None:
        # Noted before reading: an edit during the read is a new version for the watcher.
        self._read = file_identity(self.path)
        try:
            config = await _load(self.path)
        except ConfigError as exc:
            for error in exc.errors:
                log.error("reload: %s: %s", exc.source, error)
            log.error("reload: the file has errors; still running the previous configuration")
            return
        try:
            await apply(config)
        except Exception as exc:  # a reload must never end the daemon
            log.error("reload of %s failed: %s; the next reload tries again", self.path, exc)

    async def _watch(self) -> None:
        # Poll: Kubernetes updates a ConfigMap volume by swapping a symlink, which
        # inotify on the file itself would miss; stat() follows the link.
        while True:
            await trio.sleep(self.poll)
            current = file_identity(self.path)
            if current is not None and current != self._read:
                log.info("config file %s changed; reloading", self.path)
                self._read = current  # one request (and one log line) per change
                self.request()


async def _load(path: str) -> Config:
    """The config at ``path``; a large one read in a worker thread.

    10,000 commands are 3 s of YAML: read on the loop, they held every trigger for that
    long. A small file stays on the loop, where it takes milliseconds and a reload
    happens at a moment the tests' virtual clock can tell.
    """
    try:
        size = os.stat(path).st_size
    except OSError:
        size = 0  # load_config says what is wrong with it
    if size <= PARSE_INLINE_BYTES:
        return load_config(path)
    # The parse allocates enough to set off a full garbage collection, which holds the
    # GIL, and so the loop, for as long as it takes to walk every object: a second at
    # 10,000 commands. The daemon's own objects sit out the collections while it parses.
    gc.freeze()
    try:
        return await trio.to_thread.run_sync(load_config, path)
    finally:
        gc.unfreeze()
