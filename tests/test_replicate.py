"""``s3syncer replicate``: the pure layout logic, the copy order on a fake S3, and real parts.

The integration test runs SeaweedFS (``weed mini``), a real ``docker-registry`` on the source
bucket with the s3 driver sending notifications, pushes with ``skopeo``, replicates the events
it received with the real CLI, then serves the destination bucket with a second registry and
checks every image by tag and by digest.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import pytest

from registry_harness import (
    _INDEX_MEDIA_TYPE,
    _REF_NAME_ANNOTATION,
    REGISTRY_BINARY,
    _canonical_json,
    _run_skopeo,
    _write_blob,
    make_oci_layout,
    manifest_digest,
    require_tools,
    skopeo_delete,
    skopeo_push,
)
from s3_harness import EventSink, S3Server, run_s3_registry, run_seaweedfs, tool
from s3syncer.replicate import Location, Replicator, copier
from s3syncer.replicate.changes import replay
from s3syncer.replicate.layout import BlobRef, Layout, LayoutError, parse_manifest
from s3syncer.replicate.plan import runs_of_repositories
from s3syncer.replicate.sides import Listed, Side
from waiting import wait_until

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "distribution-2.8"
D1 = "sha256:" + "a" * 64
D2 = "sha256:" + "b" * 64
D3 = "sha256:" + "c" * 64


def _fixture_events() -> list[Any]:
    files = sorted(Path(os.environ.get("S3SYNCER_FIXTURES", FIXTURES)).glob("*.json"))
    assert files, "no registry fixtures"
    return [event for f in files for event in json.loads(f.read_bytes())["events"]]


# --------------------------------------------------------------------------------------------
# Pure logic
# --------------------------------------------------------------------------------------------


def test_layout_keys() -> None:
    layout = Layout("reg/")
    assert layout.blob_data(D1) == f"reg/docker/registry/v2/blobs/sha256/aa/{'a' * 64}/data"
    base = "docker/registry/v2/repositories/team/app"
    assert Layout().layer_link("team/app", D1) == f"{base}/_layers/sha256/{'a' * 64}/link"
    assert (
        Layout().revision_link("team/app", D1)
        == f"{base}/_manifests/revisions/sha256/{'a' * 64}/link"
    )
    assert Layout().tag_current_link("team/app", "v1") == f"{base}/_manifests/tags/v1/current/link"
    assert (
        Layout().tag_index_link("team/app", "v1", D1)
        == f"{base}/_manifests/tags/v1/index/sha256/{'a' * 64}/link"
    )


def test_tag_of_reads_tags_back_from_current_link_keys() -> None:
    layout = Layout("reg")
    for repo, tag in (("team/app", "v1"), ("a/b/c", "latest"), ("x", "_tags_")):
        assert layout.tag_of(layout.tag_current_link(repo, tag)) == (repo, tag)
    base = layout.repositories
    for key in (
        layout.tag_index_link("team/app", "v1", D1),  # history, not the tag
        layout.revision_link("team/app", D1),
        Layout("other").tag_current_link("team/app", "v1"),  # another root
        f"{base}Team/_manifests/tags/v1/current/link",  # not a repository name
        f"{base}team/_manifests/tags/../current/link",
    ):
        assert layout.tag_of(key) is None, key


def test_the_sweep_reads_links_and_blobs_back_from_their_keys_and_nothing_else() -> None:
    layout = Layout("reg")
    assert layout.linked(layout.layer_link("a/b", D1)) == ("layer", "a/b", D1)
    assert layout.linked(layout.revision_link("team/app", D1)) == ("revision", "team/app", D1)
    assert layout.blob_of(layout.blob_data(D1)) == D1
    hexpart = D1.split(":")[1]
    for key in (
        layout.tag_current_link("team/app", "v1"),
        layout.tag_index_link("team/app", "v1", D1),  # a tag's history is not a revision
        Layout("other").layer_link("team/app", D1),  # another root
        f"{layout.repositories}Team/_layers/sha256/{hexpart}/link",
        f"{layout.repositories}team/_layers/sha256/{hexpart[:-1]}/link",
        layout.blob_data(D1),
    ):
        assert layout.linked(key) is None, key
    for key in (
        layout.blob_data(D1).replace(f"/{hexpart[:2]}/", "/zz/"),  # not its own fan-out
        layout.blob_data(D1).replace("/data", "/other"),
        Layout("other").blob_data(D1),
        layout.revision_link("team/app", D1),
    ):
        assert layout.blob_of(key) is None, key


@pytest.mark.parametrize(
    ("repo", "tag", "digest"),
    [("../x", "v1", D1), ("Team", "v1", D1), ("a", "../v1", D1), ("a", "v1", "sha256:abc")],
)
def test_layout_refuses_unsafe_names(repo: str, tag: str, digest: str) -> None:
    with pytest.raises(LayoutError):
        Layout().tag_index_link(repo, tag, digest)


def test_parse_manifest_kinds() -> None:
    image = {
        "schemaVersion": 2,
        "config": {"digest": D1, "size": 10},
        "layers": [{"digest": D2, "size": 20}, {"digest": D3, "size": 5, "urls": ["http://x"]}],
    }
    refs = parse_manifest(json.dumps(image).encode())
    assert refs.children == ()
    assert refs.blobs == (BlobRef(D1, 10), BlobRef(D2, 20), BlobRef(D3, 5, optional=True))
    index = {"schemaVersion": 2, "manifests": [{"digest": D1}, {"digest": D2}, {"digest": D1}]}
    assert parse_manifest(json.dumps(index).encode()).children == (D1, D2)
    schema1 = {"schemaVersion": 1, "fsLayers": [{"blobSum": D3}, {"blobSum": D3}]}
    assert parse_manifest(json.dumps(schema1).encode()).blobs == (BlobRef(D3),)
    for bad in (b"nope", b"[]", b'{"schemaVersion": 2}', b'{"manifests": [{"digest": "x"}]}'):
        with pytest.raises(LayoutError):
            parse_manifest(bad)


def test_replay_real_events() -> None:
    """The fixture sequence: v1 and latest pushed, svc by digest, then latest deleted."""
    changes = replay(_fixture_events())
    app = "sha256:0d095e6e4edd2bba92df4e9894fa5facf85ef921f0bce636c58b55b0af24f1c5"
    svc = "sha256:24acd8f58c3dcd1d7a0ccc49ce62af244840aa9fee3a83cec47ef2108b7fdfa1"
    assert changes.problems == []
    assert changes.manifests == {("team/app", app): False, ("other/svc", svc): True}
    assert changes.tags == {("team/app", "v1"): None, ("team/app", "latest"): None}
    assert changes.pushed_manifests() == [("other/svc", svc)]
    assert changes.tag_pushes() == []
    assert sorted(changes.tag_deletes()) == [("team/app", "latest"), ("team/app", "v1")]
    assert changes.manifest_deletes() == [("team/app", app)]


def test_replay_last_event_wins_and_bad_events_are_problems() -> None:
    def push(repo: str, digest: str, tag: str | None = None) -> dict[str, Any]:
        target = {"repository": repo, "digest": digest, "mediaType": _INDEX_MEDIA_TYPE}
        return {"action": "push", "target": {**target, **({"tag": tag} if tag else {})}}

    events = [
        push("a", D1, "v1"),
        {"action": "delete", "target": {"repository": "a", "tag": "v1"}},
        push("a", D2, "v1"),
        {"action": "push", "target": {"repository": "a", "digest": D3, "url": "/v2/a/blobs/x"}},
        {"action": "pull", "target": {"repository": "a", "digest": D1}},
        push("../evil", D1, "v1"),
        "garbage",
    ]
    changes = replay(events)
    assert changes.tags == {("a", "v1"): D2}
    assert changes.pushed_manifests() == [("a", D1), ("a", D2)]
    assert changes.ignored == 2
    assert len(changes.problems) == 2


# --------------------------------------------------------------------------------------------
# The copy order, on an in-memory S3
# --------------------------------------------------------------------------------------------


class _NotFoundError(Exception):
    def __init__(self) -> None:
        super().__init__("not found")
        self.response = {"Error": {"Code": "404"}, "ResponseMetadata": {"HTTPStatusCode": 404}}


class _Body:
    def __init__(self, data: bytes) -> None:
        self.data = data

    def read(self, amount: int | None = None) -> bytes:
        cut = len(self.data) if amount is None else amount
        data, self.data = self.data[:cut], self.data[cut:]
        return data

    def close(self) -> None:
        """Release the response, as botocore's StreamingBody does."""


class FakeS3:
    """Just enough of an S3 client for Replicator, recording every write in order."""

    def __init__(self, objects: dict[tuple[str, str], bytes] | None = None) -> None:
        self.objects = dict(objects or {})
        self.writes: list[str] = []
        self.heads: list[str] = []
        self.gets: list[str] = []

    def head_object(self, *, Bucket: str, Key: str) -> dict[str, Any]:  # noqa: N803
        self.heads.append(Key)
        if (Bucket, Key) not in self.objects:
            raise _NotFoundError
        return {"ContentLength": len(self.objects[(Bucket, Key)])}

    def get_object(self, *, Bucket: str, Key: str) -> dict[str, Any]:  # noqa: N803
        self.gets.append(Key)
        data = self.objects.get((Bucket, Key))
        if data is None:
            raise _NotFoundError
        return {"ContentLength": len(data), "Body": _Body(data)}

    def put_object(self, *, Bucket: str, Key: str, Body: bytes) -> None:  # noqa: N803
        self.objects[(Bucket, Key)] = Body
        self.writes.append(Key)

    def copy_object(self, *, Bucket: str, Key: str, CopySource: dict[str, str]) -> None:  # noqa: N803
        self.put_object(Bucket=Bucket, Key=Key, Body=self.head_data(CopySource))

    def head_data(self, source: dict[str, str]) -> bytes:
        data = self.objects.get((source["Bucket"], source["Key"]))
        if data is None:
            raise _NotFoundError
        return data


def _blob(store: FakeS3, data: bytes) -> dict[str, Any]:
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    store.objects[("src", Layout().blob_data(digest))] = data
    return {"digest": digest, "size": len(data)}


def _image(store: FakeS3, payload: bytes) -> dict[str, Any]:
    manifest = {
        "schemaVersion": 2,
        "config": _blob(store, b"config-" + payload),
        "layers": [_blob(store, b"layer-" + payload)],
    }
    return _blob(store, json.dumps(manifest).encode())


def _run(store: FakeS3, events: list[Any], **kwargs: Any) -> Replicator:
    client = cast("S3Client", store)
    source, dest = Side(client, Location("src")), Side(client, Location("dst"))
    with Replicator(source, dest, server_side=True, **kwargs) as replicator:
        replicator.replicate(replay(events), delete=True)
    return replicator


def _tag_push(repo: str, tag: str, digest: str) -> dict[str, Any]:
    target = {"repository": repo, "digest": digest, "tag": tag, "mediaType": _INDEX_MEDIA_TYPE}
    return {"action": "push", "target": target}


def test_index_copied_in_order_with_current_link_last() -> None:
    store = FakeS3()
    children = [_image(store, b"amd"), _image(store, b"arm")]
    index = _blob(store, json.dumps({"schemaVersion": 2, "manifests": children}).encode())
    replicator = _run(store, [_tag_push("team/multi", "v1", index["digest"])])
    assert replicator.problems == []
    writes = store.writes
    kinds = [
        "blobs/" if "/blobs/" in k else k.split("/_")[1].split("/")[0 if "_layers" in k else 1]
        for k in writes
    ]
    order = ["blobs/", "layers", "revisions", "tags"]
    assert [order.index(kind) for kind in kinds] == sorted(order.index(kind) for kind in kinds)
    assert writes[-1].endswith("_manifests/tags/v1/current/link")
    assert len([k for k in writes if "/blobs/" in k]) == 7  # 2 x (config, layer, manifest) + index
    revisions = [k for k in writes if "/revisions/" in k]
    assert revisions[-1].endswith(index["digest"].removeprefix("sha256:") + "/link")
    # a second run copies no blob (nor manifest: 3 of the 7) again, but rewrites every link
    before = len(store.writes)
    again = _run(store, [_tag_push("team/multi", "v1", index["digest"])])
    assert (again.stats.blobs_skipped, again.stats.blobs_copied) == (4, 0)
    assert (again.stats.manifests, again.stats.manifests_copied) == (3, 0)
    assert again.stats.links_written == len(store.writes) - before == 9  # 4 + 3 + 2
    # as --all runs it, nothing already right is written again, nor a link asked after
    before, heads = len(store.writes), len(store.heads)
    kept = _run(store, [_tag_push("team/multi", "v1", index["digest"])], present=_listing(store))
    assert len(store.writes) == before
    assert kept.stats.links_kept == 9 and kept.stats.links_written == 0
    assert not [key for key in store.heads[heads:] if "/repositories/" in key]


def _listing(store: FakeS3) -> dict[str, Listed]:
    """The mirror's repositories/ tree as replicate --all lists it: key -> size and ETag."""
    prefix = Layout().repositories
    return {
        k: Listed(len(v), hashlib.md5(v, usedforsecurity=False).hexdigest())
        for (b, k), v in store.objects.items()
        if b == "dst" and k.startswith(prefix)
    }


def test_all_writes_a_link_the_listing_lacks_or_shows_wrong() -> None:
    store = FakeS3()
    image = _image(store, b"one")
    push = [_tag_push("team/app", "v1", image["digest"])]
    _run(store, push)
    # --all writes the tags it read from the source, which it reads again before writing
    store.objects[("src", Layout().tag_current_link("team/app", "v1"))] = image["digest"].encode()
    listing = _listing(store)
    layer, current = (
        sorted(k for k in listing if "/_layers/" in k)[0],
        next(k for k in listing if k.endswith("/current/link")),
    )
    del listing[layer]  # gone from the mirror since it was listed: written again
    stale = b"sha256:" + b"0" * 64  # right size, another digest: its ETag says so
    store.objects[("dst", current)] = stale
    listing[current] = Listed(len(stale), hashlib.md5(stale, usedforsecurity=False).hexdigest())
    # a revision link of the right size naming another digest: its ETag says so, rewritten
    revision = next(k for k in listing if "/_manifests/revisions/" in k)
    wrong = b"sha256:" + b"1" * 64
    store.objects[("dst", revision)] = wrong
    listing[revision] = Listed(len(wrong), hashlib.md5(wrong, usedforsecurity=False).hexdigest())
    # a right link whose ETag is no MD5 (SSE-KMS): read, found right, kept
    other = next(k for k in listing if "/_layers/" in k)  # the one still listed
    listing[other] = Listed(listing[other].size, "not-an-md5")
    before, gets = len(store.writes), len(store.gets)
    again = _run(store, push, present=listing)
    assert sorted(store.writes[before:]) == sorted([layer, current, revision])
    assert again.stats.links_written == 3 and again.problems == []
    assert store.objects[("dst", current)] == image["digest"].encode()
    assert store.objects[("dst", revision)] != wrong
    assert other in store.gets[gets:]


def test_runs_of_repositories_keep_each_repository_whole() -> None:
    items = [("b", 1), ("a", 1), ("b", 2), ("c", 1), ("a", 2), ("a", 3), ("d", 1)]
    runs = list(runs_of_repositories(items, 3))
    assert runs == [[("b", 1), ("b", 2)], [("a", 1), ("a", 2), ("a", 3)], [("c", 1), ("d", 1)]]
    assert list(runs_of_repositories(items, 1)) == [
        [("b", 1), ("b", 2)], [("a", 1), ("a", 2), ("a", 3)], [("c", 1)], [("d", 1)]
    ]  # fmt: skip


def test_a_pass_in_runs_copies_each_blob_once_and_each_tag_after_its_closure(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Runs of one repository each write what one run writes, a shared blob once."""
    store = FakeS3()
    base = _blob(store, b"a base layer every image shares")
    events, closures = [], {}
    for i in range(6):
        repo = f"team/app{i % 3}"
        own = [_blob(store, f"config-{i}".encode()), _blob(store, f"layer-{i % 2}".encode())]
        body = {"schemaVersion": 2, "config": own[0], "layers": [base, own[1]]}
        digest = _blob(store, json.dumps(body).encode())["digest"]
        events.append(_tag_push(repo, f"v{i}", digest))
        closures[(repo, f"v{i}")] = [digest, base["digest"], *(b["digest"] for b in own)]
    whole_store = FakeS3(dict(store.objects))
    whole = _run(whole_store, events)
    monkeypatch.setattr(copier, "RUN_TAGS", 1)
    runs = _run(store, events)
    assert runs.problems == whole.problems == []
    blobs = [k for k in store.writes if "/blobs/" in k]
    assert len(blobs) == len(set(blobs)) == 6 * 2 + 1 + 2  # manifests and configs, 3 layers
    assert sorted(store.writes) == sorted(whole_store.writes)
    assert sorted(store.heads) == sorted(whole_store.heads)  # nor asked after twice
    counted = ("manifests", "manifests_copied", "blobs_copied", "blobs_skipped", "links_written")
    assert [getattr(runs.stats, n) for n in counted] == [getattr(whole.stats, n) for n in counted]
    assert runs.report.repaired == whole.report.repaired == 6
    layout = Layout()
    # it did run in three runs: a later repository's blob after an earlier one's tag
    first_tag = min(i for i, k in enumerate(store.writes) if k.endswith("/current/link"))
    assert max(i for i, k in enumerate(store.writes) if "/blobs/" in k) > first_tag
    for (repo, tag), digests in closures.items():
        current = store.writes.index(layout.tag_current_link(repo, tag))
        needed = [layout.blob_data(d) for d in digests]
        needed += [layout.layer_link(repo, d) for d in digests[1:]]
        needed += [
            layout.revision_link(repo, digests[0]),
            layout.tag_index_link(repo, tag, digests[0]),
        ]
        assert all(store.writes.index(key) < current for key in needed), (repo, tag)


def test_missing_layer_leaves_no_link_to_it() -> None:
    store = FakeS3()
    image = _image(store, b"one")
    layer_key = next(k for (b, k) in store.objects if store.objects[(b, k)] == b"layer-one")
    del store.objects[("src", layer_key)]
    replicator = _run(store, [_tag_push("team/app", "v1", image["digest"])])
    assert any("does not exist" in p for p in replicator.problems)
    assert any("team/app:v1: not updated" in p for p in replicator.problems)
    assert not [k for k in store.writes if "/_manifests/" in k]


# --------------------------------------------------------------------------------------------
# CLI without S3
# --------------------------------------------------------------------------------------------


def _cli(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "S3SYNCER_"))}
    return subprocess.run(
        [sys.executable, "-m", "s3syncer", "replicate", *args],
        env={**base, **env},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.mark.slow  # most of a second: the full suite runs it
def test_usage_errors(tmp_path: Path) -> None:
    assert _cli(["--source", "s3://a", "--dest", "s3://b"], {}).returncode == 2
    assert _cli(["--source", "/x", "--dest", "s3://b", "--events", "f"], {}).returncode == 2
    both = _cli(["--source", "s3://a", "--dest", "s3://b", "--all", "--events", "f"], {})
    assert both.returncode == 2 and "no --events" in both.stderr
    over = _cli(
        ["--source", "s3://a", "--dest", "s3://b", "--all", "--server-copy-limit", "6g"], {}
    )
    assert over.returncode == 2 and "--server-copy-limit" in over.stderr
    huge = str(5 * 1024**3 + 1)  # past what one CopyObject may copy
    too_big = _cli(
        ["--source", "s3://a", "--dest", "s3://b", "--all", "--server-copy-limit", huge], {}
    )
    assert too_big.returncode == 2 and "must be from" in too_big.stderr


# --------------------------------------------------------------------------------------------
# Real parts
# --------------------------------------------------------------------------------------------


def _skopeo_out(args: list[str]) -> bytes:
    result = subprocess.run(
        [tool("skopeo"), "--insecure-policy", *args], capture_output=True, timeout=60, check=False
    )
    if result.returncode != 0:
        raise AssertionError(f"skopeo {' '.join(args)} failed: {result.stderr.decode()}")
    return result.stdout


def _raw(addr: str, ref: str) -> bytes:
    return _skopeo_out(
        ["inspect", "--raw", "--tls-verify=false", "--no-creds", f"docker://{addr}/{ref}"]
    )


def _sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def make_index_layout(dest: Path, tag: str) -> str:
    """Add a two-platform OCI index under ``tag`` to a layout; return its digest."""
    make_oci_layout(dest, tag=f"{tag}-amd64", payload=b"amd64 " + tag.encode())
    make_oci_layout(dest, tag=f"{tag}-arm64", payload=b"arm64 " + tag.encode())
    children = []
    for arch in ("amd64", "arm64"):
        digest = manifest_digest(dest, f"{tag}-{arch}")
        size = (dest / "blobs/sha256" / digest.removeprefix("sha256:")).stat().st_size
        children.append(
            {
                "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "digest": digest,
                "size": size,
                "platform": {"architecture": arch, "os": "linux"},
            }
        )
    index = {"schemaVersion": 2, "mediaType": _INDEX_MEDIA_TYPE, "manifests": children}
    desc = _write_blob(dest / "blobs/sha256", _canonical_json(index))
    top = json.loads((dest / "index.json").read_text())
    top["manifests"].append(
        {"mediaType": _INDEX_MEDIA_TYPE, **desc, "annotations": {_REF_NAME_ANNOTATION: tag}}
    )
    (dest / "index.json").write_text(json.dumps(top))
    return str(desc["digest"])


@dataclass
class World:
    s3: S3Server
    tmp: Path
    sink: EventSink
    source_addr: str


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    require_tools()
    tmp = tmp_path_factory.mktemp("replicate")
    sink = EventSink()
    try:
        with (
            run_seaweedfs(tmp / "s3", ["src", "dst", "dst2"]) as s3,
            run_s3_registry(tmp / "src-reg", s3, "src", root="reg", notify_url=sink.url) as reg,
        ):
            yield World(s3, tmp, sink, reg.addr)
    finally:
        sink.close()


def _wait_events(world: World, count: int) -> list[Any]:
    """Take events once ``count`` manifest push / delete events have arrived."""

    def relevant() -> int:
        return sum(
            1
            for e in world.sink.events
            if e["action"] == "delete"
            or (e["action"] == "push" and "/manifests/" in e["target"].get("url", ""))
        )

    wait_until(lambda: relevant() >= count, timeout=20, message=lambda: str(world.sink.events))
    return world.sink.take()


def _replicate(
    world: World, events: list[Any], dest: str, *extra: str
) -> subprocess.CompletedProcess[str]:
    path = world.tmp / "events.json"
    body = {"command": "replicate", "reason": "event", "events": events, "truncated": False}
    path.write_text(json.dumps(body))
    env = {**world.s3.env("source"), **world.s3.env("dest"), "S3SYNCER_EVENTS_FILE": str(path)}
    return _cli(["--source", "s3://src/reg", "--dest", dest, "--jobs", "8", *extra], env)


@pytest.mark.integration
def test_replicate_real_registry_to_second_registry(world: World) -> None:
    layout = world.tmp / "layout"
    src = world.source_addr
    make_oci_layout(layout, tag="one", payload=b"single image")
    make_oci_layout(layout, tag="svc", payload=b"pushed by digest")
    make_oci_layout(layout, tag="old", payload=b"soon deleted")
    index = make_index_layout(layout, "multi")
    one, svc, old = (manifest_digest(layout, t) for t in ("one", "svc", "old"))
    children = [manifest_digest(layout, f"multi-{a}") for a in ("amd64", "arm64")]

    skopeo_push(layout, src, "team/app:v1", src_tag="one")
    skopeo_push(layout, src, "team/app:latest", src_tag="one")  # a retag
    _run_skopeo(
        [
            "copy", "--all", "--preserve-digests", "--dest-tls-verify=false", "--dest-no-creds",
            f"oci:{layout}:multi", f"docker://{src}/team/multi:v1",
        ],
        timeout=60,
    )  # fmt: skip
    skopeo_push(layout, src, f"other/svc@{svc}", src_tag="svc")
    skopeo_push(layout, src, "team/app:old", src_tag="old")
    events = _wait_events(world, 7)  # v1, latest, 2 children + index, svc, old

    for dest, mode in (("s3://dst", "auto"), ("s3://dst2/mirror", "stream")):
        result = _replicate(world, events, dest, "--copy", mode)
        assert result.returncode == 0, result.stderr + result.stdout
        assert ("server-side" if mode == "auto" else "streamed") in result.stdout

    skopeo_delete(src, "team/app:old")
    deletes = _wait_events(world, 2)
    result = _replicate(world, deletes, "s3://dst", "--delete", "--keep-deleted", "0")
    assert result.returncode == 0, result.stderr + result.stdout

    refs = {
        "team/app:v1": one,
        "team/app:latest": one,
        f"team/app@{one}": one,
        "team/multi:v1": index,
        f"team/multi@{index}": index,
        f"team/multi@{children[0]}": children[0],
        f"team/multi@{children[1]}": children[1],
        f"other/svc@{svc}": svc,
    }
    with run_s3_registry(world.tmp / "dst-reg", world.s3, "dst") as dst:
        for ref, digest in refs.items():
            assert _sha(_raw(dst.addr, ref)) == digest, ref
        out = world.tmp / "pulled"
        _skopeo_out(
            ["copy", "--all", "--preserve-digests", "--src-tls-verify=false", "--src-no-creds",
             f"docker://{dst.addr}/team/multi:v1", f"oci:{out}:multi"]
        )  # fmt: skip
        _skopeo_out(
            ["copy", "--preserve-digests", "--src-tls-verify=false", "--src-no-creds",
             f"docker://{dst.addr}/team/app:v1", f"oci:{out}:one"]
        )  # fmt: skip
        assert manifest_digest(out, "multi") == index
        assert manifest_digest(out, "one") == one
        for digest in (index, *children, one):
            assert (out / "blobs/sha256" / digest.removeprefix("sha256:")).exists()
        # the deleted tag and manifest are gone from the mirror
        with pytest.raises(AssertionError):
            _raw(dst.addr, "team/app:old")
        with pytest.raises(AssertionError):
            _raw(dst.addr, f"team/app@{old}")
    with run_s3_registry(world.tmp / "dst2-reg", world.s3, "dst2", root="mirror") as dst2:
        for ref, digest in refs.items():
            assert _sha(_raw(dst2.addr, ref)) == digest, ref
        assert _sha(_raw(dst2.addr, "team/app:old")) == old  # no --delete run there


@pytest.mark.integration
def test_missing_source_blob_and_bad_credentials_fail_safely(world: World) -> None:
    layout = world.tmp / "broken-layout"
    make_oci_layout(layout, tag="b", payload=b"broken image")
    skopeo_push(layout, world.source_addr, "team/broken:v1", src_tag="b")
    events = _wait_events(world, 1)
    client = world.s3.client()
    manifest = json.loads((layout / "blobs/sha256" / manifest_digest(layout, "b")[7:]).read_bytes())
    layer_key = Layout("reg").blob_data(manifest["layers"][0]["digest"])
    client.delete_object(Bucket="src", Key=layer_key)

    result = _replicate(world, events, "s3://dst")
    assert result.returncode == 1
    assert f"source {layer_key} does not exist" in result.stderr
    assert "team/broken:v1: not updated" in result.stderr
    listed = client.list_objects_v2(
        Bucket="dst", Prefix=Layout().base + "/repositories/team/broken/_manifests"
    )
    assert listed.get("KeyCount", 0) == 0

    path = world.tmp / "events.json"
    env = {
        **world.s3.env("source"),
        **world.s3.env("dest"),
        "S3SYNCER_DEST_AWS_SECRET_ACCESS_KEY": "wrong",
        "S3SYNCER_EVENTS_FILE": str(path),
    }
    result = _cli(["--source", "s3://src/reg", "--dest", "s3://dst2/other"], env)
    assert result.returncode == 1
    assert "SignatureDoesNotMatch" in result.stderr or "permission denied" in result.stderr
    assert "team/broken:v1: not updated" in result.stderr
    # the object it could not reach, named as an operator finds it in the mirror (manifests
    # are copied as blobs are: the HEAD that looks for them is what fails first)
    assert "cannot read s3://dst2/other/docker/registry/v2/blobs/sha256/" in result.stderr


@pytest.mark.integration
def test_a_pushed_manifest_the_source_collected_since_does_not_fail_every_run(
    world: World,
) -> None:
    """v1 is pushed twice and the registry's garbage collector removes the first manifest
    before replicate runs. The daemon hands a failed run's events to every next run, so a
    failure here would fail every later run, for good: the gone manifest is skipped instead.
    """
    layout = world.tmp / "gc-layout"
    make_oci_layout(layout, tag="old", payload=b"replaced before the mirror saw it")
    make_oci_layout(layout, tag="new", payload=b"what v1 is now")
    make_oci_layout(layout, tag="next", payload=b"a later push")
    old = manifest_digest(layout, "old")
    with run_s3_registry(
        world.tmp / "gc-reg", world.s3, "src", root="gc", notify_url=world.sink.url
    ) as reg:
        skopeo_push(layout, reg.addr, "team/app:v1", src_tag="old")
        skopeo_push(layout, reg.addr, "team/app:v1", src_tag="new")
        events = _wait_events(world, 2)
        collect = [tool(REGISTRY_BINARY), "garbage-collect", "--delete-untagged"]
        subprocess.run([*collect, str(reg.config_path)], capture_output=True, check=True)
        skopeo_push(layout, reg.addr, "team/app:v2", src_tag="next")
        events += _wait_events(world, 1)
    client = world.s3.client()
    assert "Contents" not in client.list_objects_v2(
        Bucket="src", Prefix=Layout("gc").blob_data(old)
    )

    path = world.tmp / "gc-events.json"
    path.write_text(json.dumps({"events": events, "truncated": False}))
    env = {**world.s3.env("source"), **world.s3.env("dest"), "S3SYNCER_EVENTS_FILE": str(path)}
    wrong = _cli(["--source", "s3://src/gc-typo", "--dest", "s3://dst2/gc"], env)
    assert wrong.returncode == 1, wrong.stderr + wrong.stdout  # a wrong --source has nothing
    assert "but its bucket does: did you mean s3://src/gc" in wrong.stderr
    assert "no longer" not in wrong.stderr
    result = _cli(["--source", "s3://src/gc", "--dest", "s3://dst2/gc"], env)
    assert result.returncode == 0, result.stderr + result.stdout
    assert f"team/app@{old}: no longer in the source, skipped" in result.stderr
    with run_s3_registry(world.tmp / "gc-mirror", world.s3, "dst2", root="gc") as dst:
        assert _sha(_raw(dst.addr, "team/app:v1")) == manifest_digest(layout, "new")
        assert _sha(_raw(dst.addr, "team/app:v2")) == manifest_digest(layout, "next")
