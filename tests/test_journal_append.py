"""The journal is appended to: a webhook costs its own events, and a crash mid-append is no loss."""

from __future__ import annotations

import errno
import json
import os
import tempfile
from pathlib import Path
from typing import Any

import pytest
import trio
from hypothesis import given, settings
from hypothesis import strategies as st

from fuzz_budget import examples
from s3syncer.durable import atomic_file
from s3syncer.durable import journal as journal_module
from s3syncer.durable.journal import Journal
from s3syncer.model.event import Event

MIB = 1024 * 1024


def event(event_id: str, padding: int = 0) -> Event:
    """A tagged manifest push, as the registry sends it, of about ``padding`` bytes more."""
    target = {"repository": "team/app", "tag": "v1", "url": "x" * padding}
    raw = {"id": event_id, "action": "push", "target": target}
    return Event(event_id, "push", "team/app", "v1", None, raw)


def recovered_ids(path: Path) -> tuple[list[str | None], bool]:
    """The event ids and the truncated flag a restart reads from ``path``."""
    recovered = Journal(path).load()
    assert recovered is not None and recovered.problem is None, recovered
    return [e.id for e in recovered.events], recovered.truncated


async def test_a_webhook_appends_its_own_events_whatever_is_pending(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "push.json")
    journal.record([event(f"e{i}") for i in range(1000)])
    await journal.flush()
    before = journal.path.read_bytes()
    inode = journal.path.stat().st_ino

    journal.record([event("one-more")])
    await journal.flush()

    # The 1,000 pending events were not written again: the file grew by one line.
    after = journal.path.read_bytes()
    assert journal.path.stat().st_ino == inode
    assert after.startswith(before)
    assert len(after) - len(before) < 1024
    assert recovered_ids(journal.path) == ([f"e{i}" for i in range(1000)] + ["one-more"], False)


async def test_a_settle_is_appended_and_a_restart_recovers_only_what_is_unsettled(
    tmp_path: Path,
) -> None:
    journal = Journal(tmp_path / "push.json")
    first = journal.record([event("a"), event("b")])
    await journal.flush()
    journal.record([event("c")])
    await journal.flush()
    before = journal.path.read_bytes()
    journal.settle(first)
    await journal.flush()
    assert journal.path.read_bytes().startswith(before)
    assert recovered_ids(journal.path) == (["c"], False)


async def test_a_crash_in_the_middle_of_an_append_loses_only_the_unanswered_request(
    tmp_path: Path,
) -> None:
    journal = Journal(tmp_path / "push.json")
    journal.record([event("a")])
    await journal.flush()
    journal.record([event("b")])
    await journal.flush()
    # The power went during the third request's append: never fsync'd, never answered 200.
    with journal.path.open("a") as file:
        file.write('{"batch":3,"at":1.0,"events":[{"id":"c","act')
    assert recovered_ids(journal.path) == (["a", "b"], False)


async def test_a_torn_line_before_the_last_is_corruption_not_a_crash(tmp_path: Path) -> None:
    path = tmp_path / "push.json"
    journal = Journal(path)
    journal.record([event("a")])
    await journal.flush()
    with path.open("a") as file:
        file.write('{"batch":2,"at":1.0,"ev\n')
    journal.record([event("b")])
    await journal.flush()
    recovered = Journal(path).load()
    assert recovered is not None and recovered.truncated and recovered.problem is not None
    assert "moved it to push.json.corrupt-" in recovered.problem


async def test_after_a_failed_append_the_next_write_replaces_the_file_whole(
    tmp_path: Path,
) -> None:
    calls = [0]

    class FullDisk(atomic_file.FileDisk):
        async def append(self, path: Path, records: list[dict[str, Any]]) -> int:
            calls[0] += 1
            if calls[0] == 1:  # the first append: the first write replaced the file whole
                with path.open("a") as file:  # half a line reached the disk, then ENOSPC
                    file.write(json.dumps(records[0])[:20])
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            return await super().append(path, records)

    journal = Journal(tmp_path / "push.json", disk=FullDisk())
    journal.record([event("a")])
    await journal.flush()
    journal.record([event("b")])
    with pytest.raises(OSError, match="No space left"):
        await journal.flush()  # the webhook answers 503; the registry retries
    journal.record([event("c")])
    await journal.flush()
    # "b" was kept in memory (the registry resends it under its id) and nothing is torn.
    assert recovered_ids(journal.path) == (["a", "b", "c"], False)
    journal.record([event("d")])
    await journal.flush()
    assert recovered_ids(journal.path) == (["a", "b", "c", "d"], False)


async def test_the_file_is_compacted_once_settled_lines_outgrow_what_is_pending(
    tmp_path: Path,
) -> None:
    journal = Journal(tmp_path / "push.json")
    largest = 0
    for cycle in range(120):  # 120 batches of 10 x 10 KB: 12 MB appended in all
        seq = journal.record([event(f"e{cycle}-{i}", padding=10_000) for i in range(10)])
        await journal.flush()
        journal.settle(seq - 1)  # the run covering the batch before succeeded
        await journal.flush()
        largest = max(largest, journal.path.stat().st_size)
    assert largest < 6 * MIB
    assert recovered_ids(journal.path) == ([f"e119-{i}" for i in range(10)], False)


@pytest.mark.slow  # most of a second: the full suite runs it
async def test_a_restart_keeps_the_byte_budget_of_an_appended_journal(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "push.json", max_bytes=64 * MIB)  # a generous old process
    for i in range(40):
        journal.record([event(f"big{i}", padding=MIB)])
        await journal.flush()
    ids, truncated = recovered_ids(journal.path)  # read with the usual 16 MiB budget
    assert truncated  # the run that follows covers everything
    assert 0 < len(ids) <= 16


def test_a_whole_document_journal_too_big_to_hold_is_set_aside_not_read(tmp_path: Path) -> None:
    # An older version wrote the whole journal on one line, as large as it grew (889 MB
    # once). Parsing it took over a GiB: the restart reads no line past the bound.
    path = tmp_path / "push.json"
    events = [event(f"e{i}", padding=MIB).raw for i in range(40)]
    path.write_text(json.dumps({"version": 1, "events": events, "truncated": False}))
    recovered = Journal(path).load()
    assert recovered is not None and recovered.truncated and recovered.events == ()
    assert recovered.problem is not None and "line of over" in recovered.problem
    assert any(p.name.startswith("push.json.corrupt-") for p in tmp_path.iterdir())


@pytest.mark.parametrize("existing", [b"", b'{"batch":1,"at":1.0,"events":[],"truncated":true}\n'])
def test_a_failed_append_takes_its_bytes_back(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, existing: bytes
) -> None:
    path = tmp_path / "push.json"
    if existing:
        path.write_bytes(existing)

    def full_disk(fd: int) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "fsync", full_disk)
    with pytest.raises(OSError, match="No space left"):
        atomic_file.append_lines(path, [{"batch": 2, "at": 2.0, "events": [], "truncated": True}])
    # No half line holds the full disk's space, and a file made for nothing is gone.
    assert path.read_bytes() == existing if existing else not path.exists()


_OPERATIONS = st.lists(
    st.sampled_from(["record", "resend", "flush", "settle-all", "settle-older", "torn"]),
    max_size=40,
)


@settings(max_examples=examples(200), deadline=None)
@given(operations=_OPERATIONS, compact=st.booleans())
def test_a_restart_recovers_every_event_answered_200_and_not_settled(
    operations: list[str], compact: bool
) -> None:
    # Whatever the order of requests, flushes (a 200 follows one), settles and a crash
    # mid-append, what was answered 200 and not covered by a successful run comes back.
    with tempfile.TemporaryDirectory() as directory, pytest.MonkeyPatch.context() as patch:
        if compact:
            patch.setattr(journal_module, "COMPACT_FLOOR", 0)  # replaced whole at every write
        path = Path(directory) / "push.json"
        journal = Journal(path)
        batches: dict[str, int] = {}  # id -> its batch
        durable: set[str] = set()  # answered 200
        settled: set[str] = set()
        for number, operation in enumerate(operations):
            if operation == "record":
                batches[f"e{number}"] = journal.record([event(f"e{number}")])
            elif operation == "resend" and batches:
                journal.record([event(next(iter(batches)))])
            elif operation == "flush":
                trio.run(journal.flush)
                durable = set(batches) - settled
            elif operation.startswith("settle"):
                seq = journal.seq - (1 if operation == "settle-older" else 0)
                journal.settle(seq)
                settled |= {i for i, batch in batches.items() if batch <= seq}
            elif operation == "torn" and path.exists():
                with path.open("a") as file:
                    file.write('{"batch":999,"at":1.0,"events":[{"id":"torn"')
                break  # the crash
        if not path.exists():
            assert not durable - settled
            return
        ids, _ = recovered_ids(path)
        assert "torn" not in ids
        assert durable - settled <= set(ids)
