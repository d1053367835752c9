"""Fuzzing with Hypothesis: the parsers, the webhook's ASGI fast path, a live daemon.

Whatever arrives, ``parse_envelope`` and ``parse_request`` (Harbor, CloudEvents in every mode)
return events or raise :class:`EnvelopeError` with a one-line reason; the webhook answers a
complete 200/400/401/404/413/415, never a 5xx; every trigger it hands to the runner is one it
answered 200 with ``accepted > 0``.
"""

from __future__ import annotations

import base64
import contextlib
import http.client
import itertools
import json
import socket
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import trio
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from asgi_request import http_scope
from conftest import FIXTURES, TAGGED_PUSHES, fixture_body
from daemon import Daemon, Recorder, start_daemon
from fuzz_budget import examples
from s3syncer.daemon.admission import Admission
from s3syncer.daemon.supervision import CommandSlot
from s3syncer.durable.history import RunHistory
from s3syncer.engine.runner import Runner
from s3syncer.formats.detect import (
    CONTENT_TYPES,
    DISTRIBUTION_CONTENT_TYPES,
    JSON,
    Notification,
    parse_request,
)
from s3syncer.formats.distribution import parse_envelope
from s3syncer.model.command_view import CommandView
from s3syncer.model.config import AuthConfig, CommandConfig, EventRule
from s3syncer.model.event import EnvelopeError, Event, event_from_document
from s3syncer.model.rules import matching
from s3syncer.model.run import RunRequest, RunResult, Trigger
from s3syncer.obs.metrics import Metrics
from s3syncer.web.app import create_app
from s3syncer.web.webhook import MAX_BODY
from waiting import wait_until

TAG_V1 = "02-push-manifest-tag-v1.json"
# The content types under which a Distribution envelope is what is expected.
ENVELOPE_CONTENT_TYPES = DISTRIBUTION_CONTENT_TYPES | {JSON}
OTHER_FIXTURES = Path(__file__).resolve().parent / "fixtures"


def parse_or_reason(body: bytes) -> list[Event] | str:
    """``parse_envelope(body)``, or the EnvelopeError's message; anything else fails the test.

    Accepted events must go into the command's events file as JSON (RFC 8259: no NaN or
    Infinity) that reads back as the same events."""
    try:
        events = parse_envelope(body)
    except EnvelopeError as exc:
        message = str(exc)
        assert message, f"empty reason for {body[:200]!r}"
        assert "\n" not in message and "\r" not in message, f"not one line: {message!r}"
        return message
    raws = [event.raw for event in events]
    assert json.loads(json.dumps(raws, allow_nan=False)) == raws
    return events


# --- strategies ----------------------------------------------------------------------------

# Text as JSON can carry it: any code point, lone surrogates included (json.dumps escapes
# them as \udXXX, which json.loads reads back as a lone surrogate).
any_text = st.text(st.characters(codec=None), max_size=20)
json_leaves = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.integers(min_value=-(10**200), max_value=10**200)
    # Finite: NaN and Infinity are not JSON (see test_non_finite_numbers_are_refused).
    | st.floats(allow_nan=False, allow_infinity=False)
    | any_text
)
json_values = st.recursive(
    json_leaves,
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(
            any_text | st.sampled_from(["events", "action", "target", "id"]), children, max_size=4
        )
    ),
    max_leaves=25,
)
# Extra fields: any JSON, kept small so that whole envelopes stay quick to generate.
small_json = st.recursive(
    json_leaves,
    lambda children: (
        st.lists(children, max_size=2) | st.dictionaries(any_text, children, max_size=2)
    ),
    max_leaves=4,
)

MISSING = object()


def optional_field(right: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """A field's value: of the right type, of a wrong type, null, or missing altogether."""
    return st.one_of(right, right, st.none(), small_json, st.just(MISSING))


@st.composite
def events(draw: st.DrawFn) -> Any:
    """One event: mostly registry-shaped, with wrong types, missing and extra fields."""
    if draw(st.integers(0, 9)) == 0:
        return draw(small_json)  # not even an object, most of the time
    target: dict[str, Any] = {}
    for name, right in (
        ("repository", st.sampled_from(["app", "team/app", ""]) | any_text),
        ("tag", st.sampled_from(["v1", "latest", ""]) | any_text),
        ("mediaType", st.sampled_from(["application/vnd.oci.image.manifest.v1+json"])),
        ("digest", any_text),
    ):
        value = draw(optional_field(right))
        if value is not MISSING:
            target[name] = value
    target.update(draw(st.dictionaries(any_text, small_json, max_size=2)))
    event: dict[str, Any] = {}
    for name, value in (
        ("id", draw(optional_field(any_text))),
        ("action", draw(optional_field(st.sampled_from(["push", "pull", "delete"]) | any_text))),
        ("target", draw(st.one_of(st.just(target), st.just(target), small_json))),
    ):
        if value is not MISSING:
            event[name] = value
    event.update(draw(st.dictionaries(any_text, small_json, max_size=2)))
    return event


def event_is_valid(raw: Any) -> bool:
    """The contract, written independently of the parser: what an event must look like."""
    if not isinstance(raw, dict) or not isinstance(raw.get("action"), str):
        return False
    target = raw.get("target")
    if not isinstance(target, dict):
        return False
    strings = [
        target.get("repository"),
        target.get("tag"),
        target.get("mediaType"),
        target.get("digest"),
        raw.get("id"),
    ]
    return all(value is None or isinstance(value, str) for value in strings)


envelopes = st.fixed_dictionaries(
    {"events": st.lists(events(), max_size=5)},
    optional={"extra": small_json, "ids": small_json},
)


# --- parse_envelope ------------------------------------------------------------------------


@settings(max_examples=examples(300))
@given(st.binary(max_size=2000))
def test_arbitrary_bytes_parse_or_say_why(body: bytes) -> None:
    parse_or_reason(body)


@settings(max_examples=examples(300))
@given(json_values)
def test_arbitrary_json_values_parse_or_say_why(value: Any) -> None:
    result = parse_or_reason(json.dumps(value).encode())
    if isinstance(result, list):
        assert isinstance(value, dict) and isinstance(value.get("events"), list)


@settings(max_examples=examples(400))
@given(envelopes, st.sampled_from(["compact", "indented", "ascii", "bom"]))
def test_envelopes_parse_exactly_when_every_event_is_valid(
    envelope: dict[str, Any], style: str
) -> None:
    if style == "indented":
        text = json.dumps(envelope, indent=2, ensure_ascii=False)
    else:
        text = json.dumps(envelope, ensure_ascii=style == "ascii")
    try:
        body = text.encode("utf-8")
    except UnicodeEncodeError:
        # A lone surrogate written raw is not UTF-8: the parser must say so.
        assert "body is not UTF-8" in str(parse_or_reason(text.encode("utf-8", "surrogatepass")))
        return
    if style == "bom":
        body = b"\xef\xbb\xbf" + body
    result = parse_or_reason(body)
    sent = envelope["events"]
    if not all(event_is_valid(raw) for raw in sent):
        assert isinstance(result, str), f"accepted an invalid envelope: {envelope!r}"
        first_bad = next(i for i, raw in enumerate(sent) if not event_is_valid(raw))
        assert result.startswith(f"events[{first_bad}]"), result
        return
    assert isinstance(result, list), result
    # Round trip: every event exactly as sent, in order, and the fields the rules read.
    assert [e.raw for e in result] == sent
    for parsed, raw in zip(result, sent, strict=True):
        assert parsed.action == raw["action"]
        assert parsed.repository == (raw["target"].get("repository") or "")
        assert parsed.tag == (raw["target"].get("tag") or None)
        assert parsed.media_type == (raw["target"].get("mediaType") or None)
        assert parsed.digest == (raw["target"].get("digest") or None)
        assert parsed.id == (raw.get("id") or None)


@settings(max_examples=examples(100))
@given(
    st.integers(1, 12_000),
    st.sampled_from(["{}", "[{}]", '{{"events": [], "n": {}}}', '{{"events": [{}]}}']),
    st.sampled_from(["", "-", "0.", "1e", "1e-"]),
)
def test_huge_numbers(digits: int, shape: str, prefix: str) -> None:
    number = prefix + "7" * digits
    result = parse_or_reason(shape.format(number).encode())
    assert isinstance(result, str) or '"n"' in shape, result


@pytest.mark.parametrize(
    "number", ["NaN", "Infinity", "-Infinity", "1e400", "-1E+309", "1" + "0" * 400 + ".5"]
)
def test_non_finite_numbers_are_refused(number: str) -> None:
    # Python's json would read these as floats nan/inf and write them back as NaN/Infinity,
    # which no other JSON reader takes: the events file must stay JSON.
    body = f'{{"events": [{{"action": "push", "target": {{"tag": "v1"}}, "n": {number}}}]}}'
    reason = parse_or_reason(body.encode())
    assert isinstance(reason, str) and reason.startswith("body is not JSON"), reason


@settings(max_examples=examples(100))
@given(
    st.integers(1, 50_000),
    st.sampled_from(["[", '{"a":', '{"events":[', '{"events":[{"action":"push","target":{"x":[']),
    st.booleans(),
)
def test_deep_nesting(depth: int, opener: str, closed: bool) -> None:
    body = opener + "[" * depth + ("1" + "]" * depth if closed else "")
    parse_or_reason(body.encode())


@settings(max_examples=examples(300))
@given(
    st.binary(min_size=1, max_size=8),
    st.integers(0, 60),
    st.sampled_from(["utf-8", "utf-16", "utf-16-le", "utf-32", "latin-1", "surrogates"]),
)
def test_non_utf8_bodies(junk: bytes, where: int, encoding: str) -> None:
    good = fixture_body(TAG_V1).decode()
    if encoding == "surrogates":
        # CESU-style: a surrogate encoded as three bytes is not UTF-8.
        body = (good[:-3] + '"\ud83d\ude00"' + good[-3:]).encode("utf-8", "surrogatepass")
    else:
        body = good.encode(encoding, "replace")
    where = min(where, len(body))
    result = parse_or_reason(body[:where] + junk + body[where:])
    if encoding not in ("utf-8", "latin-1"):
        assert isinstance(result, str)


def test_escaped_surrogates_are_kept_as_sent() -> None:
    raw = {"action": "push", "target": {"repository": "a\ud800b", "tag": "\udfff"}}
    [event] = parse_envelope(json.dumps({"events": [raw]}).encode())
    assert event.raw == raw and event.tag == "\udfff"


# --- Harbor and CloudEvents ---------------------------------------------------------------

DIGEST = "sha256:" + "a" * 64
HARBOR_TYPES = ["PUSH_ARTIFACT", "PULL_ARTIFACT", "DELETE_ARTIFACT", "SCANNING_COMPLETED"]
CLOUDEVENT_TYPES_SEEN = [
    "harbor.artifact.pushed",
    "harbor.artifact.deleted",
    "harbor.scan.completed",
    "zotregistry.image.updated",
    "zotregistry.image.deleted",
    "com.example.image.deleted",
    "zotregistry.repository.created",
]


@st.composite
def shaped(draw: st.DrawFn, fields: dict[str, st.SearchStrategy[Any]]) -> Any:
    """An object with ``fields`` of the right type, a wrong type, null or missing; or junk."""
    if draw(st.integers(0, 14)) == 0:
        return draw(small_json)
    shape: dict[str, Any] = {}
    for name, right in fields.items():
        value = draw(optional_field(right))
        if value is not MISSING:
            shape[name] = value
    shape.update(draw(st.dictionaries(any_text, small_json, max_size=1)))
    return shape


references = st.sampled_from(["v1", "latest", DIGEST, ""]) | any_text
harbor_event_data = shaped(
    {
        "resources": st.lists(
            shaped({"digest": st.just(DIGEST) | any_text, "tag": references}), max_size=3
        ),
        "repository": shaped({"repo_full_name": st.sampled_from(["proj/app"]) | any_text}),
    }
)
harbor_payloads = shaped(
    {
        "type": st.sampled_from(HARBOR_TYPES) | any_text,
        "occur_at": st.integers(),
        "event_data": harbor_event_data,
    }
)
zot_data = shaped(
    {
        "name": st.sampled_from(["space/app"]) | any_text,
        "reference": references,
        "digest": st.just(DIGEST) | any_text,
        "mediaType": st.just("application/vnd.oci.image.manifest.v1+json") | any_text,
    }
)
cloudevents = shaped(
    {
        "specversion": st.sampled_from(["1.0", "0.3"]),
        "id": st.sampled_from(["1", "2"]) | any_text,
        "source": st.sampled_from(["zotregistry.dev"]) | any_text,
        "type": st.sampled_from(CLOUDEVENT_TYPES_SEEN) | any_text,
        "data": harbor_event_data | zot_data,
    }
)
# What an HTTP header can carry (Latin-1), with percent-escapes now and then.
latin1_text = st.text(st.characters(max_codepoint=0xFF), max_size=20) | st.sampled_from(
    ["%20", "%E2%82%AC", "%FF", "%", "%zz"]
)


def parse_request_or_reason(headers: dict[str, str], body: bytes) -> Notification | str:
    """``parse_request``, or its one-line reason; events must survive the events file."""
    try:
        notification = parse_request(headers, body)
    except EnvelopeError as exc:
        message = str(exc)
        assert message and "\n" not in message and "\r" not in message, repr(message)
        return message
    for index, event in enumerate(notification.events):
        document = json.loads(json.dumps(event.to_document(), allow_nan=False))
        back = event_from_document(index, document)
        assert back == event and back.raw == event.raw
        assert back.action in ("push", "pull", "delete")
    return notification


def encode(value: Any) -> bytes:
    return json.dumps(value).encode("utf-8", "surrogatepass")


@settings(max_examples=examples(400))
@given(harbor_payloads)
def test_harbor_payloads_parse_or_say_why(payload: Any) -> None:
    result = parse_request_or_reason({"content-type": JSON}, encode(payload))
    if isinstance(result, Notification):
        assert isinstance(payload, dict)
        mapped = {"PUSH_ARTIFACT": "push", "PULL_ARTIFACT": "pull", "DELETE_ARTIFACT": "delete"}
        action = mapped.get(payload["type"])
        if action is None:
            assert (result.events, result.unmapped) == ([], 1)
        else:
            repository = payload["event_data"]["repository"]["repo_full_name"]
            assert len(result.events) == len(payload["event_data"]["resources"])
            assert all((e.action, e.repository) == (action, repository) for e in result.events)


@settings(max_examples=examples(400))
@given(st.lists(cloudevents, max_size=3), st.booleans())
def test_structured_and_batched_cloudevents_parse_or_say_why(
    documents: list[Any], batched: bool
) -> None:
    if batched:
        parse_request_or_reason(
            {"content-type": "application/cloudevents-batch+json"}, encode(documents)
        )
    for document in documents:
        parse_request_or_reason({"content-type": "application/cloudevents+json"}, encode(document))


@settings(max_examples=examples(400))
@given(
    st.dictionaries(
        st.sampled_from(["specversion", "id", "source", "type", "time", "x"]),
        latin1_text | st.sampled_from(["1.0", "zotregistry.image.updated"]),
        max_size=6,
    ),
    st.none() | st.sampled_from(["application/json", "text/plain", "application/x+json"]),
    zot_data.map(encode) | st.binary(max_size=60),
)
def test_binary_cloudevents_parse_or_say_why(
    attributes: dict[str, str], content_type: str | None, body: bytes
) -> None:
    headers = {f"ce-{name}": value for name, value in attributes.items()}
    headers["ce-specversion"] = attributes.get("specversion", "1.0")
    if content_type is not None:
        headers["content-type"] = content_type
    parse_request_or_reason(headers, body)


# --- the ASGI fast path, in process ----------------------------------------------------------

TOKEN = "fuzz-token"
RULES = (EventRule(action="push", tagged=True),)
COMMANDS = ("push", "disabled")
ENVELOPE_TYPES = sorted(ENVELOPE_CONTENT_TYPES)
CLOUDEVENT_TYPES = sorted(CONTENT_TYPES - ENVELOPE_CONTENT_TYPES)


async def never_launch(command: CommandConfig, request: RunRequest) -> RunResult:
    raise AssertionError("the runner is never started in these tests")


@dataclass
class Request:
    """One webhook request as a registry (or anything else) might send it."""

    name: str
    body: bytes
    cuts: list[int]  # where the body is split into ASGI messages
    content_type: bytes | None
    content_length: bytes | None
    authorization: bytes | None
    disconnect_after: int | None = None  # chunks delivered before the client goes away

    def headers(self) -> list[tuple[bytes, bytes]]:
        headers = [(b"host", b"s3syncer"), (b"user-agent", b"Go-http-client/1.1")]
        for key, value in (
            (b"content-type", self.content_type),
            (b"content-length", self.content_length),
            (b"authorization", self.authorization),
        ):
            if value is not None:
                headers.append((key, value))
        return headers

    def chunks(self) -> list[bytes]:
        edges = [0, *sorted(min(c, len(self.body)) for c in self.cuts), len(self.body)]
        return [self.body[a:b] for a, b in itertools.pairwise(edges)]


def good_envelope(tag: str = "v1", event_id: str = "good-1") -> bytes:
    event = {"id": event_id, "action": "push", "target": {"repository": "app", "tag": tag}}
    return json.dumps({"events": [event]}).encode()


bodies = st.one_of(
    st.binary(max_size=300),
    json_values.map(lambda v: json.dumps(v).encode()),
    envelopes.map(lambda e: json.dumps(e).encode("utf-8", "surrogatepass")),
    st.sampled_from([fixture_body(p.name) for p in sorted(FIXTURES.glob("*.json"))]),
    # Harbor and CloudEvents bodies (zot's are binary mode: their headers are not sent here).
    st.sampled_from(
        [
            p.read_bytes()
            for p in sorted(OTHER_FIXTURES.rglob("*.json"))
            if not p.is_relative_to(OTHER_FIXTURES / "distribution-2.8")
        ]
    ),
    st.builds(good_envelope, any_text.filter(bool), any_text),
    st.builds(good_envelope, st.sampled_from(["v1", "latest"]), any_text),
    st.sampled_from([b" " * MAX_BODY + b"{}", b"[" * (MAX_BODY + 1), b"{" * 100_000]),
)

content_types = st.one_of(
    st.none(),
    st.sampled_from(ENVELOPE_TYPES).map(str.encode),
    st.sampled_from(CLOUDEVENT_TYPES).map(str.encode),
    st.tuples(
        st.sampled_from(
            [*ENVELOPE_TYPES, *CLOUDEVENT_TYPES, "text/plain", "application/xml", "", "json"]
        ),
        st.sampled_from(["", "; charset=utf-8", ";x", " ; q=1;;", ";" * 3]),
        st.booleans(),
        st.sampled_from(["", " ", "\t"]),
    ).map(lambda t: (t[3] + (t[0].upper() if t[2] else t[0]) + t[1]).encode()),
    st.binary(max_size=40),
)


@st.composite
def requests(draw: st.DrawFn, auth: bool) -> Request:
    body = draw(bodies)
    cuts = draw(st.lists(st.integers(0, max(len(body), 1)), max_size=6))
    length = draw(st.sampled_from(["true", "none", "less", "more", "huge", "junk"]))
    content_length = {
        "true": str(len(body)).encode(),
        "none": None,
        "less": str(max(len(body) - 1, 0)).encode(),
        "more": str(len(body) + 1).encode(),
        "huge": b"9" * 30,
        "junk": draw(st.sampled_from([b"-1", b"0x10", b"", b" 12", "١٢".encode(), b"1e9"])),
    }[length]
    authorization: bytes | None = None
    if auth:
        authorization = draw(
            st.just(b"Bearer " + TOKEN.encode())
            if draw(st.integers(0, 9)) < 6
            else st.sampled_from(
                [
                    None,
                    b"bearer  " + TOKEN.encode() + b" ",
                    b"Basic " + base64.b64encode(b"registry:" + TOKEN.encode()),
                    b"Bearer wrong",
                    b"Basic !!",
                    TOKEN.encode(),
                ]
            )
            | st.binary(max_size=30)
        )
    disconnect = draw(st.none() | st.none() | st.integers(0, len(cuts)))
    # Mostly a command that exists, so that the other faults get their turn.
    pick = draw(st.integers(0, 9))
    name = draw(st.sampled_from(["push", "disabled", "push/"]) if pick < 7 else any_text)
    return Request(name, body, cuts, draw(content_types), content_length, authorization, disconnect)


def token_ok(header: bytes | None) -> bool:
    """Whether ``header`` carries the token (the contract, not the implementation)."""
    if header is None:
        return False
    scheme, _, value = header.strip().partition(b" ")
    if scheme.lower() == b"bearer":
        return value.strip() == TOKEN.encode()
    if scheme.lower() == b"basic":
        with contextlib.suppress(ValueError):
            return base64.b64decode(value.strip(), validate=True).partition(b":")[2] == (
                TOKEN.encode()
            )
    return False


def request_or_reason(body: bytes, content_type: bytes | None) -> Notification | str:
    """``parse_request`` for a body sent with ``content_type``, or its one-line reason."""
    headers = {} if content_type is None else {"content-type": content_type.decode("latin-1")}
    try:
        notification = parse_request(headers, body)
    except EnvelopeError as exc:
        message = str(exc)
        assert message and "\n" not in message and "\r" not in message, repr(message)
        return message
    documents = [event.to_document() for event in notification.events]
    assert json.loads(json.dumps(documents, allow_nan=False)) == documents
    return notification


def allowed_refusals(request: Request, auth: bool) -> set[int]:
    """The statuses that some fault of ``request`` justifies; empty: it deserves a 200."""
    faults = set()
    if auth and not token_ok(request.authorization):
        faults.add(401)
    if request.name.rstrip("/") not in COMMANDS:
        faults.add(404)
    if request.content_type is not None:
        # HTTP's optional white space is space and tab only: a "\n" content type is garbage.
        media = request.content_type.split(b";", 1)[0].strip(b" \t").lower()
        if media and media.decode("latin-1") not in CONTENT_TYPES:
            faults.add(415)
    if len(request.body) > MAX_BODY or (
        request.content_length is not None
        and request.content_length.isdigit()
        and int(request.content_length) > MAX_BODY
    ):
        faults.add(413)
    parsed = request_or_reason(request.body, request.content_type)
    if request.disconnect_after is not None or isinstance(parsed, str):
        faults.add(400)
    return faults


@dataclass
class Answer:
    """One complete response."""

    status: int
    headers: dict[bytes, bytes]
    body: bytes


class ReadyDaemon:
    """A daemon that is up and has nothing to show: the fuzz aims at the webhook."""

    ready = True
    shutting_down = False

    def views(self) -> list[CommandView]:
        return []

    async def views_in_slices(self) -> list[CommandView]:
        return []

    async def metrics_text(self) -> bytes:
        return b""


@dataclass
class Harness:
    """The whole ASGI app from ``create_app``, on the daemon's admission, whose runners are
    never started: their channels take triggers and nothing runs them."""

    auth: bool
    runners: dict[str, Runner] = field(default_factory=dict)
    seen: set[str] = field(default_factory=set)  # the kinds of answer given so far

    def __post_init__(self) -> None:
        commands = tuple(
            CommandConfig(name=name, cmd="/bin/true", events=RULES, disable=name == "disabled")
            for name in COMMANDS
        )
        slots = {}
        for command in commands:
            runner = Runner(command, never_launch)
            self.runners[command.name] = runner
            slots[command.name] = CommandSlot(runner, None, RunHistory(), trio.Lock(), trio.Event())
        admission = Admission(slots.get, Metrics())
        self.app = create_app(admission, ReadyDaemon(), AuthConfig(TOKEN) if self.auth else None)

    async def call(self, request: Request) -> Answer:
        chunks = request.chunks()
        if request.disconnect_after is not None:
            chunks = chunks[: request.disconnect_after]
        sent: list[dict[str, Any]] = []
        last = len(chunks) - 1
        handed = 0

        async def receive() -> dict[str, Any]:
            nonlocal handed
            await trio.lowlevel.checkpoint()
            if handed < len(chunks):
                chunk, handed = chunks[handed], handed + 1
                more = handed <= last or request.disconnect_after is not None
                return {"type": "http.request", "body": chunk, "more_body": more}
            return {"type": "http.disconnect"}

        async def send(message: dict[str, Any]) -> None:
            await trio.lowlevel.checkpoint()
            sent.append(message)

        scope = http_scope("POST", "/trigger/" + request.name, request.headers())
        with trio.fail_after(10):
            await self.app(scope, receive, send)
        return complete_answer(sent)

    def drain(self, name: str) -> list[Trigger]:
        """Every trigger waiting in ``name``'s channel (the runner's own receive side)."""
        got = []
        while True:
            try:
                got.append(self.runners[name]._receive.receive_nowait())
            except trio.WouldBlock:
                return got


def complete_answer(sent: list[dict[str, Any]]) -> Answer:
    """The one complete response in ``sent``: start, then body up to the last piece."""
    assert sent, "no response at all"
    start, *pieces = sent
    assert start["type"] == "http.response.start", sent
    assert pieces and all(p["type"] == "http.response.body" for p in pieces), sent
    assert all(p.get("more_body", False) for p in pieces[:-1]), sent
    assert not pieces[-1].get("more_body", False), "the response never ended"
    headers = {bytes(k).lower(): bytes(v) for k, v in start["headers"]}
    body = b"".join(p.get("body", b"") for p in pieces)
    if b"content-length" in headers:
        assert int(headers[b"content-length"]) == len(body)
    return Answer(start["status"], headers, body)


def check_answer(harness: Harness, request: Request, answer: Answer) -> int:
    """Check one answer against the contract; return the events it says were accepted."""
    faults = allowed_refusals(request, harness.auth)
    assert answer.status < 500, (answer, request.name, request.body[:200])
    if not faults:
        assert answer.status == 200, (answer, request)
        document = json.loads(answer.body)
        parsed = request_or_reason(request.body, request.content_type)
        assert isinstance(parsed, Notification)
        name = request.name.rstrip("/")
        expected = 0 if name == "disabled" else len(matching(RULES, parsed.events))
        ignored = len(parsed.events) - expected + parsed.unmapped
        assert document == {"accepted": expected, "ignored": ignored}
        harness.seen.add("accepted" if expected else "200")
        return expected
    harness.seen.add(str(answer.status))
    assert answer.status in faults, (answer, faults, request)
    text = answer.body.decode()
    assert text.endswith("\n") and "\n" not in text[:-1], text
    return 0


def check_requests(harness: Harness, batch: list[Request]) -> None:
    async def main() -> list[Answer]:
        return [await harness.call(r) for r in batch]

    answers = trio.run(main)
    expected: list[list[dict[str, Any]]] = []
    for request, answer in zip(batch, answers, strict=True):
        if check_answer(harness, request, answer):
            parsed = request_or_reason(request.body, request.content_type)
            assert isinstance(parsed, Notification)
            expected.append([e.raw for e in matching(RULES, parsed.events)])
    assert harness.drain("disabled") == []
    triggers = harness.drain("push")
    # Exactly one trigger per 200 that accepted events, carrying those events, in order.
    assert [[e.raw for e in t.events] for t in triggers] == expected
    assert all(t.reason == "event" for t in triggers)


@pytest.mark.slow  # its check that every kind of answer was seen needs the full budget
@pytest.mark.parametrize("auth", [False, True], ids=["open", "auth"])
def test_webhook_app_answers_every_request_within_the_contract(auth: bool) -> None:
    harness = Harness(auth)

    @settings(
        max_examples=examples(150),
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
    @given(st.lists(requests(auth), min_size=1, max_size=4))
    def fuzz(batch: list[Request]) -> None:
        check_requests(harness, batch)

    fuzz()
    # The fuzzing reached both sides of the contract (by a wide margin: dozens of each).
    assert {"accepted", "400"} <= harness.seen, harness.seen
    # Afterwards a registry's request is still accepted and reaches the runner.
    good = Request(
        "push",
        fixture_body(TAG_V1),
        [],
        b"application/vnd.docker.distribution.events.v1+json",
        None,
        b"Bearer " + TOKEN.encode() if auth else None,
    )
    answer = trio.run(harness.call, good)
    assert (answer.status, json.loads(answer.body)) == (200, {"accepted": 1, "ignored": 0})
    [trigger] = harness.drain("push")
    assert [e.raw for e in trigger.events] == json.loads(good.body)["events"]


# --- a live daemon -------------------------------------------------------------------------

REGISTRY_TYPE = "application/vnd.docker.distribution.events.v1+json"
# Header values http.client will send: printable Latin-1, no line breaks.
header_text = st.text(
    st.characters(min_codepoint=0x20, max_codepoint=0xFF, exclude_characters="\x7f"), max_size=40
)
live_content_types = st.one_of(
    st.none(),
    st.just(REGISTRY_TYPE),
    st.sampled_from([*ENVELOPE_TYPES, "TEXT/PLAIN", "application/JSON; charset=UTF-8", "a/b;c"]),
    header_text,
)


def has_a_bad_event(envelope: dict[str, Any]) -> bool:
    """Whether some event of ``envelope`` breaks the contract (so the whole body is refused)."""
    return not all(event_is_valid(raw) for raw in envelope["events"])


not_accepted = [
    p.read_bytes() for p in sorted(FIXTURES.glob("*.json")) if p.name not in TAGGED_PUSHES
]
garbage = st.one_of(
    st.binary(max_size=400),
    json_values.map(lambda v: json.dumps(v).encode()),
    # Envelopes with at least one bad event: refused whole, so they trigger nothing.
    envelopes.filter(has_a_bad_event).map(lambda e: json.dumps(e).encode("utf-8", "surrogatepass")),
    st.sampled_from(not_accepted),  # well-formed, nothing matches: 200 with accepted 0
    st.integers(1, 20_000).map(lambda n: b'{"events": [[' * n),
    st.integers(4301, 6000).map(lambda n: b'{"events": [], "n": ' + b"9" * n + b"}"),
)


def post_lying_length(daemon: Daemon, body: bytes, content_type: str | None) -> int:
    """POST with a Content-Length shorter than the body; return the first answer's status."""
    lines = [
        "POST /trigger/push HTTP/1.1",
        "Host: s3syncer",
        f"Content-Length: {len(body) // 2}",
        *([] if content_type is None else [f"Content-Type: {content_type}"]),
    ]
    head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
    with socket.create_connection((daemon.host, daemon.port), timeout=10) as sock:
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            sock.sendall(head + body)
        response = http.client.HTTPResponse(sock)
        response.begin()
        answer = response.read()  # a complete answer: exactly Content-Length bytes
        assert len(answer) == int(response.getheader("content-length", "-1")), answer
        return response.status


@pytest.mark.integration
def test_live_daemon_survives_garbage_and_still_triggers(tmp_path: Path) -> None:
    recorder = Recorder(tmp_path / "push")
    config = "commands:\n" + recorder.command_yaml("push", delay="100ms")
    with start_daemon(tmp_path, config) as daemon:
        statuses: set[int] = set()

        @settings(
            max_examples=examples(200),
            deadline=None,
            database=None,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
        )
        @given(
            garbage,
            live_content_types,
            st.sampled_from(["whole", "chunked", "short"]),
            st.lists(st.integers(1, 64), max_size=5),
        )
        def fuzz(body: bytes, content_type: str | None, how: str, sizes: list[int]) -> None:
            if how == "short":
                status = post_lying_length(daemon, body, content_type)
            else:
                headers = {} if content_type is None else {"Content-Type": content_type}
                payload: bytes | Iterator[bytes] = body
                if how == "chunked":
                    payload = pieces(body, sizes)
                status, _, answer = daemon.post("/trigger/push", payload, headers)
                if status == 200:
                    assert json.loads(answer)["accepted"] == 0, answer
                else:
                    assert answer.endswith(b"\n") and b"\n" not in answer[:-1], answer
            assert status in (200, 400, 413, 415), status
            statuses.add(status)

        fuzz()
        assert {200, 400} <= statuses, statuses
        assert daemon.get("/health")[:3:2] == (200, b"OK\n")
        good = fixture_body(TAG_V1)
        status, _, answer = daemon.post("/trigger/push", good, {"Content-Type": REGISTRY_TYPE})
        assert (status, json.loads(answer)) == (200, {"accepted": 1, "ignored": 0})
        [run] = recorder.wait_starts(1)
        # The run covers exactly the good request: no garbage got through and coalesced in.
        assert run["reason"] == "event"
        assert [e["raw"] for e in run["events"]["events"]] == json.loads(good)["events"]
        recorder.wait_ends(1)

        def finished() -> bool:
            last = daemon.status()["push"]["lastRun"]  # None until the first run ends
            return last is not None and last["ok"] is True

        wait_until(finished, timeout=10, message=lambda: f"no good run: {daemon.status()}")
        push = daemon.status()["push"]
        assert (push["runs"], push["pendingTriggers"]) == (1, 0), push
        assert "Traceback" not in daemon.log_text()
        assert daemon.returncode is None


def pieces(body: bytes, sizes: list[int]) -> Iterator[bytes]:
    """``body`` in pieces of the given sizes (cycled), for a chunked request.

    At most about 200 pieces: a 100 kB body in 1-byte chunks takes seconds to send."""
    at, index = 0, 0
    least = len(body) // 200
    while at < len(body):
        size = max(sizes[index % len(sizes)], least) if sizes else len(body)
        yield body[at : at + size]
        at, index = at + size, index + 1
