"""The state files themselves: private to the daemon, and never written through a planted link."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import trio

from s3syncer.durable import atomic_file
from s3syncer.durable.history import RunHistory, open_history
from s3syncer.durable.journal import Journal
from s3syncer.model.event import Event
from s3syncer.model.run import PastRun


def _event(event_id: str) -> Event:
    raw = {"id": event_id, "action": "push", "target": {"repository": "team/app", "tag": "v1"}}
    return Event(event_id, "push", "team/app", "v1", None, raw)


def _mode(path: Path) -> int:
    return stat.S_IMODE(os.lstat(path).st_mode)


@pytest.fixture
def usual_umask() -> Iterator[None]:
    """The usual umask 022, under which the state files used to come out 0644."""
    old = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(old)


def test_replacing_a_file_never_writes_through_a_planted_temporary_link(tmp_path: Path) -> None:
    # A local user who can write the directory plants the temporary name ahead of the
    # daemon, pointing at a file of the daemon's user: that file must stay as it was.
    victim = tmp_path / "victim"
    victim.write_text("precious")
    target = tmp_path / "push.json"
    (tmp_path / f".push.json.{os.getpid()}.tmp").symlink_to(victim)

    atomic_file.replace_file(target, {"events": []})

    assert victim.read_text() == "precious"
    assert not target.is_symlink() and target.read_text().strip() == '{"events":[]}'
    assert sorted(p.name for p in tmp_path.iterdir()) == ["push.json", "victim"]


@pytest.mark.usefixtures("usual_umask")
async def test_the_journal_is_private_to_the_daemon(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "push.json")
    journal.record([_event("a")])
    await journal.flush()
    assert _mode(journal.path) == 0o600
    journal.record([_event("b")])
    await journal.flush()
    assert _mode(journal.path) == 0o600


@pytest.mark.usefixtures("usual_umask")
async def test_the_history_is_private_to_the_daemon(tmp_path: Path) -> None:
    history = open_history(str(tmp_path), "push")
    history.started(1)
    history.add(PastRun(1, "event", 0.0, 2.0, 1, 1, True, "exit 0"))
    await history.save()
    assert _mode(tmp_path / "history" / "push.json") == 0o600
    assert _mode(tmp_path / "history") == 0o700


@pytest.mark.parametrize("leftover", ["file", "dangling link"])
def test_a_leftover_temporary_name_does_not_stop_the_write(tmp_path: Path, leftover: str) -> None:
    temporary = tmp_path / f".push.json.{os.getpid()}.tmp"
    if leftover == "file":
        temporary.write_text("half")
    else:
        temporary.symlink_to(tmp_path / "nowhere")
    atomic_file.replace_file(tmp_path / "push.json", {"events": []})
    assert not (tmp_path / "nowhere").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["push.json"]


async def test_a_change_made_while_the_history_is_being_written_is_saved_before_done(
    tmp_path: Path,
) -> None:
    # The last run's record came in while the previous write was on its way to the disk,
    # then close(): keep_saved ended without writing it, and the run vanished.
    release = trio.Event()
    writing = trio.Event()

    class SlowDisk(atomic_file.FileDisk):
        async def write(
            self, path: Path, document: dict[str, Any] | None, *, make_directory: bool = False
        ) -> None:
            writing.set()
            await release.wait()
            await super().write(path, document, make_directory=make_directory)

    history = RunHistory(tmp_path / "push.json", disk=SlowDisk())
    async with trio.open_nursery() as nursery:
        nursery.start_soon(history.keep_saved)
        history.started(1)
        await writing.wait()
        history.add(PastRun(1, "event", 0.0, 2.0, 1, 1, True, "exit 0"))
        history.close()
        release.set()
        with trio.fail_after(10):
            await history.done.wait()
    again = RunHistory(tmp_path / "push.json")
    again.load()
    assert [run.run_id for run in again] == [1]


def test_an_append_never_follows_a_link_in_place_of_the_journal(tmp_path: Path) -> None:
    victim = tmp_path / "victim"
    victim.write_text("precious")
    (tmp_path / "push.json").symlink_to(victim)
    with pytest.raises(OSError):
        atomic_file.append_lines(tmp_path / "push.json", [{"settle": 1}])
    assert victim.read_text() == "precious"


@pytest.mark.usefixtures("usual_umask")
def test_an_append_makes_a_journal_of_an_older_version_private(tmp_path: Path) -> None:
    path = tmp_path / "push.json"
    path.write_text('{"version":1,"events":[],"truncated":true}\n')
    path.chmod(0o644)
    atomic_file.append_lines(path, [{"settle": 1}])
    assert _mode(path) == 0o600
