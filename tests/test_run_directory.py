"""The run directory without ``stateDir`` (issue 28): private, never adopted, made again.

It used to be TMPDIR/s3syncer-UID-HASH, a name any local user could create first: the
daemon adopted their 0777 directory, created a file through their ``.lock`` symlink and
ran commands on events files they forged. And once tmpfiles ageing or an ``rm -rf``
removed it, every later run failed with ENOENT until a restart.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
import trio

from daemon import Recorder, start_daemon
from s3syncer.exec.run_directory import LOCK_NAME, Location, RunDirectory, default_location

NOBODY = 65534


@pytest.fixture
def tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A TMPDIR of the test's own, sticky and world-writable like /tmp."""
    path = tmp_path / "tmp"
    path.mkdir()
    path.chmod(0o1777)
    monkeypatch.setenv("TMPDIR", str(path))
    monkeypatch.setattr("tempfile.tempdir", None)  # read TMPDIR again
    return path


def location(tmp: Path) -> Location:
    """Where a daemon of the config /etc/s3syncer/config.yaml keeps its runs' files."""
    found = default_location(None, "/etc/s3syncer/config.yaml")
    assert found.parent == str(tmp)
    return found


def claimed(tmp: Path) -> RunDirectory:
    directory = RunDirectory(location(tmp))
    directory.claim()
    assert directory.path is not None
    return directory


def assert_private(path: str) -> None:
    info = os.lstat(path)
    assert stat.S_ISDIR(info.st_mode)
    assert info.st_uid == os.geteuid()
    assert stat.S_IMODE(info.st_mode) == 0o700


def test_a_planted_directory_is_never_adopted(tmp: Path) -> None:
    where = location(tmp)
    legacy = Path(where.legacy)  # the old, predictable name
    guessed = tmp / (where.prefix + "guessed")
    for planted in (legacy, guessed):
        planted.mkdir()
        planted.chmod(0o777)
        (planted / "events.json").write_text("{}")
    os.chown(guessed, NOBODY, NOBODY)
    directory = claimed(tmp)
    assert directory.path not in (str(legacy), str(guessed))
    assert Path(directory.path or "").name.startswith(where.prefix)
    assert_private(directory.path or "")
    for planted in (legacy, guessed):  # left alone: neither used nor cleaned
        assert (planted / "events.json").exists()
        assert not (planted / LOCK_NAME).exists()


def test_a_planted_lock_symlink_is_never_followed(tmp: Path) -> None:
    where = location(tmp)
    target = tmp / "created-through-the-symlink"
    for name in (where.legacy, str(tmp / (where.prefix + "x"))):
        planted = Path(name)
        planted.mkdir(mode=0o700)  # even one that looks like ours
        (planted / LOCK_NAME).symlink_to(target)
    directory = claimed(tmp)
    trio.run(directory.clear, 0.1)
    assert not target.exists()
    assert_private(directory.path or "")


def test_what_a_killed_daemon_left_is_cleaned_at_the_next_start(tmp: Path) -> None:
    killed = claimed(tmp)
    assert killed.path is not None
    (Path(killed.path) / "s3syncer-push-1-x.json").write_text("{}")
    killed._unlock()  # what SIGKILL does to its lock
    restarted = claimed(tmp)
    trio.run(restarted.clear, 0.1)
    assert not os.path.exists(killed.path)
    assert restarted.path != killed.path


def test_a_running_daemons_directory_is_left_alone(tmp: Path) -> None:
    running = claimed(tmp)
    assert running.path is not None
    events = Path(running.path) / "s3syncer-push-1-x.json"
    events.write_text("{}")
    second = claimed(tmp)
    trio.run(second.clear, 0.1)
    assert events.exists()
    assert second.path != running.path


def test_a_removed_directory_is_made_again(tmp: Path) -> None:
    directory = claimed(tmp)
    first = directory.path or ""
    assert directory.ensure() == first
    os.unlink(os.path.join(first, LOCK_NAME))
    os.rmdir(first)
    again = directory.ensure()
    assert os.path.isdir(again)
    assert_private(again)


def test_a_directory_replaced_under_its_name_is_not_used(tmp: Path) -> None:
    directory = claimed(tmp)
    first = directory.path or ""
    os.unlink(os.path.join(first, LOCK_NAME))
    os.rmdir(first)
    os.mkdir(first, 0o777)  # someone was quick to take the name
    os.chmod(first, 0o777)
    again = directory.ensure()
    assert again != first
    assert_private(again)


def test_a_state_dirs_run_directory_is_made_again_where_it_was(tmp_path: Path) -> None:
    directory = RunDirectory(default_location(str(tmp_path), None))
    directory.claim(exclusive=True)
    runs = str(tmp_path / "runs")
    assert directory.path == runs
    os.unlink(os.path.join(runs, LOCK_NAME))
    os.rmdir(runs)
    assert directory.ensure() == runs
    assert_private(runs)


@pytest.mark.integration
def test_after_rm_rf_of_the_run_directory_the_next_run_succeeds(tmp: Path, tmp_path: Path) -> None:
    recorder = Recorder(tmp_path / "push")
    config = "commands:\n" + recorder.command_yaml("push", delay="100ms")
    with start_daemon(tmp_path, config, env={"TMPDIR": str(tmp)}) as daemon:
        assert daemon.post("/run/push")[0] == 202
        [first] = recorder.wait_starts(1)
        recorder.wait_ends(1)
        run_dir = Path(first["events_file"]).parent
        assert run_dir.parent == tmp
        for entry in run_dir.iterdir():
            entry.unlink()
        run_dir.rmdir()  # tmpfiles ageing, or rm -rf
        assert daemon.post("/run/push")[0] == 202
        recorder.wait_ends(2)
        daemon.wait_for_log("push: run 2 succeeded")
        assert "went away; made" in daemon.log_text()
