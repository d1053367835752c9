"""Harbor, CloudEvents (Harbor's and zot's) and Distribution: one event model.

The fixtures in tests/fixtures/ are written from each project's documented payloads (see
tests/fixtures/README). In process: what each fixture maps to, how a request's format is
told, and the events file round trip. Against a real ``s3syncer serve``: every fixture
through ``POST /trigger`` with the registry's own auth, the counts, the rules, and the events
file a run sees.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from conftest import FIXTURES
from daemon import Recorder, start_daemon
from deployment_files import EXAMPLES, code_blocks, page_section
from s3syncer.durable.journal import Journal
from s3syncer.formats.detect import (
    Notification,
    UnsupportedContentTypeError,
    check_content_type,
    parse_request,
)
from s3syncer.model.config import FORMATS
from s3syncer.model.event import EnvelopeError, event_from_document
from s3syncer.replicate.changes import replay
from waiting import wait_until

HERE = Path(__file__).resolve().parent / "fixtures"
STRUCTURED = "application/cloudevents+json"
BATCH = "application/cloudevents-batch+json"
D1 = "sha256:8a9e9863dbb6e10edb5adfe917c00da84e1700fa76e7ed02476aa6e6fb8ee0d8"
D2 = "sha256:dde8e930c7b6a490f728e66292bc9bce42efc9bbb5278bae40e4f30f6e00fe8c"
ZOT = "sha256:3b1c6f3e0d0b8c2a8a7d4f2c9e5b1a0d7c6e5f4a3b2c1d0e9f8a7b6c5d4e3f2a"


def fixture_request(relative: str) -> tuple[dict[str, str], bytes]:
    """The headers and body a registry sends for one fixture."""
    path = HERE / relative
    if path.name.startswith("zot-"):
        document = json.loads(path.read_bytes())
        return dict(document["headers"]), json.dumps(document["body"]).encode()
    if path.name.startswith("batch-"):
        return {"content-type": BATCH}, path.read_bytes()
    if path.parent.name == "cloudevents":
        return {"content-type": STRUCTURED}, path.read_bytes()
    return {"content-type": "application/json"}, path.read_bytes()


def parse_fixture(relative: str, formats: frozenset[str] = frozenset(FORMATS)) -> Notification:
    headers, body = fixture_request(relative)
    return parse_request(headers, body, formats)


# (action, repository, tag, digest, kind) per mapped event, and how many map to no action.
EXPECTED: dict[str, tuple[list[tuple[str, str, str | None, str, str | None]], int]] = {
    "harbor/01-push-artifact-tag.json": (
        [("push", "test-webhook/debian", "latest", D1, "manifest")],
        0,
    ),
    "harbor/02-push-artifact-by-digest.json": (
        [("push", "test-webhook/debian", None, D2, "manifest")],
        0,
    ),
    "harbor/03-pull-artifact.json": (
        [("pull", "test-webhook/debian", "latest", D1, "manifest")],
        0,
    ),
    "harbor/04-delete-artifact.json": (
        [("delete", "test-webhook/debian", None, D1, "manifest")],
        0,
    ),
    "harbor/05-scanning-completed.json": ([], 1),
    "harbor/06-quota-exceed.json": ([], 1),
    "harbor/07-replication.json": ([], 1),
    "cloudevents/harbor-01-artifact-pushed.json": (
        [("push", "library/busybox", "1.36", D2, "manifest")],
        0,
    ),
    "cloudevents/harbor-02-artifact-pulled.json": (
        [("pull", "library/busybox", None, D2, "manifest")],
        0,
    ),
    "cloudevents/harbor-03-artifact-deleted.json": (
        [("delete", "library/busybox", None, D2, "manifest")],
        0,
    ),
    "cloudevents/harbor-04-scan-completed.json": ([], 1),
    "cloudevents/zot-01-image-updated.json": (
        [("push", "space/my-image", "latest", ZOT, "manifest")],
        0,
    ),
    "cloudevents/zot-02-image-deleted-tag.json": (
        [("delete", "space/my-image", "latest", ZOT, None)],
        0,
    ),
    "cloudevents/zot-03-image-deleted-digest.json": (
        [("delete", "space/my-image", None, ZOT, "manifest")],
        0,
    ),
    "cloudevents/zot-04-repository-created.json": ([], 1),
    "cloudevents/zot-05-image-lint-failed.json": ([], 1),
    "cloudevents/batch-01-zot.json": (
        [
            ("push", "space/batch", "v2", ZOT, "manifest"),
            ("delete", "space/batch", "v1", ZOT, None),
        ],
        1,
    ),
}


def test_every_fixture_has_an_expectation() -> None:
    distribution = HERE / "distribution-2.8"  # captured from a real registry, not documented
    on_disk = {
        str(p.relative_to(HERE)) for p in HERE.rglob("*.json") if not p.is_relative_to(distribution)
    }
    assert on_disk == set(EXPECTED)


@pytest.mark.parametrize("relative", sorted(EXPECTED))
def test_fixture_maps_to_the_documented_events(relative: str) -> None:
    notification = parse_fixture(relative)
    mapped, unmapped = EXPECTED[relative]
    got = [(e.action, e.repository, e.tag, e.digest, e.kind) for e in notification.events]
    assert (got, notification.unmapped) == (mapped, unmapped)
    expected_format = "harbor" if relative.startswith("harbor/") else "cloudevents"
    assert all(e.format == expected_format for e in notification.events)


def test_zot_media_type_and_raw_in_structured_form() -> None:
    headers, body = fixture_request("cloudevents/zot-01-image-updated.json")
    [event] = parse_request(headers, body).events
    assert event.media_type == "application/vnd.oci.image.manifest.v1+json"
    assert event.id == headers["ce-id"]
    # Binary mode: raw is the whole event, attributes from the headers and data from the body.
    assert event.raw == {
        "specversion": "1.0",
        "id": headers["ce-id"],
        "source": "zotregistry.dev",
        "type": "zotregistry.image.updated",
        "time": headers["ce-time"],
        "datacontenttype": "application/json",
        "data": json.loads(body),
    }


def test_harbor_raw_is_the_payload_and_cloudevent_ids_stay_distinct() -> None:
    headers, body = fixture_request("harbor/01-push-artifact-tag.json")
    [event] = parse_request(headers, body).events
    assert event.raw == json.loads(body) and event.id is None
    document = json.loads(fixture_request("cloudevents/harbor-01-artifact-pushed.json")[1])
    document["data"]["resources"].append({"digest": D1, "tag": "1.37"})
    events = parse_request({"content-type": STRUCTURED}, json.dumps(document).encode()).events
    # One CloudEvent, two artifacts: two events, which de-duplication must not merge.
    assert [e.id for e in events] == [f"{document['id']}/0", f"{document['id']}/1"]
    assert [e.tag for e in events] == ["1.36", "1.37"]


def test_a_zot_type_prefix_is_honoured_and_unknown_types_are_ignored() -> None:
    headers, body = fixture_request("cloudevents/zot-01-image-updated.json")
    [event] = parse_request(
        {**headers, "ce-type": "com.example.registry.image.updated"}, body
    ).events
    assert (event.action, event.tag) == ("push", "latest")
    other = parse_request({**headers, "ce-type": "com.example.build.finished"}, body)
    assert (other.events, other.unmapped) == ([], 1)


def test_a_cloudevents_content_type_is_structured_mode_even_with_ce_headers() -> None:
    _, body = fixture_request("cloudevents/harbor-01-artifact-pushed.json")
    headers = {"content-type": STRUCTURED, "ce-specversion": "1.0", "ce-type": "x"}
    [event] = parse_request(headers, body).events
    assert (event.action, event.tag) == ("push", "1.36")


def test_binary_mode_decodes_percent_encoded_attributes() -> None:
    headers, body = fixture_request("cloudevents/zot-01-image-updated.json")
    [event] = parse_request({**headers, "ce-source": "zot%20eu%E2%82%AC"}, body).events
    assert event.raw["source"] == "zot eu€"
    with pytest.raises(EnvelopeError, match="not percent-encoded UTF-8"):
        parse_request({**headers, "ce-source": "%FF"}, body)


def test_every_fixture_round_trips_through_the_events_file_document() -> None:
    for relative in EXPECTED:
        for index, event in enumerate(parse_fixture(relative).events):
            document = json.loads(json.dumps(event.to_document()))
            assert document["raw"] == event.raw
            back = event_from_document(index, document)
            assert back == event and back.raw == event.raw and back.kind == event.kind


async def test_the_journal_keeps_every_format_across_a_restart(tmp_path: Path) -> None:
    events = [e for relative in sorted(EXPECTED) for e in parse_fixture(relative).events]
    before = Journal(tmp_path / "mirror.json")
    before.record(events)
    await before.flush()
    recovered = Journal(tmp_path / "mirror.json").load()
    assert recovered is not None and not recovered.truncated
    # Harbor's Default events have no id: each is kept, none merged with another.
    assert list(recovered.events) == events
    assert [e.raw for e in recovered.events] == [e.raw for e in events]
    assert [e.format for e in recovered.events] == [e.format for e in events]


def test_a_journal_of_the_previous_version_still_reads() -> None:
    raw = {"id": "x", "action": "push", "target": {"repository": "a", "tag": "v1"}}
    event = event_from_document(0, raw)
    assert (event.id, event.tag, event.raw, event.format) == ("x", "v1", raw, "distribution")


REFUSALS = [
    # (headers, body, formats, reason)
    (
        {"content-type": "application/json"},
        b'{"hello": 1}',
        FORMATS,
        "body matches none of the formats tried (distribution, harbor): expected "
        '{"events": [...]} or {"type": ..., "event_data": {...}}',
    ),
    ({}, b"[]", FORMATS, "body matches none of the formats tried (distribution, harbor)"),
    (
        {"content-type": "application/json"},
        (HERE / "harbor/01-push-artifact-tag.json").read_bytes(),
        ("distribution",),
        "body matches none of the formats tried (distribution)",
    ),
    (
        {"content-type": STRUCTURED},
        (HERE / "cloudevents/harbor-01-artifact-pushed.json").read_bytes(),
        ("distribution", "harbor"),
        "a CloudEvents request, and this command accepts only: distribution, harbor",
    ),
    (
        {"content-type": "application/vnd.docker.distribution.events.v1+json"},
        b'{"events": []}',
        ("harbor",),
        "a Distribution envelope (application/vnd.docker.distribution.events.v1+json), "
        "and this command accepts only: harbor",
    ),
    (
        {"content-type": "application/json"},
        b'{"events": []}',
        ("cloudevents",),
        "a JSON body without a CloudEvents content type or ce-* headers",
    ),
    (
        {"content-type": "application/json"},
        b'{"events": [], "type": "PUSH_ARTIFACT", "event_data": {}}',
        FORMATS,
        "body is both a Distribution envelope and a Harbor payload",
    ),
    (
        {"content-type": "application/json"},
        b'{"type": "PUSH_ARTIFACT", "event_data": {"repository": {"repo_full_name": "a"}}}',
        FORMATS,
        'event_data has no "resources" list',
    ),
    (
        {"content-type": STRUCTURED},
        b'{"specversion": "0.3", "id": "1", "source": "s", "type": "t"}',
        FORMATS,
        "CloudEvents specversion '0.3' is not 1.0",
    ),
    ({"content-type": STRUCTURED}, b'{"id": "1"}', FORMATS, 'no "specversion" string'),
    ({"content-type": BATCH}, b"{}", FORMATS, "expected a JSON array"),
    (
        {"ce-specversion": "1.0", "ce-id": "1", "ce-source": "s", "ce-type": "t"},
        b"<xml/>",
        FORMATS,
        "body is not JSON",
    ),
    (
        {"ce-specversion": "1.0", "ce-id": "1", "ce-source": "s", "content-type": "text/plain"},
        b"hi",
        FORMATS,
        "CloudEvent data of type 'text/plain': only JSON data is understood",
    ),
]


@pytest.mark.parametrize(("headers", "body", "formats", "reason"), REFUSALS)
def test_a_body_no_accepted_format_matches_is_refused_saying_why(
    headers: dict[str, str], body: bytes, formats: tuple[str, ...], reason: str
) -> None:
    with pytest.raises(EnvelopeError) as info:
        parse_request(headers, body, frozenset(formats))
    message = str(info.value)
    assert "\n" not in message
    assert reason in message, message


def test_content_types_no_format_uses_are_refused_before_the_body() -> None:
    for kind in ("text/plain", "application/xml"):
        with pytest.raises(UnsupportedContentTypeError, match=f"unsupported content type '{kind}'"):
            check_content_type({"content-type": kind})
    # A control character is a content type, a wrong one: it is not taken for none (found by
    # the fuzz test; str.strip() used to drop it).
    for kind in ("\x1e", "\x1c", " \x1f\t"):
        with pytest.raises(UnsupportedContentTypeError):
            check_content_type({"content-type": kind})
    for kind in ("", "application/json", STRUCTURED, BATCH.upper() + "; charset=utf-8"):
        check_content_type({"content-type": kind})
    # Binary mode: the content type is the data's, whatever it is.
    check_content_type({"content-type": "text/plain", "ce-specversion": "1.0"})


# --- a real s3syncer serve -------------------------------------------------------------------

TOKEN = "harbor-and-zot-token"
MIRROR_RULES = [
    {"action": "push", "tagged": True, "repository": "test-webhook/*"},
    {"action": "push", "repository": "library/busybox", "tag": "1.*"},
    {"action": "push", "repository": "space/*", "tag": "latest"},
    {"action": "delete"},
]
# What the mirror command accepts of each fixture (by its rules): the rest is ignored.
ACCEPTED = {
    "harbor/01-push-artifact-tag.json": 1,
    "harbor/04-delete-artifact.json": 1,
    "cloudevents/harbor-01-artifact-pushed.json": 1,
    "cloudevents/harbor-03-artifact-deleted.json": 1,
    "cloudevents/zot-01-image-updated.json": 1,
    "cloudevents/zot-02-image-deleted-tag.json": 1,
    "cloudevents/zot-03-image-deleted-digest.json": 1,
    "cloudevents/batch-01-zot.json": 1,  # the delete; the push of tag v2 is not "latest"
}


def registry_headers(relative: str) -> dict[str, str]:
    """The request headers, with the auth each registry sends."""
    headers, _ = fixture_request(relative)
    if "zot-" in relative:
        # zot: Basic credentials from its sink's "credentials"; the password is the token.
        basic = base64.b64encode(f"zot:{TOKEN}".encode()).decode()
        return {**headers, "Authorization": f"Basic {basic}"}
    # Harbor: the webhook policy's "auth header", sent as configured.
    return {**headers, "Authorization": f"Bearer {TOKEN}"}


def expected_documents(relative: str) -> list[dict[str, Any]]:
    """What the events file holds for the accepted events of one fixture."""
    return [
        e.to_document()
        for e in parse_fixture(relative).events
        if e.action == "delete" or (e.action == "push" and e.tag in ("latest", "1.36"))
    ]


@pytest.mark.integration
def test_every_format_through_a_real_daemon(tmp_path: Path) -> None:
    mirror = Recorder(tmp_path / "mirror")
    pinned = Recorder(tmp_path / "pinned")
    config = (
        f"auth: {json.dumps({'token': TOKEN})}\ncommands:\n"
        + mirror.command_yaml("mirror", delay="200ms", events=MIRROR_RULES)
        + pinned.command_yaml(
            "pinned", delay="200ms", events=[{"action": "push"}], formats=["distribution"]
        )
    )
    with start_daemon(tmp_path, config) as daemon:
        for relative in sorted(EXPECTED):
            _, body = fixture_request(relative)
            status, _, answer = daemon.post("/trigger/mirror", body, registry_headers(relative))
            mapped, unmapped = EXPECTED[relative]
            accepted = ACCEPTED.get(relative, 0)
            assert status == 200, (relative, answer)
            assert json.loads(answer) == {
                "accepted": accepted,
                "ignored": len(mapped) + unmapped - accepted,
            }, relative
        # The same bodies without the token are refused like any other request.
        status, _, _ = daemon.post("/trigger/mirror", body, fixture_request(relative)[0])
        assert status == 401

        # Every accepted event reaches a run, normalized, with what the registry sent as raw.
        want = [doc for relative in sorted(EXPECTED) for doc in expected_documents(relative)]
        assert len(want) == sum(ACCEPTED.values())

        def seen() -> list[dict[str, Any]] | None:
            got = [e for run in mirror.starts() for e in run["events"]["events"]]
            return got if len(got) >= len(want) else None

        got = wait_until(seen, timeout=15, message=lambda: str(mirror.records()))
        assert got == json.loads(json.dumps(want))
        assert {e["target"]["repository"] for e in got} == {
            "test-webhook/debian",
            "library/busybox",
            "space/my-image",
            "space/batch",
        }

        # A command pinned to Distribution refuses the others, naming what it tried.
        for relative, reason in (
            ("harbor/01-push-artifact-tag.json", b"formats tried (distribution)"),
            ("cloudevents/zot-01-image-updated.json", b"accepts only: distribution"),
            ("cloudevents/harbor-01-artifact-pushed.json", b"accepts only: distribution"),
        ):
            _, body = fixture_request(relative)
            status, _, answer = daemon.post("/trigger/pinned", body, registry_headers(relative))
            assert status == 400 and reason in answer, (relative, answer)
            assert answer.count(b"\n") == 1
        tagged = (FIXTURES / "02-push-manifest-tag-v1.json").read_bytes()
        status, _, answer = daemon.post(
            "/trigger/pinned",
            tagged,
            {"Content-Type": "application/json", "Authorization": f"Bearer {TOKEN}"},
        )
        assert (status, json.loads(answer)) == (200, {"accepted": 1, "ignored": 0})
        [run] = pinned.wait_starts(1)
        [document] = run["events"]["events"]
        assert document["raw"] == json.loads(tagged)["events"][0]
        assert document["format"] == "distribution"


def test_replay_reads_every_format_from_the_events_file() -> None:
    events = [
        e.to_document()
        for relative in (
            "harbor/01-push-artifact-tag.json",
            "harbor/02-push-artifact-by-digest.json",
            "harbor/03-pull-artifact.json",
            "cloudevents/zot-01-image-updated.json",
            "cloudevents/zot-02-image-deleted-tag.json",
            "cloudevents/harbor-03-artifact-deleted.json",
        )
        for e in parse_fixture(relative).events
    ]
    blob = parse_request(
        {"content-type": "application/vnd.docker.distribution.events.v1+json"},
        (FIXTURES / "00-push-blob-layer.json").read_bytes(),
    ).events
    changes = replay([*events, *(e.to_document() for e in blob)])
    assert changes.problems == []
    # Harbor names no media type: kind says the pushes are manifests, so both are copied.
    assert changes.pushed_manifests() == [
        ("test-webhook/debian", D1),
        ("test-webhook/debian", D2),
        ("space/my-image", ZOT),  # its tag was deleted after the push; the manifest stays
    ]
    assert changes.tags == {
        ("test-webhook/debian", "latest"): D1,
        ("space/my-image", "latest"): None,
    }
    assert changes.manifest_deletes() == [("library/busybox", D2)]
    assert changes.ignored == 2  # the pull and the layer blob


def _accepted(daemon: Any, name: str, fixture: str) -> int:
    body = (HERE / "harbor" / fixture).read_bytes()
    status, _, answer = daemon.post(f"/trigger/{name}", body, {"Content-Type": "application/json"})
    assert status == 200, answer
    return int(json.loads(answer)["accepted"])


@pytest.mark.integration
def test_the_documented_rules_for_harbor_take_its_pushes_and_deletes(tmp_path: Path) -> None:
    """Harbor sends no media type: the Harbor page's rules match, replicate's do not."""
    [block] = [
        block
        for block in code_blocks(
            page_section("registries/harbor.md", "How Harbor's events map"), "yaml"
        )
        if block.startswith("events:")
    ]
    pairing = yaml.safe_load((EXAMPLES / "replicate.yaml").read_text(encoding="utf-8"))
    [replicate] = [c for c in pairing["commands"] if c["name"] == "replicate"]
    commands = [
        {"name": "harbor", "cmd": "true", "delay": "1h", **yaml.safe_load(block)},
        {"name": "replicate", "cmd": "true", "delay": "1h", "events": replicate["events"]},
    ]
    config = "commands:\n" + "".join(f"  - {json.dumps(c)}\n" for c in commands)
    with start_daemon(tmp_path, config) as daemon:
        for fixture in ("01-push-artifact-tag.json", "02-push-artifact-by-digest.json"):
            assert _accepted(daemon, "harbor", fixture) == 1, fixture
            # what the Harbor page warns of: media type rules ignore every Harbor push
            assert _accepted(daemon, "replicate", fixture) == 0, fixture
        assert _accepted(daemon, "harbor", "04-delete-artifact.json") == 1
        assert _accepted(daemon, "harbor", "03-pull-artifact.json") == 0
