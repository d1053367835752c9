"""Self-test for ``registry_harness``: a real docker-registry notifying a trivial receiver."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import tarfile
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

import registry_harness as rh
import waiting

TOKEN = "s3cr3t-token"
NOTIFY_PATH = "/trigger/push"

Event = dict[str, Any]


@dataclass(frozen=True)
class Received:
    """One POST as seen by the receiver."""

    path: str
    headers: dict[str, str]
    body: bytes

    @property
    def events(self) -> list[Event]:
        """The ``events`` list of the JSON envelope."""
        envelope: dict[str, Any] = json.loads(self.body)
        events: list[Event] = envelope["events"]
        return events


class Receiver:
    """A tiny notification endpoint: records every POST and answers 200."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._received: list[Received] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                body = self.rfile.read(length)
                receiver._record(Received(self.path, dict(self.headers.items()), body))
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", waiting.free_port()), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_port}{NOTIFY_PATH}"

    def _record(self, received: Received) -> None:
        with self._lock:
            self._received.append(received)

    @property
    def received(self) -> list[Received]:
        """A snapshot of every POST so far, in arrival order."""
        with self._lock:
            return list(self._received)

    def events(self) -> list[tuple[Received, Event]]:
        """Every event so far, in arrival order, with the POST that carried it."""
        return [(post, event) for post in self.received for event in post.events]

    def wait_for_event(
        self, predicate: Callable[[Event], bool], timeout: float = 20.0
    ) -> tuple[Received, Event]:
        """Wait (bounded) until an event matching ``predicate`` has arrived; return it."""

        def find() -> tuple[Received, Event] | None:
            return next(((p, e) for p, e in self.events() if predicate(e)), None)

        return waiting.wait_until(
            find,
            timeout=timeout,
            message=lambda: f"no matching event; got: {self.summary()}",
        )

    def summary(self) -> list[tuple[str, str | None, str | None]]:
        """``(action, target.mediaType, target.tag)`` of every event so far."""
        return [
            (e["action"], e["target"].get("mediaType"), e["target"].get("tag"))
            for _, e in self.events()
        ]


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    """A running :class:`Receiver`."""
    recv = Receiver()
    thread = threading.Thread(target=recv.server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield recv
    finally:
        recv.server.shutdown()
        recv.server.server_close()
        thread.join(timeout=5)


@pytest.fixture
def tools() -> None:
    """Fail (never skip) when docker-registry or skopeo is missing."""
    try:
        rh.require_tools()
    except RuntimeError as exc:
        pytest.fail(str(exc), pytrace=False)


def is_manifest_push(repo: str, digest: str) -> Callable[[Event], bool]:
    """Predicate: a manifest push event for ``repo`` with ``digest``."""

    def predicate(event: Event) -> bool:
        target = event["target"]
        return bool(
            event["action"] == "push"
            and target.get("mediaType") == rh.MEDIA_TYPE_OCI_MANIFEST
            and target.get("repository") == repo
            and target.get("digest") == digest
        )

    return predicate


def is_tagged_push(repo: str, tag: str) -> Callable[[Event], bool]:
    """Predicate: a push event for ``repo:tag``."""

    def predicate(event: Event) -> bool:
        target = event["target"]
        return bool(
            event["action"] == "push"
            and target.get("repository") == repo
            and target.get("tag") == tag
        )

    return predicate


# --------------------------------------------------------------------------------------------
# OCI layout (pure Python, no external tools)
# --------------------------------------------------------------------------------------------


def _blob(layout: Path, digest: str) -> bytes:
    data = (layout / "blobs" / "sha256" / digest.removeprefix("sha256:")).read_bytes()
    assert "sha256:" + hashlib.sha256(data).hexdigest() == digest
    return data


def test_make_oci_layout_structure(tmp_path: Path) -> None:
    layout = rh.make_oci_layout(tmp_path / "oci", tag="v1", payload=b"payload-1")
    assert json.loads((layout / "oci-layout").read_text()) == {"imageLayoutVersion": "1.0.0"}
    digest = rh.manifest_digest(layout, "v1")
    manifest = json.loads(_blob(layout, digest))
    assert manifest["mediaType"] == rh.MEDIA_TYPE_OCI_MANIFEST
    config = json.loads(_blob(layout, manifest["config"]["digest"]))
    (layer_desc,) = manifest["layers"]
    assert layer_desc["mediaType"] == rh.MEDIA_TYPE_OCI_LAYER
    tar_bytes = gzip.decompress(_blob(layout, layer_desc["digest"]))
    assert config["rootfs"]["diff_ids"] == ["sha256:" + hashlib.sha256(tar_bytes).hexdigest()]
    with tarfile.open(fileobj=io.BytesIO(tar_bytes)) as tar:
        member = tar.extractfile("hello.txt")
        assert member is not None
        assert member.read() == b"payload-1"


def test_make_oci_layout_digests(tmp_path: Path) -> None:
    a = rh.manifest_digest(rh.make_oci_layout(tmp_path / "a", payload=b"one"))
    a_again = rh.manifest_digest(rh.make_oci_layout(tmp_path / "a2", payload=b"one"))
    b = rh.manifest_digest(rh.make_oci_layout(tmp_path / "b", payload=b"two"))
    assert a == a_again
    assert a != b
    # Several tags in one layout.
    shared = rh.make_oci_layout(tmp_path / "shared", tag="v1", payload=b"one")
    rh.make_oci_layout(shared, tag="v2", payload=b"two")
    assert rh.manifest_digest(shared, "v1") == a
    assert rh.manifest_digest(shared, "v2") == b
    with pytest.raises(KeyError):
        rh.manifest_digest(shared, "nope")


# --------------------------------------------------------------------------------------------
# Real registry + skopeo
# --------------------------------------------------------------------------------------------


@pytest.mark.integration
@pytest.mark.usefixtures("tools")
def test_tagged_push_notifies(tmp_path: Path, receiver: Receiver) -> None:
    layout = rh.make_oci_layout(tmp_path / "oci")
    with rh.run_registry(tmp_path / "reg", notify_url=receiver.url, token=TOKEN) as registry:
        assert registry.addr.startswith("127.0.0.1:")
        rh.skopeo_push(layout, registry.addr, "team/app:v1")
        post, event = receiver.wait_for_event(is_tagged_push("team/app", "v1"))
    assert registry.process.poll() is not None, "registry still running after the block"

    assert event["target"]["mediaType"] == rh.MEDIA_TYPE_OCI_MANIFEST
    assert event["target"]["digest"] == rh.manifest_digest(layout, "v1")
    assert post.path == NOTIFY_PATH
    assert post.headers["Authorization"] == f"Bearer {TOKEN}"
    assert post.headers["Content-Type"] == rh.NOTIFICATION_CONTENT_TYPE
    # The blobs (layer + config) were pushed, and notified, before the manifest.
    blob_pushes = [
        e
        for _, e in receiver.events()
        if e["action"] == "push" and e["target"]["mediaType"] == rh.MEDIA_TYPE_BLOB
    ]
    assert len(blob_pushes) == 2
    assert all("tag" not in e["target"] for e in blob_pushes)


@pytest.mark.integration
@pytest.mark.usefixtures("tools")
def test_push_by_digest_has_no_tag(tmp_path: Path, receiver: Receiver) -> None:
    layout = rh.make_oci_layout(tmp_path / "oci", payload=b"by-digest")
    digest = rh.manifest_digest(layout)
    with rh.run_registry(tmp_path / "reg", notify_url=receiver.url) as registry:
        rh.skopeo_push(layout, registry.addr, f"other/svc@{digest}")
        post, event = receiver.wait_for_event(is_manifest_push("other/svc", digest))
    assert "tag" not in event["target"]
    assert "Authorization" not in post.headers  # no token given


@pytest.mark.integration
@pytest.mark.usefixtures("tools")
@pytest.mark.parametrize("ignore_actions", [(), ("pull",)], ids=["default", "ignore-pull"])
def test_ignore_actions(
    tmp_path: Path, receiver: Receiver, ignore_actions: tuple[str, ...]
) -> None:
    layout = rh.make_oci_layout(tmp_path / "oci")
    with rh.run_registry(
        tmp_path / "reg", notify_url=receiver.url, ignore_actions=ignore_actions
    ) as registry:
        rh.skopeo_push(layout, registry.addr, "team/app:v1")
        # Re-pushing existing blobs under a new tag makes skopeo HEAD them: pull events.
        rh.skopeo_push(layout, registry.addr, "team/app:latest")
        receiver.wait_for_event(is_tagged_push("team/app", "latest"))
    # Events are delivered in order, so any pull event of the second push is already here.
    pulls = [e for _, e in receiver.events() if e["action"] == "pull"]
    if ignore_actions:
        assert pulls == []
    else:
        assert len(pulls) == 2  # HEAD on layer and config
        assert {e["request"]["method"] for e in pulls} == {"HEAD"}


@pytest.mark.integration
@pytest.mark.usefixtures("tools")
def test_delete_notifies(tmp_path: Path, receiver: Receiver) -> None:
    layout = rh.make_oci_layout(tmp_path / "oci")
    digest = rh.manifest_digest(layout)
    with rh.run_registry(tmp_path / "reg", notify_url=receiver.url) as registry:
        rh.skopeo_push(layout, registry.addr, "team/app:v1")
        rh.skopeo_delete(registry.addr, "team/app:v1")
        _, tag_delete = receiver.wait_for_event(
            lambda e: e["action"] == "delete" and e["target"].get("tag") == "v1"
        )
    deletes = [e for _, e in receiver.events() if e["action"] == "delete"]
    # Manifest delete (digest, no tag) first, then one delete per tag.
    assert deletes[0]["target"] == {"digest": digest, "repository": "team/app"}
    assert tag_delete["target"] == {"repository": "team/app", "tag": "v1"}


@pytest.mark.integration
@pytest.mark.usefixtures("tools")
def test_startup_failure_reports_log_tail(
    tmp_path: Path, receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_config = rh._registry_config

    def broken_config(*args: Any, **kwargs: Any) -> dict[str, Any]:
        config = real_config(*args, **kwargs)
        config["storage"] = {"no-such-driver": {}}
        return config

    monkeypatch.setattr(rh, "_registry_config", broken_config)
    with (
        pytest.raises(RuntimeError, match="no-such-driver"),
        rh.run_registry(tmp_path / "reg", notify_url=receiver.url),
    ):
        pytest.fail("registry should not have started")


@pytest.mark.integration
@pytest.mark.usefixtures("tools")
def test_registry_stopped_when_block_raises(tmp_path: Path, receiver: Receiver) -> None:
    registries: list[rh.Registry] = []
    with (
        pytest.raises(ZeroDivisionError),
        rh.run_registry(tmp_path / "reg", notify_url=receiver.url) as registry,
    ):
        registries.append(registry)
        _ = 1 / 0
    assert registries[0].process.poll() is not None


@pytest.mark.integration
@pytest.mark.usefixtures("tools")
def test_skopeo_push_failure_raises_with_stderr(tmp_path: Path) -> None:
    layout = rh.make_oci_layout(tmp_path / "oci")
    dead = f"127.0.0.1:{waiting.free_port()}"
    with pytest.raises(RuntimeError, match="skopeo failed"):
        rh.skopeo_push(layout, dead, "team/app:v1", timeout=30)
