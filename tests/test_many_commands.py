"""10,000 commands on one event loop: a reload lets the triggers through while it works.

The figures (a reload's stall, /metrics and /status at 10,000 commands) are measured by
benchmarks/many_commands.py; here only that the loop is not held for the whole of it.
"""

from __future__ import annotations

import dataclasses

import pytest
import trio
import trio.testing

from s3syncer.daemon.supervision import UPDATE_SLICE, Supervisor
from s3syncer.model.config import CommandConfig
from s3syncer.model.run import RunRequest, RunResult
from s3syncer.obs.metrics import Metrics

COMMANDS = 4 * UPDATE_SLICE


async def never_launch(command: CommandConfig, request: RunRequest) -> RunResult:
    raise AssertionError("nothing runs in these tests")


@pytest.mark.slow  # most of a second: the full suite runs it
async def test_a_reload_that_changes_every_command_lets_other_tasks_run() -> None:
    commands = [CommandConfig(name=f"c{i}", cmd="/bin/true", delay=3600.0) for i in range(COMMANDS)]
    async with trio.open_nursery() as nursery:
        supervisor: Supervisor = await nursery.start(Supervisor(None, never_launch, Metrics()).run)
        for command in commands:
            await supervisor.start(command)
        await trio.testing.wait_all_tasks_blocked()
        turns = 0
        applying = True

        async def trigger_like() -> None:
            nonlocal turns
            while applying:
                turns += 1
                await trio.lowlevel.checkpoint()

        nursery.start_soon(trigger_like)
        with trio.fail_after(5):
            while not turns:  # it runs: the loop is free
                await trio.lowlevel.checkpoint()
        before = turns
        changes = await supervisor.apply([dataclasses.replace(c, delay=7200.0) for c in commands])
        applying = False
        assert changes.changed == COMMANDS
        # Another task ran while the runners were updated, not only before and after.
        assert turns - before >= COMMANDS // UPDATE_SLICE - 1
        nursery.cancel_scope.cancel()
