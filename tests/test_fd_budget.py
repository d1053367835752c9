"""How many client connections the server takes, given the open files limit and the commands.

A run holds a few descriptors while it runs (its output pipe, its pidfd); the server keeps
those free for every command that could run at once, and the rest go to clients.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from daemon import start_daemon
from s3syncer.exec import fd_budget


@pytest.fixture(autouse=True)
def thirty_open(monkeypatch: pytest.MonkeyPatch) -> None:
    """A daemon that has started: about 30 descriptors open."""
    monkeypatch.setattr(fd_budget, "open_descriptors", lambda: 30)


def test_three_hundred_commands_at_nofile_4096_leave_the_full_connection_budget() -> None:
    # It was 1: 16 descriptors kept per command, as if each run held 16 for its whole length.
    assert fd_budget.connection_budget(4096, 300) == fd_budget.MAX_CONNECTIONS


def test_the_reserve_covers_every_command_running_at_once() -> None:
    for limit, commands in ((1024, 1), (1024, 100), (4096, 300), (20_000, 10_000), (65536, 10_000)):
        budget = fd_budget.connection_budget(limit, commands)
        held_by_runs = fd_budget.HELD_PER_RUN * commands
        fits = budget + held_by_runs + 30 <= limit
        assert fits or budget == fd_budget.MIN_CONNECTIONS, (limit, commands, budget)


def test_more_commands_than_the_limit_runs_at_once_still_leave_connections() -> None:
    # 10,000 commands at nofile 20,000: one connection at a time let every poller evict
    # the registry's webhook.
    assert fd_budget.connection_budget(20_000, 10_000) == fd_budget.MIN_CONNECTIONS
    assert fd_budget.connection_budget(200, 10_000) == 200 - 30 - 144


@pytest.mark.integration
def test_a_daemon_with_300_commands_at_nofile_4096_takes_the_full_connection_budget(
    tmp_path: Path,
) -> None:
    commands = "".join(f"  - {{name: c{i}, cmd: /bin/true, delay: 1h}}\n" for i in range(300))
    prefix = ["prlimit", "--nofile=4096:4096", "--"]
    with start_daemon(tmp_path, "commands:\n" + commands, argv_prefix=prefix) as daemon:
        assert daemon.get("/health")[0] == 200
        # Logged before "listening on" when the budget is cut: "at most 1 connections".
        assert "connections at once" not in daemon.log_text(), daemon.log_text()
