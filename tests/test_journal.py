"""The journal behind ``stateDir``: durable, group-committed, settled by successful runs."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import trio

from s3syncer import journal as journal_module
from s3syncer.events import Event
from s3syncer.journal import Journal


def event(event_id: str | None, tag: str = "v1") -> Event:
    """A tagged manifest push, as the registry sends it."""
    raw = {"id": event_id, "action": "push", "target": {"repository": "team/app", "tag": tag}}
    return Event(event_id, "push", "team/app", tag, None, raw)


def saved(journal: Journal) -> dict[str, Any] | None:
    """The journal's file as a document, or None when there is none."""
    if not journal.path.exists():
        return None
    document: dict[str, Any] = json.loads(journal.path.read_text())
    return document


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


@pytest.mark.parametrize(
    "content",
    [b"{not json", b"[]", b'{"events": 3}', b'{"events": [{"action": "push"}]}', b"\xff\xfe"],
)
async def test_a_corrupt_file_still_runs_the_command_with_the_list_marked_partial(
    tmp_path: Path, content: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "push.json"
    path.write_bytes(content)
    journal = Journal(path)
    recovered = journal.load()
    assert recovered is not None
    assert recovered.events == ()
    assert recovered.truncated
    assert "runs anyway" in caplog.text
    journal.settle(journal.seq)  # the recovery run succeeded: the bad file goes
    await journal.flush()
    assert not path.exists()


async def test_the_journal_is_bounded_and_says_when_it_dropped_events(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "push.json", limit=5)
    journal.record([event(f"e{i}") for i in range(8)])
    await journal.flush()
    document = saved(journal)
    assert document is not None
    assert len(document["events"]) == 5
    assert document["truncated"] is True


async def test_concurrent_flushes_share_writes_and_each_waits_for_its_own_events(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    writes: list[list[str]] = []
    real_replace = journal_module._replace_file

    def slow_replace(path: Path, document: dict[str, Any] | None) -> None:
        trio.from_thread.run(trio.sleep, 0.05)  # an fsync that takes a while
        writes.append([e["id"] for e in (document or {"events": []})["events"]])
        real_replace(path, document)

    monkeypatch.setattr(journal_module, "_replace_file", slow_replace)
    journal = Journal(tmp_path / "push.json")
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
