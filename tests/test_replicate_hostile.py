"""A hostile closure fails alone, and a name is checked whole.

Anyone who may push may push a chain of 1,100 OCI indexes, each listing the previous one: it
once made replicate, --all and verify fail with RecursionError, and the daemon carried the
failed event into every later run, so no good tag reached the mirror. Here such a chain is
pushed to a real ``docker-registry`` on SeaweedFS beside ordinary images: that tag is refused,
named, every other tag is mirrored and pulled back, and the next runs succeed too. The unit
tests below run the same walk on an in-memory S3.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

import pytest

from mirror_world import pulled as mirror_pull
from registry_harness import make_oci_layout, manifest_digest, require_tools, skopeo_push
from s3_harness import run_s3_registry, run_seaweedfs
from s3syncer.replicate import Location, Replicator
from s3syncer.replicate.changes import replay
from s3syncer.replicate.layout import Layout, LayoutError, check_digest, check_repository, check_tag
from s3syncer.replicate.plan import MAX_CLOSURE_BYTES, MAX_DEPTH
from s3syncer.replicate.sides import Side
from test_replicate import FakeS3, _blob, _image, _tag_push

INDEX = "application/vnd.oci.image.index.v1+json"
MANIFEST = "application/vnd.oci.image.manifest.v1+json"
CHAIN = 1_100
D1 = "sha256:" + "a" * 64


# --- names ---------------------------------------------------------------------------------


def test_a_name_with_a_trailing_newline_is_refused() -> None:
    # `$` matches before a final newline: "team/app\n" once got into object keys
    for bad in ("team/app\n", "team/app\n/x"):
        with pytest.raises(LayoutError):
            check_repository(bad)
    with pytest.raises(LayoutError):
        check_tag("v1\n")
    with pytest.raises(LayoutError):
        check_digest(D1 + "\n")
    layout = Layout()
    key = f"{layout.repositories}team/app\n/_manifests/tags/v1/current/link"
    assert layout.tag_of(key) is None
    event = _tag_push("team/app\n", "v1", D1)
    changes = replay([event])
    assert changes.tags == {} and len(changes.problems) == 1


# --- the walk, on an in-memory S3 ----------------------------------------------------------


def _index(store: FakeS3, children: list[dict[str, Any]]) -> dict[str, Any]:
    body = {"schemaVersion": 2, "mediaType": INDEX, "manifests": children}
    return {"mediaType": INDEX, **_blob(store, json.dumps(body).encode())}


def _run(store: FakeS3, events: list[Any]) -> Replicator:
    client = cast("Any", store)
    source, dest = Side(client, Location("src")), Side(client, Location("dst"))
    with Replicator(source, dest, server_side=True) as replicator:
        replicator.replicate(replay(events), delete=True)
    return replicator


def _mirrored(store: FakeS3, repo: str, tag: str) -> bytes | None:
    return store.objects.get(("dst", Layout().tag_current_link(repo, tag)))


def test_a_chain_of_1100_indexes_is_refused_alone_without_reading_it_all() -> None:
    store = FakeS3()
    top = _image(store, b"the bottom of the chain")
    for _ in range(CHAIN):
        top = _index(store, [top])
    good = _image(store, b"an ordinary image")
    replicator = _run(
        store,
        [_tag_push("team/deep", "v1", top["digest"]), _tag_push("team/ok", "v1", good["digest"])],
    )
    assert replicator.problems == []  # refused is not failed: a retry cannot help
    assert replicator.report.refused == [
        f"team/deep:v1: refused, manifests nested more than {MAX_DEPTH} levels deep "
        f"({top['digest']}): not mirrored"
    ]
    assert _mirrored(store, "team/ok", "v1") == good["digest"].encode()
    assert _mirrored(store, "team/deep", "v1") is None
    assert not [k for (b, k) in store.objects if b == "dst" and "/team/deep/" in k]
    manifests_read = [k for k in store.gets if "/blobs/" in k]
    assert len(manifests_read) <= MAX_DEPTH + 3  # the chain's first levels, and the good one


def test_an_index_nested_to_the_limit_is_copied() -> None:
    store = FakeS3()
    top = _image(store, b"at the bottom")
    for _ in range(MAX_DEPTH):
        top = _index(store, [top])
    replicator = _run(store, [_tag_push("team/nested", "v1", top["digest"])])
    assert replicator.problems == [] and replicator.report.refused == []
    assert _mirrored(store, "team/nested", "v1") == top["digest"].encode()


def test_an_index_of_huge_manifests_is_refused_by_size() -> None:
    store = FakeS3()
    filler = "x" * (3 * 1024 * 1024)  # each child close to Distribution's 4 MiB limit
    children = []
    for n in range(MAX_CLOSURE_BYTES // len(filler) + 1):
        config = _blob(store, f"config {n}".encode())
        body = {"schemaVersion": 2, "config": config, "layers": [], "annotations": {"f": filler}}
        children.append({"mediaType": MANIFEST, **_blob(store, json.dumps(body).encode())})
    huge = _index(store, children)
    good = _image(store, b"ordinary")
    replicator = _run(
        store,
        [_tag_push("team/huge", "v1", huge["digest"]), _tag_push("team/ok", "v1", good["digest"])],
    )
    assert replicator.problems == []
    [line] = replicator.report.refused
    assert line.startswith(
        f"team/huge:v1: refused, its manifests hold more than {MAX_CLOSURE_BYTES}"
    )
    assert _mirrored(store, "team/ok", "v1") == good["digest"].encode()
    assert _mirrored(store, "team/huge", "v1") is None


def test_a_manifest_this_tool_cannot_read_fails_its_tag_alone_and_no_later_run() -> None:
    """An OCI artifact manifest (``blobs``, no config or layers) is no image this tool knows:
    the tag is refused, named, and the run succeeds, or it would fail every run for good."""
    store = FakeS3()
    artifact = {
        "mediaType": "application/vnd.oci.artifact.manifest.v1+json",
        "artifactType": "application/vnd.example.sbom",
        "blobs": [_blob(store, b"an sbom")],
    }
    odd = _blob(store, json.dumps(artifact).encode())
    good = _image(store, b"ordinary")
    pushes = [
        _tag_push("team/sbom", "v1", odd["digest"]),
        _tag_push("team/ok", "v1", good["digest"]),
    ]
    for _attempt in range(2):
        replicator = _run(store, pushes)
        assert replicator.problems == []
        [line] = replicator.report.refused
        assert line.startswith(f"team/sbom:v1: refused, manifest {odd['digest']}: manifest "), line
        assert line.endswith(f"which no retry can mirror ({odd['digest']}): not mirrored"), line
        assert _mirrored(store, "team/ok", "v1") == good["digest"].encode()
        assert _mirrored(store, "team/sbom", "v1") is None


# --- a real registry -----------------------------------------------------------------------


def _put_manifest(addr: str, repo: str, ref: str, body: bytes, media_type: str) -> None:
    request = urllib.request.Request(
        f"http://{addr}/v2/{repo}/manifests/{ref}",
        data=body,
        method="PUT",
        headers={"Content-Type": media_type},
    )
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(request, timeout=30) as answer:
        assert answer.status == 201, answer.status


def _push_chain(addr: str, repo: str, bottom: dict[str, Any], length: int) -> str:
    """Push ``length`` OCI indexes, each listing the previous one, the last as ``:v1``."""
    top = bottom
    for n in range(length):
        body = json.dumps({"schemaVersion": 2, "mediaType": INDEX, "manifests": [top]}).encode()
        digest = "sha256:" + hashlib.sha256(body).hexdigest()
        ref = "v1" if n == length - 1 else digest
        _put_manifest(addr, repo, ref, body, INDEX)
        top = {"mediaType": INDEX, "digest": digest, "size": len(body)}
    return str(top["digest"])


def _tool(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "s3syncer", *args, "--source", "s3://src/reg", "--dest",
         "s3://dst/reg"],
        env=env, capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip


@pytest.fixture
def env() -> Iterator[dict[str, str]]:
    yield {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "S3SYNCER_"))}


@pytest.mark.integration
@pytest.mark.slow
def test_a_chain_of_1100_nested_indexes_fails_that_tag_alone(
    tmp_path: Path, env: dict[str, str]
) -> None:
    require_tools()
    layout = tmp_path / "layout"
    for tag in ("bottom", "one", "two"):
        make_oci_layout(layout, tag=tag, payload=f"image {tag}".encode())
    with (
        run_seaweedfs(tmp_path / "s3", ["src", "dst"]) as s3,
        run_s3_registry(tmp_path / "src-reg", s3, "src", root="reg") as registry,
    ):
        skopeo_push(layout, registry.addr, "team/deep:bottom", src_tag="bottom")
        bottom = manifest_digest(layout, "bottom")
        size = (layout / "blobs/sha256" / bottom.removeprefix("sha256:")).stat().st_size
        deep = _push_chain(
            registry.addr, "team/deep", {"mediaType": MANIFEST, "digest": bottom, "size": size},
            CHAIN,
        )  # fmt: skip
        skopeo_push(layout, registry.addr, "team/app:one", src_tag="one")
        skopeo_push(layout, registry.addr, "team/app:two", src_tag="two")
        env.update({**s3.env("source"), **s3.env("dest")})
        events = tmp_path / "events.json"
        events.write_text(json.dumps({"reason": "reconcile", "events": [], "truncated": False}))
        for attempt in ("first", "next"):
            run = _tool(env, "replicate", "--events", str(events), "--delete")
            assert run.returncode == 0, f"{attempt}: {run.stderr}{run.stdout}"
            refused = (
                f"team/deep:v1: refused, manifests nested more than {MAX_DEPTH} levels deep "
                f"({deep}): not mirrored"
            )
            assert refused in run.stderr, run.stderr
            assert "1 tag refused" in run.stdout and "; ok" in run.stdout
            assert "RecursionError" not in run.stderr + run.stdout
        # the push's own event is refused the same way, and fails no run
        push = {"action": "push", "target": {"repository": "team/deep", "tag": "v1",
                                              "digest": deep, "mediaType": INDEX}}  # fmt: skip
        events.write_text(json.dumps({"reason": "event", "events": [push], "truncated": False}))
        evented = _tool(env, "replicate", "--events", str(events))
        assert evented.returncode == 0, evented.stderr + evented.stdout
        assert "team/deep:v1: refused" in evented.stderr
        proof = _tool(env, "verify")
        assert proof.returncode == 1, proof.stderr + proof.stdout  # the mirror lacks that tag
        assert proof.stdout.splitlines()[:-1] == [
            f"team/deep:v1: tag (no current/link; source has {deep}); refused: manifests "
            f"nested more than {MAX_DEPTH} levels deep; replicate does not mirror it"
        ], proof.stdout
        with run_s3_registry(tmp_path / "mirror", s3, "dst", root="reg") as mirror:
            for ref, tag in (("team/app:one", "one"), ("team/app:two", "two"),
                             ("team/deep:bottom", "bottom")):  # fmt: skip
                pulled = mirror_pull(mirror.addr, ref)
                assert pulled == manifest_digest(layout, tag), ref
            assert mirror_pull(mirror.addr, "team/deep:v1") is None
