"""The journal behind ``stateDir``: durable, group-committed, settled by successful runs."""

from __future__ import annotations

import errno
import json
import os
import tempfile
import time
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


def event(event_id: str | None, tag: str = "v1") -> Event:
    """A tagged manifest push, as the registry sends it."""
    raw = {"id": event_id, "action": "push", "target": {"repository": "team/app", "tag": tag}}
    return Event(event_id, "push", "team/app", tag, None, raw)


def saved(journal: Journal) -> dict[str, Any] | None:
    """What a restart would read from the journal's file, or None when there is none."""
    if not journal.path.exists():
        return None
    recovered = Journal(journal.path).load()  # a readable file is only read
    assert recovered is not None and recovered.problem is None
    events = [event.to_document() for event in recovered.events]
    return {"events": events, "truncated": recovered.truncated}


def lines(path: Path) -> list[Any]:
    """Each line of a journal's file, as JSON with no NaN or Infinity."""
    return [json.loads(line, parse_constant=pytest.fail) for line in path.read_text().splitlines()]


async def test_flush_writes_the_events_and_a_settle_removes_the_file(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "push.json")
    first = journal.record([event("a"), event("b")])
    await journal.flush()
    document = saved(journal)
    assert document is not None
    assert [e["id"] for e in document["events"]] == ["a", "b"]
    assert document["truncated"] is False

    second = journal.record([event("c")])
    journal.settle(first)  # the run that covered a and b succeeded
    await journal.flush()
    document = saved(journal)
    assert document is not None and [e["id"] for e in document["events"]] == ["c"]

    journal.settle(second)
    await journal.flush()
    assert saved(journal) is None
    assert not any(tmp_path.iterdir())  # no temporary file left either  # noqa: ASYNC240


async def test_a_new_journal_recovers_what_the_last_process_left(tmp_path: Path) -> None:
    before = Journal(tmp_path / "push.json")
    before.record([event("a"), event("a"), event(None), event("b")])
    await before.flush()

    after = Journal(tmp_path / "push.json")
    recovered = after.load()
    assert recovered is not None
    assert [e.id for e in recovered.events] == ["a", None, "b"]
    assert not recovered.truncated
    after.settle(after.seq)
    await after.flush()
    assert Journal(tmp_path / "push.json").load() is None


async def test_the_oldest_accept_time_survives_restarts_and_moves_on_when_settled(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    now = [1000.0]
    monkeypatch.setattr(time, "time", lambda: now[0])
    first = Journal(tmp_path / "push.json")
    first.record([event("a")])
    await first.flush()
    now[0] = 1500.0
    second = Journal(tmp_path / "push.json")
    recovered = second.load()
    assert recovered is not None and recovered.accepted_at == 1000.0
    second.record([event("b")])  # rewrites the file: "a" keeps its time
    await second.flush()
    now[0] = 2000.0
    third = Journal(tmp_path / "push.json")
    recovered = third.load()
    assert recovered is not None and recovered.accepted_at == 1000.0
    third.record([event("c")])
    third.settle(1)  # the recovered run, which covered "a" and "b", succeeded
    await third.flush()
    recovered = Journal(tmp_path / "push.json").load()
    assert recovered is not None and recovered.accepted_at == 2000.0
    assert [e.id for e in recovered.events] == ["c"]


def test_a_command_failing_under_a_flood_keeps_bounded_accept_times_that_never_read_low(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    times = journal_module.AcceptTimes()
    # a day of pushes, ten a second, none covered by a successful run
    for batch in range(1, 864_001):
        times.add(batch, 1000.0 + batch / 10)
    assert len(times) <= journal_module.MAX_ACCEPT_SPANS
    assert times.oldest == 1000.1
    # a run covering the first 50,000 batches succeeds: the rest waits since batch 50,001
    times.settle(50_000)
    oldest = times.oldest
    assert oldest is not None and oldest <= 1000.0 + 50_001 / 10  # never younger than it is
    times.settle(864_000)
    assert times.oldest is None


def test_batches_within_a_second_share_the_oldest_time_and_settle_together() -> None:
    times = journal_module.AcceptTimes()
    times.add(1, 100.0)
    times.add(2, 100.5)  # same second: joins the first span
    times.add(3, 101.5)
    assert len(times) == 2
    times.settle(1)  # batch 2 still waits; it is reported as accepted at 100.0, not later
    assert times.oldest == 100.0
    times.settle(2)
    assert times.oldest == 101.5


@pytest.mark.parametrize(
    ("content", "why"),
    [
        (b"{not json", "Expecting property name"),
        (b"[]", "not a JSON object"),
        (b'{"events": 3}', 'no "events" list'),
        (b'{"events": [{"action": "push"}]}', 'events[0] has no "target" object'),
        (b"\xff\xfe", "not UTF-8 text"),
        (b"[" * 100_000 + b"]" * 100_000, "nested too deeply"),
        (b'{"events": [], "truncated": "no"}', '"truncated" is not true or false'),
        (b'{"version": 2, "events": []}', "unknown version 2"),
        (b'{"events": [{"action": "push", "target": {"size": NaN}}]}', "NaN is not a JSON value"),
        (b'{"events": [{"action": "push", "target": {"size": 1e999}}]}', "out of range"),
    ],
)
async def test_an_unreadable_file_is_moved_aside_and_the_next_run_covers_everything(
    tmp_path: Path, content: bytes, why: str
) -> None:
    path = tmp_path / "push.json"
    path.write_bytes(content)
    journal = Journal(path)
    recovered = journal.load()
    assert recovered is not None
    assert recovered.events == ()
    assert recovered.truncated
    assert recovered.problem is not None
    assert f"state file {path} is unreadable" in recovered.problem
    assert why in recovered.problem
    [aside] = tmp_path.glob("push.json.corrupt-*")  # noqa: ASYNC240
    assert aside.read_bytes() == content  # kept for a person to look at
    assert aside.name in recovered.problem
    # Until a run covers everything, a restart still knows it must.
    document = saved(journal)
    assert document is not None and document["truncated"] is True and document["events"] == []
    again = Journal(path).load()
    assert again is not None and again.truncated and again.problem is None

    journal.settle(journal.seq)  # the recovery run succeeded
    await journal.flush()
    assert not path.exists()
    assert not journal.truncated


def test_a_restart_before_the_full_sync_succeeded_says_so_not_zero_events(
    tmp_path: Path,
) -> None:
    path = tmp_path / "push.json"
    path.write_bytes(b"{half a write")
    assert Journal(path).load() is not None  # moved aside; the full sync is owed
    again = Journal(path).load()  # restarted before that run succeeded
    assert again is not None and again.truncated and again.problem is None
    line = again.describe()
    assert "0 accepted events" not in line  # nothing says events were counted
    assert line == (
        "a run covering everything was owed and none succeeded before the restart; "
        "running now, covering everything"
    )


@pytest.mark.parametrize("kind", ["fifo", "directory"])
async def test_a_fifo_or_directory_in_place_of_the_file_is_refused_without_blocking(
    tmp_path: Path, kind: str
) -> None:
    path = tmp_path / "push.json"
    if kind == "fifo":
        os.mkfifo(path)  # opened plainly for reading, it waits for a writer for ever
    else:
        path.mkdir()
    journal = Journal(path)
    with trio.fail_after(5):
        recovered = await trio.to_thread.run_sync(journal.load, abandon_on_cancel=True)
    assert recovered is not None and recovered.truncated
    assert recovered.problem is not None
    assert {"fifo": "it is a FIFO", "directory": "it is a directory"}[kind] in recovered.problem
    assert path.is_file()  # a journal can be written there again
    journal.record([event("a")])
    await journal.flush()
    document = saved(journal)
    assert document is not None and [e["id"] for e in document["events"]] == ["a"]


def test_an_earlier_corrupt_copy_is_never_overwritten(tmp_path: Path) -> None:
    path = tmp_path / "push.json"
    for content in (b"first", b"second"):
        path.write_bytes(content)
        Journal(path).load()
    copies = sorted(p.read_bytes() for p in tmp_path.glob("push.json.corrupt-*"))
    assert copies == [b"first", b"second"]


async def test_a_successful_run_settles_the_truncated_flag_even_with_later_events(
    tmp_path: Path,
) -> None:
    path = tmp_path / "push.json"
    path.write_text("garbage")
    journal = Journal(path)
    recovered = journal.load()
    assert recovered is not None and recovered.truncated
    running = journal.seq  # the recovery run starts
    journal.record([event("a")])  # a push during it
    journal.settle(running)  # the recovery run succeeded: it covered everything until then
    await journal.flush()
    assert not journal.truncated
    document = saved(journal)
    assert document is not None
    assert document["truncated"] is False and [e["id"] for e in document["events"]] == ["a"]


async def test_events_dropped_after_the_run_started_keep_the_flag(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "push.json", limit=2)
    first = journal.record([event("a"), event("b")])
    journal.record([event("c")])  # the journal is full: c is dropped
    journal.settle(first)  # a run covering only a and b succeeded
    assert journal.truncated  # c is not known to any run yet
    journal.settle(journal.seq)
    assert not journal.truncated


async def test_the_journal_is_bounded_and_says_when_it_dropped_events(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "push.json", limit=5)
    journal.record([event(f"e{i}") for i in range(8)])
    await journal.flush()
    document = saved(journal)
    assert document is not None
    assert len(document["events"]) == 5
    assert document["truncated"] is True


async def test_concurrent_flushes_share_writes_and_each_waits_for_its_own_events(
    tmp_path: Path,
) -> None:
    writes: list[list[str]] = []

    class SlowDisk(atomic_file.FileDisk):
        async def write(
            self, path: Path, document: dict[str, Any] | None, *, make_directory: bool = False
        ) -> None:
            await trio.sleep(0.05)  # an fsync that takes a while
            writes.append([e["id"] for e in (document or {"events": []})["events"]])
            await super().write(path, document)

        async def append(self, path: Path, records: list[dict[str, Any]]) -> int:
            await trio.sleep(0.05)
            writes.append([e["id"] for record in records for e in record["events"]])
            return await super().append(path, records)

    journal = Journal(tmp_path / "push.json", disk=SlowDisk())
    on_disk_when_answered: dict[str, bool] = {}

    async def request(i: int) -> None:
        journal.record([event(f"e{i}")])
        await journal.flush()
        # What the handler would answer 200 for is on disk now.
        on_disk_when_answered[f"e{i}"] = any(f"e{i}" in ids for ids in writes)

    async with trio.open_nursery() as nursery:
        for i in range(100):
            nursery.start_soon(request, i)
            await trio.sleep(0.001)
    assert all(on_disk_when_answered.values()) and len(on_disk_when_answered) == 100
    assert len(writes) <= 10, f"{len(writes)} writes for 100 requests"
    document = saved(journal)
    assert document is not None and len(document["events"]) == 100


async def test_a_failed_write_reaches_the_caller(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "missing-dir" / "push.json")
    journal.record([event("a")])
    with pytest.raises(OSError):
        await journal.flush()


def test_a_failed_write_leaves_no_temporary_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_fsync = os.fsync

    def full_disk(fd: int) -> None:
        if os.path.basename(os.readlink(f"/proc/self/fd/{fd}")).endswith(".tmp"):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", full_disk)
    with pytest.raises(OSError, match="No space left"):
        atomic_file.replace_file(tmp_path / "push.json", {"events": []})
    assert list(tmp_path.iterdir()) == []


def test_stale_temporary_files_are_removed_and_nothing_else(tmp_path: Path) -> None:
    stale = [tmp_path / ".push.json.4242.tmp", tmp_path / ".a.b-c.json.7.tmp"]
    kept = [tmp_path / n for n in ("push.json", "push.json.corrupt-20261129T000000Z", ".x.tmp")]
    for path in (*stale, *kept):
        path.write_text("{}")
    assert sorted(atomic_file.remove_stale_temporaries(str(tmp_path))) == sorted(stale)
    assert sorted(tmp_path.iterdir()) == sorted(kept)
    assert atomic_file.remove_stale_temporaries(str(tmp_path / "missing")) == []


_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=20,
)
_JOURNAL_LIKE = st.fixed_dictionaries(
    {"events": st.lists(_JSON | st.fixed_dictionaries({"action": _JSON, "target": _JSON}))},
    optional={"version": _JSON, "truncated": _JSON, "format": _JSON, "raw": _JSON},
)


@settings(max_examples=examples(100), deadline=None)
@given(
    content=st.binary(max_size=200)
    | _JOURNAL_LIKE.map(lambda d: json.dumps(d).encode())
    | _JSON.map(lambda d: json.dumps(d).encode())
)
def test_whatever_the_file_holds_load_returns_and_a_run_can_proceed(content: bytes) -> None:
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "push.json"
        path.write_bytes(content)
        journal = Journal(path)
        recovered = journal.load()  # never raises
        assert recovered is not None
        if recovered.problem is not None:
            assert recovered.truncated and recovered.events == ()
            assert any(p.name.startswith("push.json.corrupt-") for p in Path(directory).iterdir())
        # Whatever was read back is written as strict JSON, with no NaN or Infinity.
        journal.record([event("x")])
        trio.run(journal.flush)
        lines(path)
