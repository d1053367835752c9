"""``verify`` says complete only when a restore works: each mutation of a mirror object that a
registry serving the mirror reads is judged by ``verify`` and by a real pull from that registry.

A mirror seeded by ``replicate --all`` from a real ``docker-registry`` on SeaweedFS is broken
one object at a time (and put back after); ``skopeo copy --all`` from a second registry on the
mirror is the restore. Distribution serves whatever digest a link file names and fails on
anything that is not exactly a digest, so a link must hold its digest, not merely exist.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from registry_harness import make_oci_layout, manifest_digest, require_tools, skopeo_push
from s3_harness import S3Server, run_s3_registry, run_seaweedfs, tool
from s3syncer.replicate.layout import Layout, link_body
from test_replicate import make_index_layout

pytestmark = pytest.mark.integration

SOURCE, MIRROR = "s3://seed/reg", "s3://mirror/reg"
MIRROR_LAYOUT = Layout("reg")


@dataclass
class Mirror:
    s3: S3Server
    tmp: Path
    tags: dict[str, str]  # repo:tag -> manifest digest
    layout: Path  # the OCI layout the images were pushed from

    def blobs_of(self, src_tag: str) -> tuple[str, str]:
        """The config and the layer digest of image ``src_tag`` of the layout."""
        digest = manifest_digest(self.layout, src_tag)
        manifest = json.loads((self.layout / "blobs/sha256" / digest[7:]).read_bytes())
        return manifest["config"]["digest"], manifest["layers"][0]["digest"]

    def s3syncer(self, *args: str) -> subprocess.CompletedProcess[str]:
        base = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "S3SYNCER_"))}
        return subprocess.run(
            [sys.executable, "-m", "s3syncer", *args, "--source", SOURCE, "--dest", MIRROR],
            env={**base, **self.s3.env("source"), **self.s3.env("dest")},
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )

    def restores(self, ref: str) -> bool:
        """Whether a registry serving the mirror gives ``ref`` (every platform) as pushed."""
        pulled = self.tmp / "pulled"
        shutil.rmtree(pulled, ignore_errors=True)
        with run_s3_registry(self.tmp / "restore", self.s3, "mirror", root="reg") as registry:
            copy = subprocess.run(
                [tool("skopeo"), "--insecure-policy", "copy", "--all", "--src-tls-verify=false",
                 "--src-no-creds", f"docker://{registry.addr}/{ref}", f"dir:{pulled}"],
                capture_output=True, timeout=60, check=False,
            )  # fmt: skip
        if copy.returncode != 0:
            return False
        top = "sha256:" + hashlib.sha256((pulled / "manifest.json").read_bytes()).hexdigest()
        return top == self.tags[ref]


@pytest.fixture(scope="module")
def mirror(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mirror]:
    require_tools()
    tmp = tmp_path_factory.mktemp("soundness")
    with (
        run_seaweedfs(tmp / "s3", ["seed", "mirror"]) as s3,
        run_s3_registry(tmp / "seed-reg", s3, "seed", root="reg") as reg,
    ):
        layout = tmp / "layout"
        make_oci_layout(layout, tag="one", payload=b"an image of one layer")
        index = make_index_layout(layout, "multi")
        skopeo_push(layout, reg.addr, "team/app:v1", src_tag="one")
        subprocess.run(
            [tool("skopeo"), "--insecure-policy", "copy", "--all", "--preserve-digests",
             "--dest-tls-verify=false", "--dest-no-creds", f"oci:{layout}:multi",
             f"docker://{reg.addr}/team/multi:v1"],
            capture_output=True, timeout=60, check=True,
        )  # fmt: skip
        tags = {"team/app:v1": manifest_digest(layout, "one"), "team/multi:v1": index}
        seeded = Mirror(s3, tmp, tags, layout)
        result = seeded.s3syncer("replicate", "--all")
        assert result.returncode == 0, result.stderr + result.stdout
        yield seeded


def _layer_link_holds_the_config(m: Mirror) -> tuple[str, str, bytes, str]:
    config, layer = m.blobs_of("one")
    key = MIRROR_LAYOUT.layer_link("team/app", layer)
    return "team/app:v1", key, link_body(config), f"layer link {layer} (holds {config})"


def _revision_link_holds_garbage(m: Mirror) -> tuple[str, str, bytes, str]:
    digest = m.tags["team/app:v1"]
    key = MIRROR_LAYOUT.revision_link("team/app", digest)
    return "team/app:v1", key, b"garbage", f"revision link {digest} (holds 'garbage')"


def _child_revision_link_holds_its_sibling(m: Mirror) -> tuple[str, str, bytes, str]:
    amd64, arm64 = (manifest_digest(m.layout, f"multi-{arch}") for arch in ("amd64", "arm64"))
    key = MIRROR_LAYOUT.revision_link("team/multi", amd64)
    return "team/multi:v1", key, link_body(arm64), f"revision link {amd64} (holds {arm64})"


def _current_link_ends_in_a_newline(m: Mirror) -> tuple[str, str, bytes, str]:
    digest = m.tags["team/app:v1"]
    key = MIRROR_LAYOUT.tag_current_link("team/app", "v1")
    body = link_body(digest) + b"\n"
    return "team/app:v1", key, body, f"tag current/link {digest} (holds {body.decode()!r})"


MUTATIONS: dict[str, Callable[[Mirror], tuple[str, str, bytes, str]]] = {
    "layer link names another blob": _layer_link_holds_the_config,
    "revision link holds garbage": _revision_link_holds_garbage,
    "index child's revision link names its sibling": _child_revision_link_holds_its_sibling,
    "current/link ends in a newline": _current_link_ends_in_a_newline,
}


def test_the_seeded_mirror_is_complete_and_restores(mirror: Mirror) -> None:
    verified = mirror.s3syncer("verify")
    assert verified.returncode == 0, verified.stdout + verified.stderr
    for ref in mirror.tags:
        assert mirror.restores(ref), ref


@pytest.mark.parametrize("mutation", list(MUTATIONS))
def test_a_link_that_breaks_a_restore_breaks_verify_and_all_repairs_it(
    mirror: Mirror, mutation: str
) -> None:
    ref, key, body, problem = MUTATIONS[mutation](mirror)
    client = mirror.s3.client()
    original = client.get_object(Bucket="mirror", Key=key)["Body"].read()
    assert body != original
    client.put_object(Bucket="mirror", Key=key, Body=body)
    try:
        assert not mirror.restores(ref)  # the registry cannot serve the tag from this mirror
        verified = mirror.s3syncer("verify")
        assert verified.returncode == 1, verified.stdout + verified.stderr
        assert f"{ref}: {problem}" in verified.stdout.splitlines(), verified.stdout
        # what verify names, replicate --all repairs: the link is written again
        repaired = mirror.s3syncer("replicate", "--all")
        assert repaired.returncode == 0, repaired.stderr + repaired.stdout
        assert client.get_object(Bucket="mirror", Key=key)["Body"].read() == original
        assert mirror.s3syncer("verify").returncode == 0
        assert mirror.restores(ref)
    finally:
        client.put_object(Bucket="mirror", Key=key, Body=original)


def _requests(result: subprocess.CompletedProcess[str]) -> int:
    found = re.search(r"(\d+) S3 requests", result.stdout)
    assert found, result.stdout
    return int(found.group(1))


def test_a_right_link_whose_etag_is_no_md5_is_read_not_reported(mirror: Mirror) -> None:
    """Under SSE-KMS or SSE-C, or written in parts, an object's ETag is not its MD5: the
    listing cannot tell what such a link holds, so verify reads it, and --all keeps it."""
    _, layer = mirror.blobs_of("one")
    key, client = MIRROR_LAYOUT.layer_link("team/app", layer), mirror.s3.client()
    before = _requests(mirror.s3syncer("verify"))
    upload = client.create_multipart_upload(Bucket="mirror", Key=key)["UploadId"]
    part = client.upload_part(
        Bucket="mirror", Key=key, UploadId=upload, PartNumber=1, Body=link_body(layer)
    )
    client.complete_multipart_upload(
        Bucket="mirror", Key=key, UploadId=upload,
        MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": part["ETag"]}]},
    )  # fmt: skip
    assert "-" in client.head_object(Bucket="mirror", Key=key)["ETag"]  # MD5 of MD5s, -PARTS
    verified = mirror.s3syncer("verify")
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert _requests(verified) == before + 1  # that one link read
    kept = mirror.s3syncer("replicate", "--all")
    assert kept.returncode == 0, kept.stderr + kept.stdout
    assert "0 links written" in kept.stdout


def test_a_tag_index_link_is_wanted_but_no_pull_reads_it(mirror: Mirror) -> None:
    """The index link records that the tag once pointed at a digest: its content breaks no
    restore, so verify does not call the mirror incomplete for it (its absence it reports)."""
    digest = mirror.tags["team/app:v1"]
    key, client = MIRROR_LAYOUT.tag_index_link("team/app", "v1", digest), mirror.s3.client()
    original = client.get_object(Bucket="mirror", Key=key)["Body"].read()
    client.put_object(Bucket="mirror", Key=key, Body=b"garbage")
    try:
        assert mirror.restores("team/app:v1")
        verified = mirror.s3syncer("verify")
        assert verified.returncode == 0, verified.stdout + verified.stderr
        client.delete_object(Bucket="mirror", Key=key)
        missing = mirror.s3syncer("verify")
        assert f"team/app:v1: tag index link {digest}" in missing.stdout.splitlines()
    finally:
        client.put_object(Bucket="mirror", Key=key, Body=original)


def test_a_blob_or_link_moved_to_an_archive_class_is_no_restore(mirror: Mirror) -> None:
    """A lifecycle rule that moves the mirror to GLACIER or DEEP_ARCHIVE leaves every HEAD and
    listing answering, but S3 refuses the GET of such an object until it is restored, so a
    registry serving the mirror cannot serve the pull: verify must not call it complete."""
    _config, layer = mirror.blobs_of("one")
    blob = MIRROR_LAYOUT.blob_data(layer)
    link = MIRROR_LAYOUT.layer_link("team/app", layer)
    client = mirror.s3.client()
    originals = {
        key: client.get_object(Bucket="mirror", Key=key)["Body"].read() for key in (blob, link)
    }
    try:
        # as a transition rule leaves them: the same bytes, in another class
        client.put_object(
            Bucket="mirror", Key=blob, Body=originals[blob], StorageClass="DEEP_ARCHIVE"
        )
        client.put_object(Bucket="mirror", Key=link, Body=originals[link], StorageClass="GLACIER")
        verified = mirror.s3syncer("verify")
        assert verified.returncode == 1, verified.stdout + verified.stderr
        assert (
            f"team/app:v1: blob {layer} (archived in DEEP_ARCHIVE: no pull reads it until it is "
            f"restored); layer link {layer} (archived in GLACIER: no pull reads it until it is "
            "restored)"
        ) in verified.stdout.splitlines(), verified.stdout
        assert "team/multi:v1" not in verified.stdout  # the other image shares none of them
    finally:
        for key, body in originals.items():
            client.put_object(Bucket="mirror", Key=key, Body=body)
    assert mirror.s3syncer("verify").returncode == 0
