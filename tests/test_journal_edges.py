"""A journal that cannot be read never stops, stalls or wedges a real ``s3syncer serve``.

Each case puts something in ``stateDir/push.json`` that is not a journal, starts the daemon
(whose start is bounded by the ``listening on`` wait), and checks what a user relies on: one
warning naming the file, the file moved aside for a person to look at, one run at once
marked ``truncated`` (sync everything), and a journal that works again afterwards.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from conftest import FIXTURES
from daemon import Daemon, Recorder, start_daemon
from waiting import wait_until

pytestmark = pytest.mark.integration

HEADERS = {"Content-Type": "application/vnd.docker.distribution.events.v1+json"}
TAG_V1 = (FIXTURES / "02-push-manifest-tag-v1.json").read_bytes()
TAG_LATEST = (FIXTURES / "05-push-manifest-tag-latest.json").read_bytes()


def _config(state_dir: Path, recorder: Recorder) -> str:
    return f"stateDir: {state_dir}\ncommands:\n" + recorder.command_yaml("push", delay="100ms")


def _nested(path: Path) -> None:
    depth = 100_000  # exited 1 with a RecursionError traceback once
    path.write_text('{"events": [' + "[" * depth + "]" * depth + "]}")


def _fifo(path: Path) -> None:
    os.mkfifo(path)  # hung the start for ever once: open() waits for a writer


def _directory(path: Path) -> None:
    path.mkdir()
    (path / "inside").write_text("kept")


def _nan(path: Path) -> None:
    # Python's json reads NaN; written back into an events file, strict parsers reject it.
    event = json.loads(TAG_V1)["events"][0]
    event["target"]["size"] = float("nan")
    path.write_text(json.dumps({"version": 1, "events": [event], "truncated": False}))


def _wrong_type(path: Path) -> None:
    path.write_text('{"version": 1, "events": {"0": {}}, "truncated": "no"}')


@pytest.mark.parametrize(
    ("make", "why"),
    [
        (_nested, "nested too deeply"),
        (_fifo, "it is a FIFO, not a file"),
        (_directory, "it is a directory, not a file"),
        (_nan, "NaN is not a JSON value"),
        (_wrong_type, 'no "events" list'),
    ],
    ids=["nested", "fifo", "directory", "nan", "wrong-type"],
)
def test_an_unreadable_journal_is_moved_aside_and_the_next_run_covers_everything(
    tmp_path: Path, make: Callable[[Path], None], why: str
) -> None:
    state = tmp_path / "state"
    state.mkdir()
    journal = state / "push.json"
    make(journal)
    recorder = Recorder(tmp_path / "push")
    with start_daemon(tmp_path, _config(state, recorder)) as daemon:
        [run] = recorder.wait_starts(1, timeout=10)
        assert run["reason"] == "recovered"
        assert run["events"] == {
            "command": "push",
            "reason": "recovered",
            "events": [],
            "truncated": True,
        }
        recorder.wait_ends(1)
        # The run that covered everything settles the journal: nothing is left to wedge.
        wait_until(lambda: not journal.exists(), timeout=10)
        text = daemon.log_text()
        [warning] = [line for line in text.splitlines() if str(journal) in line]
        assert "WARNING" in warning and why in warning
        assert "Traceback" not in text and "0 accepted events" not in text

        [aside] = state.glob("push.json.corrupt-*")
        assert aside.name in warning
        if make is _directory:
            assert (aside / "inside").read_text() == "kept"

        # The journal works again: a push is recorded before its 200 and run.
        status, _, body = daemon.post("/trigger/push", TAG_V1, HEADERS)
        assert status == 200, body
        [_, again] = recorder.wait_starts(2, timeout=10)
        assert again["reason"] == "event" and again["events"]["truncated"] is False
        assert [e["target"]["tag"] for e in again["events"]["events"]] == ["v1"]
    assert daemon.returncode == 0


def test_a_stale_temporary_file_is_removed_at_start(tmp_path: Path) -> None:
    state = tmp_path / "state"
    state.mkdir()
    stale = [state / ".push.json.1.tmp", state / ".gone.json.4242.tmp"]  # a crash mid-write
    for path in stale:
        path.write_bytes(b'{"version": 1, "ev')
    recorder = Recorder(tmp_path / "push")
    with start_daemon(tmp_path, _config(state, recorder)) as daemon:
        for path in stale:
            assert not path.exists()
            assert f"removed {path}" in daemon.log_text()
        assert recorder.starts() == []  # a temporary file is not a journal: nothing to recover
        # runs/ is the daemon's own directory for events files (see run_directory.py).
        assert sorted(p.name for p in state.iterdir() if p.name != "runs") == []


@contextlib.contextmanager
def _small_tmpfs(where: Path) -> Iterator[Path]:
    """A 64 KiB tmpfs at ``where`` (CI runs as root); fails the test if it cannot mount."""
    where.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=64k,mode=0755", "tmpfs", str(where)],
        capture_output=True,
        text=True,
        check=False,
    )
    if mounted.returncode != 0:
        pytest.fail(f"this test needs root to mount a small tmpfs: {mounted.stderr.strip()}")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=True)


def _fill(directory: Path) -> Path:
    """Fill the filesystem of ``directory`` to the last byte; return the filler file."""
    filler = directory / "filler"
    # tmpfs hands out whole pages: page-sized writes fill it to the last byte.
    with filler.open("wb", buffering=0) as file, contextlib.suppress(OSError):
        while True:
            file.write(b"\0" * 4096)
    return filler


def test_a_full_disk_answers_503_leaves_no_temporary_file_and_recovers(tmp_path: Path) -> None:
    recorder = Recorder(tmp_path / "push")
    with _small_tmpfs(tmp_path / "mnt") as mnt:
        state = mnt / "state"
        state.mkdir()
        config = f"stateDir: {state}\ncommands:\n" + recorder.command_yaml("push", delay="1h")
        with start_daemon(tmp_path, config) as daemon:
            filler = _fill(mnt)
            # The registry retries what it is refused, again and again: the log must not grow
            # with those retries (one line a minute, with a count).
            for _ in range(20):
                status, _, body = daemon.post("/trigger/push", TAG_V1, HEADERS)
                assert status == 503, body  # not durable, so not 200: the registry retries
            assert daemon.log_text().count("No space left on device") == 1
            # No partial .tmp holds space, here or in the daemon's own directories (runs/, the
            # events files' home, holds only its lock while no run is going).
            left = [p.relative_to(state) for p in state.rglob("*") if p.is_file()]
            assert [str(p) for p in left if p.name != ".lock"] == []

            filler.unlink()
            _post_ok(daemon, TAG_LATEST)
            document = json.loads((state / "push.json").read_text())
            # The refused v1 was kept in memory too (the registry resends it under its id).
            assert [e["target"]["tag"] for e in document["events"]] == ["v1", "latest"]


def _post_ok(daemon: Daemon, body: bytes) -> None:
    status, _, answer = daemon.post("/trigger/push", body, HEADERS)
    assert status == 200, answer
