"""The run history: kept in stateDir across restarts, bounded, and never in the way."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import pytest
import trio

from s3syncer.durable.atomic_file import FileDisk
from s3syncer.durable.history import open_history
from s3syncer.model.run import KEEP_RUNS, PastRun


def past(run_id: int, ok: bool = True) -> PastRun:
    """A finished run of 2 s that started at ``run_id`` minutes past the epoch."""
    start = 60.0 * run_id
    outcome = "exit 0" if ok else "exit 3"
    return PastRun(run_id, "event", start, start + 2.0, 1, 1, ok, outcome)


async def test_a_saved_history_comes_back_with_its_ids_and_last_success(tmp_path: Path) -> None:
    history = open_history(str(tmp_path), "push")
    for run_id in range(1, KEEP_RUNS + 6):
        history.started(run_id)
        history.add(past(run_id, ok=run_id != KEEP_RUNS + 5))
    await history.save()
    assert (tmp_path / "history" / "push.json").is_file()
    assert [p.name for p in (tmp_path / "history").iterdir()] == ["push.json"]  # no temporary left

    again = open_history(str(tmp_path), "push")
    assert [run.run_id for run in again] == list(range(6, KEEP_RUNS + 6))  # the last 20
    assert again.last_run_id == KEEP_RUNS + 5
    assert again.last_success == past(KEEP_RUNS + 4)
    assert again.last_success.duration == 2.0


async def test_a_run_that_started_takes_its_id_even_if_it_never_ended(tmp_path: Path) -> None:
    history = open_history(str(tmp_path), "push")
    history.started(7)
    await history.save()
    assert open_history(str(tmp_path), "push").last_run_id == 7


@pytest.mark.parametrize(
    "content",
    [
        "{not json",
        '{"runs": "no"}',
        '{"runs": [{"runId": 1}]}',
        '{"runs": ' + "[" * 100_000 + "]" * 100_000 + "}",  # a RecursionError, once
        '{"lastRunId": 1e999, "runs": []}',  # Infinity
    ],
)
def test_an_unreadable_history_starts_afresh_with_a_warning(
    tmp_path: Path, content: str, caplog: pytest.LogCaptureFixture
) -> None:
    (tmp_path / "history").mkdir()
    (tmp_path / "history" / "push.json").write_text(content)
    with caplog.at_level(logging.WARNING, "s3syncer.history"):
        history = open_history(str(tmp_path), "push")
    assert (history.last_run_id, list(history), history.last_success) == (0, [], None)
    assert "cannot be read" in caplog.text and "push.json" in caplog.text


@pytest.mark.parametrize("kind", ["fifo", "directory"])
def test_a_history_that_is_no_file_starts_afresh_at_once(
    tmp_path: Path, kind: str, caplog: pytest.LogCaptureFixture
) -> None:
    # A FIFO once made the start wait for a writer for ever.
    (tmp_path / "history").mkdir()
    where = tmp_path / "history" / "push.json"
    if kind == "fifo":
        os.mkfifo(where)
    else:
        where.mkdir()
    with caplog.at_level(logging.WARNING, "s3syncer.history"):
        history = open_history(str(tmp_path), "push")
    assert (history.last_run_id, list(history)) == (0, [])
    assert f"it is a {'FIFO' if kind == 'fifo' else 'directory'}, not a file" in caplog.text


async def test_without_state_dir_nothing_is_written(tmp_path: Path) -> None:
    history = open_history(None, "push")
    history.started(1)
    history.add(past(1))
    await history.save()
    assert history.path is None and [run.run_id for run in history] == [1]


async def test_a_history_that_cannot_be_written_is_logged_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    history = open_history(str(tmp_path), "push")
    (tmp_path / "history").mkdir()
    (tmp_path / "history").chmod(0o500)
    try:
        probe = tmp_path / "history" / "probe"
        try:
            probe.write_text("x")  # root ignores the mode: make the path a directory instead
            probe.unlink()
            (tmp_path / "history").chmod(0o700)
            (tmp_path / "history" / "push.json").mkdir()
        except PermissionError:
            pass
        with caplog.at_level(logging.ERROR, "s3syncer.history"):
            for run_id in (1, 2, 3):
                history.started(run_id)
                await history.save()
    finally:
        (tmp_path / "history").chmod(0o700)
    assert caplog.text.count("cannot save run history") == 1


class HeldDisk(FileDisk):
    """The real disk, whose first write waits until the test lets it finish."""

    def __init__(self) -> None:
        self.writing = trio.Event()
        self.release = trio.Event()
        self.writes = 0

    async def write(
        self, path: Path, document: dict[str, Any] | None, *, make_directory: bool = False
    ) -> None:
        self.writes += 1
        if self.writes == 1:
            self.writing.set()
            await self.release.wait()
        await super().write(path, document, make_directory=make_directory)


async def test_a_run_added_while_a_write_is_on_its_way_is_saved_at_close(tmp_path: Path) -> None:
    # The last run of a shutdown, added and closed while the previous save was still being
    # written, was once left out: the loop saw "closed" after that write and ended.
    disk = HeldDisk()
    history = open_history(str(tmp_path), "push", disk)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(history.keep_saved)
        history.started(1)
        with trio.fail_after(10):
            await disk.writing.wait()
        history.add(past(1))
        history.close()
        disk.release.set()
        with trio.fail_after(10):
            await history.done.wait()
    assert disk.writes == 2
    assert [run.run_id for run in open_history(str(tmp_path), "push")] == [1]


async def test_keep_saved_writes_each_change_and_the_last_one_after_close(tmp_path: Path) -> None:
    history = open_history(str(tmp_path), "push")
    path = tmp_path / "history" / "push.json"
    async with trio.open_nursery() as nursery:
        nursery.start_soon(history.keep_saved)
        history.started(1)
        with trio.fail_after(10):
            while not path.exists():  # noqa: ASYNC110 (a worker thread writes it)
                await trio.sleep(0.01)
        history.add(past(1))
        history.close()
        with trio.fail_after(10):
            await history.done.wait()
    assert [run.run_id for run in open_history(str(tmp_path), "push")] == [1]
