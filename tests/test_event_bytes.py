"""Bytes, not counts: a request's bytes are stored once, and pending events have a byte budget."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from conftest import FIXTURES
from s3syncer.durable.journal import Journal
from s3syncer.formats.cloudevents import STRUCTURED
from s3syncer.formats.detect import parse_request
from s3syncer.model.event import Event
from s3syncer.model.event_log import EventLog

HARBOR = FIXTURES.parent / "harbor" / "01-push-artifact-tag.json"
HARBOR_CLOUDEVENT = FIXTURES.parent / "cloudevents" / "harbor-01-artifact-pushed.json"
MIB = 1024 * 1024
MAX_EVENT_BYTES = 16 * MIB  # the documented budget


def json_size(value: object) -> int:
    """Bytes of ``value`` as the events file and the journal write it."""
    return len(json.dumps(value, separators=(",", ":")))


def _resources(count: int) -> list[dict[str, str]]:
    return [
        {
            "digest": f"sha256:{i:064x}",
            "tag": f"v{i}",
            "resource_url": f"hub.harbor.com/test-webhook/debian:v{i}",
        }
        for i in range(count)
    ]


def _harbor_request(count: int) -> tuple[dict[str, str], bytes]:
    payload = json.loads(HARBOR.read_bytes())
    payload["event_data"]["resources"] = _resources(count)
    return {"content-type": "application/json"}, json.dumps(payload).encode()


def _harbor_cloudevent(count: int) -> tuple[dict[str, str], bytes]:
    document = json.loads(HARBOR_CLOUDEVENT.read_bytes())
    document["data"]["resources"] = _resources(count)
    return {"content-type": STRUCTURED}, json.dumps(document).encode()


def _resources_of(raw: dict[str, Any]) -> Any:
    return (raw.get("event_data") or raw["data"])["resources"]


@pytest.mark.parametrize("request_of", [_harbor_request, _harbor_cloudevent])
def test_a_request_of_many_artifacts_is_stored_once_not_once_an_artifact(
    request_of: Any,
) -> None:
    headers, body = request_of(500)
    events = parse_request(headers, body).events
    log = EventLog()
    log.extend(events)
    written = json_size(log.to_json("push", "event"))
    # Each event is the envelope (the request without its resources) and its own resource,
    # plus the normalized fields: linear in the request. Once each event copied the whole
    # request: 500 x 80 KB, 39 MB for an 80 KB request.
    _, empty = request_of(0)
    envelope = len(empty)
    assert written < len(body) + 500 * (envelope + 512), f"{written} bytes for {len(body)} sent"
    assert len(log) == 500 and not log.truncated


@pytest.mark.parametrize("request_of", [_harbor_request, _harbor_cloudevent])
def test_each_artifact_event_is_the_request_narrowed_to_its_own_artifact(
    request_of: Any,
) -> None:
    headers, body = request_of(3)
    sent = json.loads(body)
    events = parse_request(headers, body).events
    for event, resource in zip(events, _resources(3), strict=True):
        # The payload as the registry sent it, with only this event's artifact in it.
        assert _resources_of(event.raw) == [resource]
        expected = copy.deepcopy(sent)
        _resources_of(expected)[:] = [resource]
        assert event.raw == expected
        assert event.size == json_size(event.to_document())  # measured, not serialized


def _big_event(i: int, size: int = MIB) -> Event:
    raw = {"id": f"e{i}", "action": "push", "target": {"repository": "r", "tag": "x" * size}}
    return Event(f"e{i}", "push", "r", "v1", None, raw)


@pytest.mark.slow  # most of a second: the full suite runs it
def test_pending_events_are_bounded_in_bytes_and_the_overflow_says_sync_everything() -> None:
    log = EventLog()
    kept = log.extend(_big_event(i) for i in range(300))
    assert log.truncated  # never an error, never a silent loss: the run syncs everything
    assert log.bytes <= MAX_EVENT_BYTES
    assert sum(event.size for event in log) == log.bytes
    assert len(log) == len(kept) < 20  # not 300 MiB of events


def test_a_settled_batch_gives_its_bytes_back() -> None:
    log = EventLog(max_bytes=5 * MIB)
    log.extend((_big_event(i) for i in range(4)), batch=1)
    log.extend((_big_event(i) for i in range(4, 8)), batch=2)
    assert log.truncated and len(log) == 4
    log.forget_through(1)
    assert len(log) == 0 and log.bytes == 0 and log.truncated  # batch 2 lost events
    log.extend((_big_event(i) for i in range(8, 10)), batch=3)
    assert [event.id for event in log] == ["e8", "e9"]


def test_one_event_larger_than_the_budget_is_not_kept_but_marks_the_log_truncated() -> None:
    log = EventLog(max_bytes=MIB // 2)
    assert not log.add(_big_event(0))
    assert log.truncated and len(log) == 0


async def test_the_journal_file_stays_within_the_byte_budget(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "push.json")
    for i in range(40):
        journal.record([_big_event(i)])
        await journal.flush()
    assert journal.truncated
    assert journal.path.stat().st_size < MAX_EVENT_BYTES + MIB
