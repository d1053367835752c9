"""Registry notification envelopes: parsing, rule matching and the bounded EventLog.

The bodies under ``fixtures/distribution-2.8`` are what a real registry sent;
the rules are written the way an operator writes them in the config file.
"""

from __future__ import annotations

import json
import textwrap
from collections.abc import Sequence
from typing import Any

import pytest

from conftest import TAGGED_PUSHES, fixture_files
from s3syncer.config.file import parse_config
from s3syncer.formats.distribution import parse_envelope
from s3syncer.model.config import DEFAULT_EVENT_RULES, ConfigError, EventRule
from s3syncer.model.event import EnvelopeError, Event, parse_event
from s3syncer.model.event_log import MAX_EVENTS_PER_RUN, EventLog
from s3syncer.model.rules import matching, rule_matches


def rules_from_yaml(events_yaml: str) -> tuple[EventRule, ...]:
    """The rules of a command whose ``events:`` list is ``events_yaml``, via the config parser."""
    text = "commands:\n  - name: c\n    cmd: x\n    events:\n" + textwrap.indent(
        textwrap.dedent(events_yaml), "      "
    )
    return parse_config(text, env={}).commands[0].events


def matched_files(bodies: dict[str, bytes], rules: Sequence[EventRule]) -> set[str]:
    """The fixture files with at least one event that ``rules`` match."""
    return {name for name, body in bodies.items() if matching(rules, parse_envelope(body))}


def envelope(*events: dict[str, Any]) -> bytes:
    return json.dumps({"events": list(events)}).encode()


def event(
    action: str = "push",
    repository: str = "team/app",
    tag: str | None = None,
    media_type: str | None = "application/vnd.oci.image.manifest.v1+json",
    event_id: str | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """A registry event as sent, with only the given fields in ``target``."""
    target: dict[str, Any] = {"repository": repository}
    if tag is not None:
        target["tag"] = tag
    if media_type is not None:
        target["mediaType"] = media_type
    raw: dict[str, Any] = {"action": action, "target": target, **extra}
    if event_id is not None:
        raw["id"] = event_id
    return raw


def one(body: bytes) -> Event:
    (parsed,) = parse_envelope(body)
    return parsed


# --- the real registry's bodies -----------------------------------------------


def test_every_fixture_parses_into_its_events(fixture_bodies: dict[str, bytes]) -> None:
    assert len(fixture_bodies) == 13
    for name, body in fixture_bodies.items():
        events = parse_envelope(body)
        sent = json.loads(body)["events"]
        assert len(events) == len(sent) == 1, name
        assert [e.raw for e in events] == sent, name
        assert [e.id for e in events] == [s["id"] for s in sent], name


def test_fixture_fields(fixture_bodies: dict[str, bytes]) -> None:
    tagged = one(fixture_bodies["02-push-manifest-tag-v1.json"])
    assert (tagged.action, tagged.repository, tagged.tag, tagged.tagged) == (
        "push",
        "team/app",
        "v1",
        True,
    )
    assert tagged.media_type == "application/vnd.oci.image.manifest.v1+json"
    assert tagged.id == "9dff0a6e-d69c-43e1-870c-e92d8d01a02b"

    blob = one(fixture_bodies["00-push-blob-layer.json"])
    assert (blob.tag, blob.tagged, blob.media_type) == (None, False, "application/octet-stream")

    by_digest = one(fixture_bodies["08-push-manifest-by-digest.json"])
    assert (by_digest.repository, by_digest.tagged) == ("other/svc", False)

    manifest_delete = one(fixture_bodies["10-delete-manifest-by-digest.json"])
    assert (manifest_delete.action, manifest_delete.tag, manifest_delete.media_type) == (
        "delete",
        None,
        None,
    )
    tag_delete = one(fixture_bodies["11-delete-tag-latest.json"])
    assert (tag_delete.action, tag_delete.tag) == ("delete", "latest")


def test_default_rule_matches_exactly_the_tagged_pushes(fixture_bodies: dict[str, bytes]) -> None:
    assert matched_files(fixture_bodies, DEFAULT_EVENT_RULES) == TAGGED_PUSHES


def test_config_default_rules_match_exactly_the_tagged_pushes(
    fixture_bodies: dict[str, bytes],
) -> None:
    config = parse_config("commands: [{name: c, cmd: x}]", env={})
    assert matched_files(fixture_bodies, config.commands[0].events) == TAGGED_PUSHES


def test_default_rule_never_matches_blob_events(fixture_bodies: dict[str, bytes]) -> None:
    blobs = [n for n in fixture_bodies if "-blob-" in n]
    assert len(blobs) == 6
    assert not matched_files({n: fixture_bodies[n] for n in blobs}, DEFAULT_EVENT_RULES)


def test_fixture_files_are_in_the_order_sent() -> None:
    names = [path.name for path in fixture_files()]
    assert names == sorted(names)
    assert names[0].startswith("00-") and names[-1].startswith("12-")


# --- operator rules against the real bodies ---------------------------------------


def test_tagged_pushes_and_deletes(fixture_bodies: dict[str, bytes]) -> None:
    rules = rules_from_yaml(
        """\
        - {action: push, tagged: true}
        - {action: delete}
        """
    )
    assert matched_files(fixture_bodies, rules) == TAGGED_PUSHES | {
        "10-delete-manifest-by-digest.json",
        "11-delete-tag-latest.json",
        "12-delete-tag-v1.json",
    }


def test_only_team_repositories(fixture_bodies: dict[str, bytes]) -> None:
    rules = rules_from_yaml('- {repository: "team/*"}\n')
    matched = matched_files(fixture_bodies, rules)
    assert matched == {n for n in fixture_bodies if n[:2] not in ("06", "07", "08")}
    assert "08-push-manifest-by-digest.json" not in matched


def test_repository_glob_combined_with_default_shape(fixture_bodies: dict[str, bytes]) -> None:
    assert matched_files(
        fixture_bodies, rules_from_yaml('- {action: push, repository: "other/*"}\n')
    ) == {
        "06-push-blob-layer-2.json",
        "07-push-blob-config-2.json",
        "08-push-manifest-by-digest.json",
    }
    assert not matched_files(
        fixture_bodies, rules_from_yaml('- {action: push, tagged: true, repository: "other/*"}\n')
    )


def test_media_type_glob(fixture_bodies: dict[str, bytes]) -> None:
    rules = rules_from_yaml('- {action: push, mediaType: "application/vnd.oci.image.manifest.*"}\n')
    assert matched_files(fixture_bodies, rules) == TAGGED_PUSHES | {
        "08-push-manifest-by-digest.json"
    }
    blobs = rules_from_yaml('- {mediaType: "application/octet-stream"}\n')
    assert matched_files(fixture_bodies, blobs) == {n for n in fixture_bodies if "-blob-" in n}


def test_untagged_rule(fixture_bodies: dict[str, bytes]) -> None:
    rules = rules_from_yaml("- {action: delete, tagged: false}\n")
    assert matched_files(fixture_bodies, rules) == {"10-delete-manifest-by-digest.json"}


def test_tag_glob(fixture_bodies: dict[str, bytes]) -> None:
    rules = rules_from_yaml('- {action: push, tag: "v[0-9]*"}\n')
    assert matched_files(fixture_bodies, rules) == {"02-push-manifest-tag-v1.json"}


def test_any_rule_is_enough() -> None:
    rules = rules_from_yaml("- {action: mount}\n- {action: pull, tag: latest}\n")
    assert matching(rules, parse_envelope(envelope(event("mount", media_type=None))))
    assert matching(rules, parse_envelope(envelope(event("pull", tag="latest"))))
    assert not matching(rules, parse_envelope(envelope(event("pull", tag="v1"))))


def test_every_named_field_must_match() -> None:
    rule = EventRule(
        action="push", tagged=True, repository="team/*", tag="v*", media_type="*manifest*"
    )
    good = one(envelope(event(tag="v2")))
    assert rule_matches(rule, good)
    for changed in (
        event("pull", tag="v2"),
        event(tag=None),
        event(repository="other/app", tag="v2"),
        event(tag="latest"),
        event(tag="v2", media_type="application/octet-stream"),
    ):
        assert not rule_matches(rule, one(envelope(changed))), changed


def test_empty_rule_matches_everything(fixture_bodies: dict[str, bytes]) -> None:
    assert matched_files(fixture_bodies, [EventRule()]) == set(fixture_bodies)


def test_globs_are_case_sensitive_and_star_crosses_slashes() -> None:
    nested = one(envelope(event(repository="team/sub/app", tag="v1")))
    assert rule_matches(EventRule(repository="team/*"), nested)
    assert not rule_matches(EventRule(repository="Team/*"), nested)
    assert not rule_matches(EventRule(tag="V1"), nested)


@pytest.mark.parametrize(
    ("tag", "matches"),
    [("v1.2.3", True), ("v10.0.1", True), ("latest", True), ("v1.2.3-rc1", False), ("rc", True)],
)
def test_rc_tags_are_skipped_with_unless(tag: str, matches: bool) -> None:
    """Globs cannot negate; ``unless`` names what a rule must not match."""
    rule = EventRule(action="push", tagged=True, unless=EventRule(tag="*-rc*"))
    assert rule_matches(rule, one(envelope(event(tag=tag)))) is matches


def test_unless_read_from_yaml_over_every_fixture(fixture_bodies: dict[str, bytes]) -> None:
    config = parse_config(
        "commands:\n"
        "  - name: push\n"
        "    cmd: 'true'\n"
        "    events:\n"
        "      - {action: push, tagged: true, unless: {tag: latest}}\n"
    )
    assert matched_files(fixture_bodies, config.commands[0].events) == {
        "02-push-manifest-tag-v1.json"
    }


def test_unless_with_an_unknown_field_is_a_config_error_with_its_path() -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config(
            "commands:\n  - {name: p, cmd: x, events: [{action: push, unless: {color: red}}]}\n"
        )
    assert any(
        e.startswith("commands[0].events[0].unless.color: unknown key") for e in caught.value.errors
    )


# --- other envelope shapes -------------------------------------------------------


def test_distribution_3_delete_shape() -> None:
    body = envelope(
        {
            "id": "d3-1",
            "action": "delete",
            "target": {
                "mediaType": "",
                "digest": "",
                "size": 0,
                "repository": "team/app",
                "tag": "v1",
            },
        },
        {
            "id": "d3-2",
            "action": "delete",
            "target": {
                "mediaType": "",
                "digest": "",
                "size": 0,
                "repository": "team/app",
                "tag": "",
            },
        },
    )
    tag_delete, manifest_delete = parse_envelope(body)
    assert (tag_delete.action, tag_delete.tag, tag_delete.tagged, tag_delete.media_type) == (
        "delete",
        "v1",
        True,
        None,
    )
    assert (manifest_delete.tag, manifest_delete.tagged) == (None, False)
    assert tag_delete.raw["target"]["size"] == 0
    assert not matching(DEFAULT_EVENT_RULES, [tag_delete, manifest_delete])
    assert matching([EventRule(action="delete", tagged=True)], [tag_delete, manifest_delete]) == [
        tag_delete
    ]
    # An empty mediaType is "no media type": a specific glob does not match it.
    assert not rule_matches(EventRule(media_type="application/*"), tag_delete)


def test_v2_content_with_several_events_keeps_all_in_order(
    fixture_bodies: dict[str, bytes],
) -> None:
    sent = [json.loads(body)["events"][0] for body in fixture_bodies.values()]
    events = parse_envelope(json.dumps({"events": sent}).encode())
    assert [e.raw for e in events] == sent
    assert [e.id for e in matching(DEFAULT_EVENT_RULES, events)] == [
        "9dff0a6e-d69c-43e1-870c-e92d8d01a02b",
        "ad438893-20f4-4a02-9c23-a7472739c4fa",
    ]


def test_empty_events_list_is_a_valid_envelope() -> None:
    assert parse_envelope(b'{"events": []}') == []


def test_extra_fields_are_kept_in_raw() -> None:
    raw = event(tag="v1", event_id="x", actor={"name": "ci"}, custom=[1, 2])
    (parsed,) = parse_envelope(envelope(raw))
    assert parsed.raw == raw


def test_missing_repository_and_id() -> None:
    (parsed,) = parse_envelope(b'{"events": [{"action": "push", "target": {"tag": "v1"}}]}')
    assert (parsed.repository, parsed.id, parsed.tagged) == ("", None, True)


def test_utf8_bom_and_non_ascii_are_accepted() -> None:
    body = '\ufeff{"events": [{"action": "push", "target": {"repository": "t/ä", "tag": "ü"}}]}'
    (parsed,) = parse_envelope(body.encode("utf-8"))
    assert (parsed.repository, parsed.tag) == ("t/ä", "ü")


# --- bad envelopes ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"not json", "body is not JSON: Expecting value"),
        (b"", "body is not JSON: Expecting value"),
        (b'{"events": [}', "body is not JSON"),
        (b'{"events": [], "x": "caf\xe9"}', "body is not UTF-8 text"),
        (b"\xff\xfe\x00", "body is not UTF-8 text"),
        ('{"events": []}'.encode("utf-16"), "body is not UTF-8 text"),
        (b"[]", "body is not a notification envelope: expected a JSON object"),
        (b'[{"events": []}]', "body is not a notification envelope: expected a JSON object"),
        (b"null", "body is not a notification envelope: expected a JSON object"),
        (b'"events"', "body is not a notification envelope: expected a JSON object"),
        (b"{}", 'body is not a notification envelope: "events" must be a list'),
        (b'{"events": null}', 'body is not a notification envelope: "events" must be a list'),
        (b'{"events": {}}', 'body is not a notification envelope: "events" must be a list'),
        (b'{"events": "push"}', 'body is not a notification envelope: "events" must be a list'),
        (b'{"events": [1]}', "events[0] is not an object"),
        (b'{"events": [{"action": "push", "target": {}}, []]}', "events[1] is not an object"),
        (b'{"events": [{"target": {}}]}', 'events[0] has no "action" string'),
        (b'{"events": [{"action": 1, "target": {}}]}', 'events[0] has no "action" string'),
        (b'{"events": [{"action": "push"}]}', 'events[0] has no "target" object'),
        (b'{"events": [{"action": "push", "target": "x"}]}', 'events[0] has no "target" object'),
        (
            b'{"events": [{"action": "push", "target": {"tag": 1}}]}',
            "events[0].target.tag is not a string",
        ),
        (
            b'{"events": [{"action": "push", "target": {"tag": ["v1"]}}]}',
            "events[0].target.tag is not a string",
        ),
        (
            b'{"events": [{"action": "push", "target": {"repository": {}}}]}',
            "events[0].target.repository is not a string",
        ),
        (
            b'{"events": [{"action": "push", "target": {"mediaType": 3}}]}',
            "events[0].target.mediaType is not a string",
        ),
        (
            b'{"events": [{"action": "push", "target": {}, "id": 7}]}',
            "events[0].id is not a string",
        ),
    ],
)
def test_bad_envelopes_say_why_in_one_line(body: bytes, reason: str) -> None:
    with pytest.raises(EnvelopeError) as info:
        parse_envelope(body)
    message = str(info.value)
    assert message.startswith(reason)
    assert "\n" not in message


@pytest.mark.parametrize(
    "body",
    [
        b"[" * 100_000 + b"]" * 100_000,
        b"[" * 100_000,
        b'{"events": [' + b'{"a":' * 100_000 + b"1" + b"}" * 100_000 + b"]}",
        b'{"events": [{"action": "push", "target": {"x": '
        + b"[" * 100_000
        + b"]" * 100_000
        + b"}}]}",
    ],
)
def test_deep_nesting_is_an_envelope_error_not_a_crash(body: bytes) -> None:
    with pytest.raises(EnvelopeError) as info:
        parse_envelope(body)
    assert "\n" not in str(info.value)


def test_huge_integer_is_an_envelope_error_with_a_true_reason() -> None:
    body = b'{"events": [], "n": ' + b"1" * 5000 + b"}"
    with pytest.raises(EnvelopeError) as info:
        parse_envelope(body)
    assert str(info.value).startswith("body is not JSON")
    assert "nested" not in str(info.value)
    assert "\n" not in str(info.value)


def test_envelope_error_is_a_value_error() -> None:
    assert issubclass(EnvelopeError, ValueError)


# --- EventLog --------------------------------------------------------------------


def make(event_id: str | None, tag: str = "v1") -> Event:
    return one(envelope(event(tag=tag, event_id=event_id)))


def test_event_log_keeps_arrival_order() -> None:
    log = EventLog()
    log.extend([make("c"), make("a"), make("b")])
    assert [e.id for e in log] == ["c", "a", "b"]
    assert len(log) == 3
    assert not log.truncated


def test_event_log_drops_resent_ids_keeping_the_first() -> None:
    log = EventLog()
    first = make("same", tag="first")
    log.extend([first, make("other"), make("same", tag="resent")])
    assert [e.id for e in log] == ["same", "other"]
    assert next(iter(log)).tag == "first"


def test_event_log_keeps_every_event_without_an_id() -> None:
    log = EventLog()
    for _ in range(3):
        log.add(make(None))
    log.add(make(""))  # an empty id is no id
    assert len(log) == 4


def test_event_log_cap_sets_truncated() -> None:
    log = EventLog(limit=3)
    log.extend(make(str(n)) for n in range(5))
    assert [e.id for e in log] == ["0", "1", "2"]
    assert log.truncated


def test_event_log_at_exact_limit_is_not_truncated() -> None:
    log = EventLog(limit=3)
    log.extend(make(str(n)) for n in range(3))
    log.add(make("1"))  # a duplicate of a kept id is not a lost event
    assert len(log) == 3
    assert not log.truncated


def test_event_log_default_limit_is_ten_thousand() -> None:
    assert MAX_EVENTS_PER_RUN == 10_000
    log = EventLog()
    raw = event(tag="v1")
    log.extend(
        Event(id=str(n), action="push", repository="r", tag="v1", media_type=None, raw=raw)
        for n in range(10_001)
    )
    assert len(log) == 10_000
    assert log.truncated


def test_event_log_merge_keeps_order_dedup_and_truncation() -> None:
    mine = EventLog(limit=10)
    mine.extend([make("a"), make("b")])
    other = EventLog(limit=1)
    other.extend([make("b"), make("c")])
    assert other.truncated
    mine.merge(other)
    assert [e.id for e in mine] == ["a", "b"]
    assert mine.truncated


def test_event_log_to_json_shape_and_raw_events(fixture_bodies: dict[str, bytes]) -> None:
    log = EventLog()
    sent: list[dict[str, Any]] = []
    for name in sorted(TAGGED_PUSHES):
        body = fixture_bodies[name]
        log.extend(matching(DEFAULT_EVENT_RULES, parse_envelope(body)))
        sent.extend(json.loads(body)["events"])
    # The registry resends an event: it must not appear twice.
    log.extend(parse_envelope(fixture_bodies["02-push-manifest-tag-v1.json"]))
    document = log.to_json("push", "event")
    assert list(document) == ["command", "reason", "events", "truncated"]
    assert (document["command"], document["reason"], document["truncated"]) == (
        "push",
        "event",
        False,
    )
    # What the command reads back is each event normalized, and exactly as sent under raw.
    events = json.loads(json.dumps(document))["events"]
    assert [event["raw"] for event in events] == sent
    for event, raw in zip(events, sent, strict=True):
        # A Distribution event stays as the registry sent it, every field in place, with the
        # normalized format and kind added: scripts that read timestamp or target.size keep working.
        assert event == {
            **raw,
            "format": "distribution",
            "target": {**raw["target"], "kind": "manifest"},
            "raw": raw,
        }


def test_empty_event_log_to_json() -> None:
    assert EventLog().to_json("push", "reconcile") == {
        "command": "push",
        "reason": "reconcile",
        "events": [],
        "truncated": False,
    }


def test_truncated_to_json() -> None:
    log = EventLog(limit=1)
    log.extend([make("a"), make("b")])
    document = log.to_json("c", "event")
    assert document["truncated"] is True
    assert [e["id"] for e in document["events"]] == ["a"]


def test_parse_event_names_the_index_and_keeps_raw() -> None:
    raw = event(tag="v1", event_id="x")
    parsed = parse_event(3, raw)
    assert (parsed.id, parsed.tag, parsed.raw) == ("x", "v1", raw)
    with pytest.raises(EnvelopeError, match=r"^events\[3\] has no \"target\" object$"):
        parse_event(3, {"action": "push"})
