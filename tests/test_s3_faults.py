"""``replicate`` and ``verify`` against a real store that misbehaves: SeaweedFS behind a proxy
(:mod:`fault_proxy`) that answers 503/500, resets connections, cuts bodies midway.

What an operator relies on at restore time: a transient error is retried and the run ends
complete; a persistent one ends the run with exit 1 and a line naming what failed, while every
tag the mirror has stays restorable (a tag is never written before its closure), no multipart
upload is left open, and nothing that is not the blob is ever written; the next run succeeds.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from fault_proxy import Fault, FaultProxy, fault_proxy
from registry_storage import put_blob, put_blob_file, put_image, random_file
from s3_harness import S3Server, run_seaweedfs
from s3syncer.replicate.layout import Layout

pytestmark = pytest.mark.integration

MIB = 1024 * 1024
BIG_LAYER = 12 * MIB  # above the limits below: two 8 MiB streamed parts, one 64 MiB copy part
ONE_PUT = ["--copy", "stream"]
STREAM_PARTS = ["--copy", "stream", "--stream-put-limit", str(6 * MIB)]
SERVER_PARTS = ["--copy", "server", "--server-copy-limit", str(6 * MIB)]


@dataclass
class Store:
    s3: S3Server
    source: FaultProxy
    dest: FaultProxy
    small_layer: str  # the digest's hex of a layer of app:v1
    big_layer: str  # the digest's hex of big:v1's 12 MiB layer


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Store]:
    tmp = tmp_path_factory.mktemp("s3faults")
    with (
        run_seaweedfs(tmp / "s3", ["src", "dst"]) as s3,
        fault_proxy(s3.endpoint) as source,
        fault_proxy(s3.endpoint) as dest,
    ):
        client = s3.client()
        big = random_file(tmp / "big.bin", BIG_LAYER)
        # "base" holds app:v1 only, "full" app:v1 (the same image), app:v2 and big:v1
        for root in ("base", "full"):
            layout = Layout(root)
            layers = [put_blob(client, "src", layout, b"app:v1 %d " % i * 1000) for i in (1, 2)]
            put_image(client, "src", layout, "app", tags=["v1"], layers=layers)
        layout = Layout("full")
        v2 = [put_blob(client, "src", layout, b"app:v2 layer " * 1000)]
        put_image(client, "src", layout, "app", tags=["v2"], layers=v2)
        put_blob_file(client, "src", layout, tmp / "big.bin", big)
        put_image(client, "src", layout, "big", tags=["v1"], layers=[big])
        yield Store(s3, source, dest, layers[0]["digest"][7:], big["digest"][7:])


@pytest.fixture
def store(world: Store) -> Iterator[Store]:
    world.source.clear()
    world.dest.clear()
    yield world
    world.source.clear()
    world.dest.clear()


_roots = iter(range(1_000_000))


def _root() -> str:
    """A fresh mirror root for each run of a test (parametrized tests share the bucket)."""
    return f"m{next(_roots)}-{os.getpid()}"


def _tool(store: Store, *args: str) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "S3SYNCER_"))}
    env = {**base, **store.s3.env("source"), **store.s3.env("dest")}
    env["S3SYNCER_SOURCE_ENDPOINT"] = store.source.endpoint
    env["S3SYNCER_DEST_ENDPOINT"] = store.dest.endpoint
    return subprocess.run(
        [sys.executable, "-m", "s3syncer", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def _replicate(store: Store, root: str, *mode: str, source: str = "full") -> Any:
    return _tool(
        store, "replicate", "--all", *mode, "--source", f"s3://src/{source}", "--dest", root
    )


def _replicate_event(store: Store, root: str, *mode: str) -> Any:
    """An event run for the push of app:v1 (read from the source, as the registry has it)."""
    client, layout = store.s3.client(), Layout("full")
    key = layout.tag_current_link("app", "v1")
    digest = client.get_object(Bucket="src", Key=key)["Body"].read().decode()
    target = {"repository": "app", "tag": "v1", "digest": digest, "kind": "manifest"}
    events = Path(tempfile.mkdtemp()) / "events.json"
    events.write_text(
        json.dumps({"reason": "event", "events": [{"action": "push", "target": target}]})
    )
    return _tool(
        store, "replicate", "--events", str(events), *mode, "--source", "s3://src/full",
        "--dest", root,
    )  # fmt: skip


def _verify(store: Store, root: str, *extra: str) -> Any:
    return _tool(store, "verify", "--json", "--source", "s3://src/full", "--dest", root, *extra)


def _open_uploads(store: Store, root: str) -> list[Any]:
    listed = store.s3.client().list_multipart_uploads(Bucket="dst", Prefix=root + "/")
    return list(listed.get("Uploads", []))


def _assert_complete(store: Store, root: str) -> None:
    proof = _verify(store, f"s3://dst/{root}", "--deep")
    assert proof.returncode == 0, proof.stdout + proof.stderr
    assert json.loads(proof.stdout)["complete"] is True


TRANSIENT = {
    "GET of a blob, 503": ("source", Fault("GET", "/blobs/", "status", 2), ONE_PUT),
    "GET of a link, reset": ("source", Fault("GET", "/link$", "reset", 2), ONE_PUT),
    "HEAD, 500": ("source", Fault("HEAD", "", "status", 2, status=500), ONE_PUT),
    "ListObjectsV2, 503": ("dest", Fault("GET", "list-type=2", "status", 2), ONE_PUT),
    "PUT, 503": ("dest", Fault("PUT", r"^/dst/[^?]*$", "status", 2), ONE_PUT),
    "PUT, answer lost": ("dest", Fault("PUT", r"^/dst/[^?]*$", "lost", 2), ONE_PUT),
    # a full pass learns the mirror's blobs from its listing: no HEAD of the mirror to fail
    "ListObjectsV2 of the source, 503": (
        "source",
        Fault("GET", "list-type=2", "status", 2),
        STREAM_PARTS,
    ),
    "UploadPart, 503": ("dest", Fault("PUT", "partNumber=", "status", 2), STREAM_PARTS),
    "UploadPart, reset": ("dest", Fault("PUT", "partNumber=", "reset", 1), STREAM_PARTS),
    "CompleteMultipartUpload, 500": (
        "dest",
        Fault("POST", "uploadId=", "status", 1, status=500),
        STREAM_PARTS,
    ),
    "CompleteMultipartUpload, answer lost": (
        "dest",
        Fault("POST", "uploadId=", "lost", 1),
        SERVER_PARTS,
    ),
    "UploadPartCopy, 503": (
        "dest",
        Fault("PUT", "partNumber=", "status", 2, header="x-amz-copy-source"),
        SERVER_PARTS,
    ),
}


@pytest.mark.parametrize("case", list(TRANSIENT))
def test_a_transient_error_is_retried_and_the_run_completes(store: Store, case: str) -> None:
    side, fault, mode = TRANSIENT[case]
    fault.hits = 0
    (store.source if side == "source" else store.dest).add(fault)
    root = _root()
    run = _replicate(store, f"s3://dst/{root}", *mode)
    assert fault.hits == fault.times, f"the fault never happened: {case}"
    assert run.returncode == 0, run.stderr + run.stdout
    store.dest.clear()
    _assert_complete(store, root)
    assert not _open_uploads(store, root)


CUT_ONCE = {
    # the body of a streamed PutObject is the source's GET: botocore retries the PUT
    "a layer streamed in one PutObject": ("small_layer", ONE_PUT),
    "a ranged GET of a layer streamed in parts": ("big_layer", STREAM_PARTS),
    "a manifest": ("manifest", ONE_PUT),
}


@pytest.mark.parametrize("case", list(CUT_ONCE))
def test_a_source_body_cut_midway_once_is_fetched_again(store: Store, case: str) -> None:
    blob, mode = CUT_ONCE[case]
    client = store.s3.client()
    if blob == "manifest":
        key = Layout("full").tag_current_link("app", "v1")
        target = client.get_object(Bucket="src", Key=key)["Body"].read().decode()[7:]
    else:
        target = getattr(store, blob)
    cut = Fault("GET", f"/blobs/sha256/../{target}/data", "cut", 1)
    store.source.add(cut)
    root = _root()
    run = _replicate(store, f"s3://dst/{root}", *mode)
    assert cut.hits == 1
    assert run.returncode == 0, run.stderr + run.stdout
    _assert_complete(store, root)


@pytest.mark.parametrize("mode", ["one PutObject", "parts"])
def test_a_source_body_cut_every_time_writes_nothing_and_the_next_run_copies_it(
    store: Store, mode: str
) -> None:
    target = store.small_layer if mode == "one PutObject" else store.big_layer
    store.source.add(Fault("GET", f"/blobs/sha256/../{target}/data", "cut", None))
    root = _root()
    run = _replicate(
        store, f"s3://dst/{root}", *(ONE_PUT if mode == "one PutObject" else STREAM_PARTS)
    )
    assert run.returncode == 1, run.stderr + run.stdout
    assert f"blob sha256:{target}: cannot copy s3://src/full/" in run.stderr
    client = store.s3.client()
    key = f"{root}/" + Layout().blob_data("sha256:" + target)
    assert client.list_objects_v2(Bucket="dst", Prefix=key)["KeyCount"] == 0
    assert not _open_uploads(store, root)
    store.source.clear()
    again = _replicate(store, f"s3://dst/{root}", *STREAM_PARTS)
    assert again.returncode == 0, again.stderr + again.stdout
    _assert_complete(store, root)


STEPS = {
    "blobs": Fault("PUT", "/blobs/", "status", None, status=500),
    "layer links": Fault("PUT", "/_layers/", "status", None, status=500),
    "revision links": Fault("PUT", "/_manifests/revisions/", "status", None, status=500),
    "tag index links": Fault("PUT", "/_manifests/tags/[^/]+/index/", "status", None, status=500),
    "current/link": Fault("PUT", "/current/link$", "status", None, status=500),
    "UploadPart": Fault("PUT", "partNumber=", "status", None),
    "CompleteMultipartUpload": Fault("POST", "uploadId=", "status", None),
}


@pytest.mark.parametrize("step", list(STEPS))
def test_a_persistent_failure_at_any_step_keeps_every_mirrored_tag_restorable(
    store: Store, step: str
) -> None:
    root = _root()
    seeded = _replicate(store, f"s3://dst/{root}", *STREAM_PARTS, source="base")
    assert seeded.returncode == 0, seeded.stderr + seeded.stdout
    fault = STEPS[step]
    fault.hits = 0
    store.dest.add(fault)
    run = _replicate(store, f"s3://dst/{root}", *STREAM_PARTS)
    assert fault.hits, "the fault never happened"
    assert run.returncode == 1, run.stderr + run.stdout
    assert "FAILED" in run.stdout
    assert "(HTTP 500)" in run.stderr or "(HTTP 503)" in run.stderr, run.stderr
    store.dest.clear()
    proof = json.loads(_verify(store, f"s3://dst/{root}").stdout)
    # the tags the mirror has are whole; the others are simply not there yet
    for broken in proof["broken"]:
        assert all("no current/link" in m for m in broken["missing"]), broken
    assert not _open_uploads(store, root)
    again = _replicate(store, f"s3://dst/{root}", *STREAM_PARTS)
    assert again.returncode == 0, again.stderr + again.stdout
    _assert_complete(store, root)


@pytest.fixture(scope="module")
def mirrored(world: Store) -> str:
    """A root of the mirror bucket that holds every tag of the source, complete."""
    root = _root()
    run = _replicate(world, f"s3://dst/{root}", *STREAM_PARTS)
    assert run.returncode == 0, run.stderr + run.stdout
    return root


VERIFY_TRANSIENT: dict[str, Callable[[Store], Fault]] = {
    "ListObjectsV2 of the mirror, 503": lambda _: Fault("GET", "list-type=2", "status", 2),
    "ListObjectsV2 of the mirror, 500": lambda _: Fault(
        "GET", "list-type=2", "status", 2, status=500
    ),
    "GET of a link, reset": lambda _: Fault("GET", "/link$", "reset", 2),
    "GET of a manifest, cut": lambda _: Fault("GET", "/blobs/", "cut", 1),
    "GET of a layer hashed by --deep, cut": lambda store: Fault(
        "GET", f"/blobs/sha256/../{store.big_layer}/data", "cut", 1
    ),
}


@pytest.mark.parametrize("case", list(VERIFY_TRANSIENT))
def test_verify_retries_a_transient_error(store: Store, mirrored: str, case: str) -> None:
    fault = VERIFY_TRANSIENT[case](store)
    store.dest.add(fault)
    proof = _verify(store, f"s3://dst/{mirrored}", "--deep")
    assert fault.hits == fault.times
    assert proof.returncode == 0, proof.stdout + proof.stderr
    assert json.loads(proof.stdout)["complete"] is True


def test_verify_never_calls_a_mirror_it_cannot_read_complete(store: Store, mirrored: str) -> None:
    dest = f"s3://dst/{mirrored}"
    big = f"/blobs/sha256/../{store.big_layer}/data"
    # every tag's current/link: what verify still reads of the mirror (manifests and blobs
    # are proven from the listings' ETags)
    store.dest.add(Fault("GET", "/current/link$", "status", None, status=500))
    proof = _verify(store, dest)
    assert proof.returncode == 1, proof.stdout + proof.stderr
    document = json.loads(proof.stdout)
    assert document["complete"] is False
    # each broken tag names the mirror's link that could not be read, and why
    missing = [m for tag in document["broken"] for m in tag["missing"]]
    assert len(missing) == document["tags"], missing
    assert all(m.startswith("tag (cannot read s3://dst/") for m in missing), missing
    assert all("(HTTP 500)" in m for m in missing), missing
    store.dest.clear()
    store.dest.add(Fault("GET", big, "cut", None))  # --deep cannot read it whole
    deep = _verify(store, dest, "--deep")
    assert deep.returncode == 1, deep.stdout + deep.stderr
    assert json.loads(deep.stdout)["complete"] is False
    store.dest.clear()
    store.dest.add(Fault("GET", "list-type=2", "status", None))
    listing = _verify(store, dest)
    assert listing.returncode == 1, listing.stdout + listing.stderr
    assert f"cannot verify: cannot list {dest}: SlowDown (HTTP 503)" in listing.stderr
    assert json.loads(listing.stdout)["complete"] is False


def test_a_blob_that_fails_is_named_with_the_side_and_object_that_failed(store: Store) -> None:
    layer = f"sha256:{store.small_layer}"
    blob = f"/blobs/sha256/../{store.small_layer}/data"
    src_url = f"s3://src/full/{Layout().blob_data(layer)}"
    root = _root()
    dst_url = f"s3://dst/{root}/{Layout().blob_data(layer)}"
    store.dest.add(Fault("HEAD", blob, "status", None, status=500))
    run = _replicate_event(store, f"s3://dst/{root}", *ONE_PUT)  # a full pass sends no HEAD
    assert run.returncode == 1, run.stderr + run.stdout
    assert f"blob {layer}: cannot read {dst_url}: 500 (HTTP 500)" in run.stderr, run.stderr
    store.dest.clear()
    store.dest.add(Fault("PUT", blob, "status", None))
    run = _replicate(store, f"s3://dst/{root}", *ONE_PUT)
    assert run.returncode == 1, run.stderr + run.stdout
    copy = f"blob {layer}: cannot copy {src_url} to {dst_url}: SlowDown (HTTP 503)"
    assert copy in run.stderr, run.stderr


def test_an_upload_that_cannot_be_aborted_is_named_after_what_failed_first(store: Store) -> None:
    # Mirror credentials without s3:AbortMultipartUpload: the failure to report is the one
    # that stopped the blob; the upload it leaves open is named, for the lifecycle rule.
    root = _root()
    store.dest.add(
        Fault("POST", r"uploadId=", "status", None, status=500),  # CompleteMultipartUpload
        Fault("DELETE", r"uploadId=", "status", None, status=403),  # AbortMultipartUpload
    )
    run = _replicate(store, f"s3://dst/{root}", *STREAM_PARTS)
    assert run.returncode == 1, run.stderr + run.stdout
    (upload,) = _open_uploads(store, root)
    line = next(line for line in run.stderr.splitlines() if store.big_layer in line)
    assert line.endswith(
        f": InternalError (HTTP 500): injected by the test proxy; upload {upload['UploadId']} "
        "left open, it could not be "
        "aborted: permission denied (AccessDenied, HTTP 403)"
    ), line
    store.dest.clear()
    again = _replicate(store, f"s3://dst/{root}", *STREAM_PARTS)
    assert again.returncode == 0, again.stderr + again.stdout
    _assert_complete(store, root)
