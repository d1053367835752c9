"""A mirror that is seeded from nothing, proven complete, and repaired: ``replicate --all``
and ``verify`` against real SeaweedFS, a real ``docker-registry`` on S3 and skopeo pushes.

The source registry gets its images before any replicate runs (as when replicate is
configured on an existing registry); each test mirrors into its own root of the mirror bucket.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from registry_harness import (
    _REF_NAME_ANNOTATION,
    _canonical_json,
    _run_skopeo,
    _write_blob,
    make_oci_layout,
    manifest_digest,
    require_tools,
    skopeo_push,
)
from registry_storage import put_blob, put_blob_file, put_image, put_tag, random_file
from s3_harness import (
    UNLISTED_ACCESS_KEY,
    UNLISTED_SECRET_KEY,
    S3Server,
    run_s3_registry,
    run_seaweedfs,
    tool,
)
from s3syncer.replicate.layout import Layout
from test_replicate import make_index_layout
from waiting import wait_until

pytestmark = pytest.mark.integration

MULTIPART_LAYER = 70 * 1024 * 1024  # above the 64 MiB part of a server-side copy
PARTS_ABOVE = 64 * 1024 * 1024  # below 128 MiB a copy is one request, unless told


@dataclass
class Source:
    s3: S3Server
    tmp: Path
    addr: str
    tags: dict[str, str]  # repo:tag -> manifest digest
    layout: Path


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Source]:
    require_tools()
    tmp = tmp_path_factory.mktemp("proof")
    with (
        run_seaweedfs(tmp / "s3", ["seed", "mirror", "big"]) as s3,
        run_s3_registry(tmp / "seed-reg", s3, "seed", root="reg") as reg,
    ):
        layout = tmp / "layout"
        make_oci_layout(layout, tag="one", payload=b"first image")
        make_oci_layout(layout, tag="two", payload=b"second image")
        index = make_index_layout(layout, "multi")
        skopeo_push(layout, reg.addr, "team/app:v1", src_tag="one")
        skopeo_push(layout, reg.addr, "team/app:v2", src_tag="two")
        _run_skopeo(
            ["copy", "--all", "--preserve-digests", "--dest-tls-verify=false",
             "--dest-no-creds", f"oci:{layout}:multi", f"docker://{reg.addr}/team/multi:v1"],
            timeout=60,
        )  # fmt: skip
        tags = {
            "team/app:v1": manifest_digest(layout, "one"),
            "team/app:v2": manifest_digest(layout, "two"),
            "team/multi:v1": index,
        }
        yield Source(s3, tmp, reg.addr, tags, layout)


def _tool(
    source: Source, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "S3SYNCER_"))}
    return subprocess.run(
        [sys.executable, "-m", "s3syncer", *args],
        env={**base, **source.s3.env("source"), **source.s3.env("dest"), **(env or {})},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def test_without_list_permission_on_the_mirror_all_and_verify_say_so(source: Source) -> None:
    # the mirror's credentials may read and write but not list: --all and verify need to
    env = {
        "S3SYNCER_DEST_AWS_ACCESS_KEY_ID": UNLISTED_ACCESS_KEY,
        "S3SYNCER_DEST_AWS_SECRET_ACCESS_KEY": UNLISTED_SECRET_KEY,
    }
    dest = "s3://mirror/unlisted"
    seeded = _tool(
        source, "replicate", "--all", "--source", "s3://seed/reg", "--dest", dest, env=env
    )
    assert seeded.returncode == 1, seeded.stderr + seeded.stdout
    assert f"cannot list {dest}: permission denied (AccessDenied, HTTP 403)" in seeded.stderr
    client = source.s3.client()
    assert client.list_objects_v2(Bucket="mirror", Prefix="unlisted/")["KeyCount"] == 0
    proof = _tool(source, "verify", "--source", "s3://seed/reg", "--dest", dest, env=env)
    assert proof.returncode == 1, proof.stderr + proof.stdout
    assert f"cannot verify: cannot list {dest}: permission denied" in proof.stderr


def test_without_list_permission_on_the_source_all_and_verify_name_it(source: Source) -> None:
    env = {
        "S3SYNCER_SOURCE_AWS_ACCESS_KEY_ID": UNLISTED_ACCESS_KEY,
        "S3SYNCER_SOURCE_AWS_SECRET_ACCESS_KEY": UNLISTED_SECRET_KEY,
    }
    args = ("--source", "s3://seed/reg", "--dest", "s3://mirror/unlisted-source")
    seeded = _tool(source, "replicate", "--all", *args, env=env)
    assert seeded.returncode == 1, seeded.stderr + seeded.stdout
    assert "cannot list s3://seed/reg: permission denied (AccessDenied, HTTP 403)" in seeded.stderr
    proof = _tool(source, "verify", *args, env=env)
    assert proof.returncode == 1, proof.stderr + proof.stdout
    assert "cannot verify: cannot list s3://seed/reg: permission denied" in proof.stderr
    # a machine reading --json is told that nothing was proven, not handed an empty stdout
    for_machines = _tool(source, "verify", *args, "--json", env=env)
    assert for_machines.returncode == 1, for_machines.stderr + for_machines.stdout
    document = json.loads(for_machines.stdout)
    assert document["complete"] is False
    assert document["error"].startswith("cannot verify: cannot list s3://seed/reg: permission")


def _replicate_all(source: Source, dest: str, *extra: str) -> subprocess.CompletedProcess[str]:
    result = _tool(
        source, "replicate", "--all", "--source", "s3://seed/reg", "--dest", dest, *extra
    )
    assert result.returncode == 0, result.stderr + result.stdout
    return result


def _verify(source: Source, dest: str, *extra: str, src: str = "s3://seed/reg") -> Any:
    return _tool(source, "verify", "--source", src, "--dest", dest, *extra)


def _layer_of(source: Source, src_tag: str) -> str:
    manifest_path = source.layout / "blobs/sha256" / manifest_digest(source.layout, src_tag)[7:]
    return str(json.loads(manifest_path.read_bytes())["layers"][0]["digest"])


def test_replicate_all_seeds_an_empty_mirror(source: Source) -> None:
    result = _replicate_all(source, "s3://mirror/seeded")
    assert "all tags" in result.stdout and "; ok" in result.stdout
    assert "3 tags in s3://seed/reg" in result.stderr
    verified = _verify(source, "s3://mirror/seeded")
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert verified.stdout.splitlines()[-1].endswith("; complete")
    assert "3 tags, 5 manifests" in verified.stdout  # two images, an index and its two children
    with run_s3_registry(source.tmp / "seeded-reg", source.s3, "mirror", root="seeded") as dst:
        for ref, digest in source.tags.items():
            raw = subprocess.run(
                [tool("skopeo"), "inspect", "--raw", "--tls-verify=false", "--no-creds",
                 f"docker://{dst.addr}/{ref}"],
                capture_output=True, timeout=60, check=True,
            ).stdout  # fmt: skip
            assert "sha256:" + hashlib.sha256(raw).hexdigest() == digest, ref
        _run_skopeo(
            ["copy", "--all", "--preserve-digests", "--src-tls-verify=false", "--src-no-creds",
             f"docker://{dst.addr}/team/multi:v1", f"oci:{source.tmp / 'pulled'}:multi"],
            timeout=60,
        )  # fmt: skip
    # a second run finds everything there: nothing copied or written again
    again = _replicate_all(source, "s3://mirror/seeded")
    assert " 0 blobs copied" in again.stdout
    assert "8 already there, 0 links written (19 already there)" in again.stdout


def _copied(result: subprocess.CompletedProcess[str]) -> tuple[str, str]:
    """The blobs and bytes that a run's summary line says it copied."""
    found = re.search(r" (\d+) blobs? copied \((\d+) bytes", result.stdout.splitlines()[-1])
    assert found, result.stdout
    return found.group(1), found.group(2)


def test_a_dry_run_writes_nothing_and_sums_up_what_the_run_copies(source: Source) -> None:
    dest, client = "s3://mirror/dry", source.s3.client()
    preview = _replicate_all(source, dest, "--dry-run")
    assert client.list_objects_v2(Bucket="mirror", Prefix="dry/")["KeyCount"] == 0
    would = [line for line in preview.stdout.splitlines() if " blob sha256:" in line]
    assert would and all(line.startswith("would ") for line in would), preview.stdout
    # the operator reads the preview's summary as what the real run will do
    done = _replicate_all(source, dest)
    assert _copied(preview) == _copied(done)
    assert _copied(preview)[0] == str(len(would))


def test_verify_names_the_broken_tag_and_replicate_all_repairs_it(source: Source) -> None:
    dest, client = "s3://mirror/repair", source.s3.client()
    _replicate_all(source, dest)
    layer = _layer_of(source, "two")
    client.delete_object(Bucket="mirror", Key=Layout("repair").blob_data(layer))

    broken = _verify(source, dest)
    assert broken.returncode == 1, broken.stdout + broken.stderr
    lines = broken.stdout.splitlines()
    assert lines[:-1] == [f"team/app:v2: blob {layer}"]
    assert "INCOMPLETE, 1 tag broken" in lines[-1]
    as_json = json.loads(_verify(source, dest, "--json").stdout)
    assert as_json["complete"] is False
    assert as_json["broken"] == [
        {"repository": "team/app", "tag": "v2", "missing": [f"blob {layer}"]}
    ]

    repaired = _replicate_all(source, dest)
    assert " 1 blob copied" in repaired.stdout
    assert _verify(source, dest).returncode == 0

    # same size, other bytes: the listings' ETags (MD5s of each side's bytes) differ, so
    # verify finds it without reading a byte, and --all copies it again
    key = Layout("repair").blob_data(layer)
    size = client.head_object(Bucket="mirror", Key=key)["ContentLength"]
    client.put_object(Bucket="mirror", Key=key, Body=b"x" * size)
    cheap = _verify(source, dest)
    assert cheap.returncode == 1, cheap.stdout + cheap.stderr
    assert cheap.stdout.splitlines()[:-1] == [
        f"team/app:v2: blob {layer} (its ETag is not the source's: other bytes)"
    ]
    deep = _verify(source, dest, "--deep")
    assert deep.returncode == 1
    assert f"team/app:v2: blob {layer} (its ETag is not the source's" in deep.stdout
    again = _replicate_all(source, dest)
    assert " 1 blob copied" in again.stdout, again.stdout
    assert _verify(source, dest, "--deep").returncode == 0
    assert " 0 blobs copied" in _replicate_all(source, dest).stdout  # repaired for good


def test_verify_names_missing_links_and_a_moved_tag(source: Source) -> None:
    dest, client, layout = "s3://mirror/links", source.s3.client(), Layout("links")
    _replicate_all(source, dest)
    layer = _layer_of(source, "one")
    client.delete_object(Bucket="mirror", Key=layout.layer_link("team/app", layer))
    put_tag(client, "mirror", layout, "team/multi:v1", source.tags["team/app:v2"])
    result = _verify(source, dest)
    assert result.returncode == 1
    lines = result.stdout.splitlines()[:-1]
    # the layer is shared by no other tag of team/app, so only v1 is broken by its link
    assert lines[0] == f"team/app:v1: layer link {layer}", lines
    assert lines[1].startswith(f"team/multi:v1: tag points at {source.tags['team/app:v2']}")
    assert len(lines) == 2


def test_replicate_all_delete_removes_tags_the_source_lost(source: Source) -> None:
    dest, client, layout = "s3://mirror/pruned", source.s3.client(), Layout("pruned")
    _replicate_all(source, dest)
    put_tag(client, "mirror", layout, "team/app:gone", source.tags["team/app:v1"])
    assert _verify(source, dest).returncode == 0  # a tag only the mirror has is no gap
    kept = _replicate_all(source, dest)
    assert client.list_objects_v2(Bucket="mirror", Prefix=layout.tag_dir("team/app", "gone"))[
        "KeyCount"
    ]
    assert "delete" not in kept.stderr
    pruned = _replicate_all(source, dest, "--delete", "--keep-deleted", "0")
    assert "1 tags only in s3://mirror/pruned to delete" in pruned.stderr
    listed = client.list_objects_v2(Bucket="mirror", Prefix=layout.tag_dir("team/app", "gone"))
    assert listed["KeyCount"] == 0
    assert _verify(source, dest).returncode == 0


def _emptied(source: Source) -> str:
    """A registry whose every tag was deleted: blobs left, no tag (root ``emptied``)."""
    put_blob(source.s3.client(), "seed", Layout("emptied"), b"a layer no tag uses any more")
    return "s3://seed/emptied"


def test_replicate_all_delete_refuses_to_empty_the_mirror_from_a_source_with_no_tags(
    source: Source,
) -> None:
    # A source with no tag must not delete every tag of the mirror: far more often a wrong
    # --source than a registry emptied on purpose.
    dest = "s3://mirror/guarded"
    _replicate_all(source, dest)
    emptied = _emptied(source)
    wrong = _tool(source, "replicate", "--all", "--delete", "--source", emptied, "--dest", dest)
    assert wrong.returncode == 1, wrong.stderr + wrong.stdout
    assert (
        f"--all --delete: {emptied} holds no tags; refusing to delete all 3 tags of "
        "s3://mirror/guarded" in wrong.stderr
    )
    assert _verify(source, dest).returncode == 0  # every tag is still there


@pytest.mark.parametrize("wrong", ["s3://seed", "s3://seed/rge"], ids=["root-left-off", "typo"])
def test_a_wrong_source_root_is_named_by_replicate_and_verify(source: Source, wrong: str) -> None:
    """The bucket holds a registry under another prefix: both tools name it and exit 1,
    rather than copy nothing "ok" or prove nothing "complete" every night."""
    dest, client = "s3://mirror/fresh", source.s3.client()
    hint = f"{wrong} holds no registry (nothing under "
    for mode in ([], ["--delete"]):
        seeded = _tool(source, "replicate", "--all", *mode, "--source", wrong, "--dest", dest)
        assert seeded.returncode == 1, seeded.stderr + seeded.stdout
        assert hint in seeded.stderr and _suggested(seeded.stderr, "s3://seed/reg")
    assert client.list_objects_v2(Bucket="mirror", Prefix="fresh/")["KeyCount"] == 0
    proof = _verify(source, dest, src=wrong)
    assert proof.returncode == 1, proof.stderr + proof.stdout
    assert "cannot verify: " + hint in proof.stderr
    assert _suggested(proof.stderr, "s3://seed/reg")
    # the mirror's side too: verify of a mirror root a typo away from the seeded one
    _replicate_all(source, "s3://mirror/named")
    typo = _verify(source, "s3://mirror/naemd")
    assert typo.returncode == 1, typo.stderr + typo.stdout
    assert _suggested(typo.stderr, "s3://mirror/named")


def _suggested(said: str, location: str) -> bool:
    """Whether ``said`` names ``location`` among the roots it suggests (other tests of the
    module add roots to the same buckets)."""
    found = re.search(r"did you mean (.*)\?$", said.strip())
    return bool(found) and location in found.group(1).split(" or ")  # type: ignore[union-attr]


def test_verify_of_a_source_with_no_tags_proves_nothing_and_says_so(source: Source) -> None:
    # A nightly verify of a registry with no tag left must not stay green proving nothing.
    dest = "s3://mirror/unproven"
    _replicate_all(source, dest)
    emptied = _emptied(source)
    wrong = _verify(source, dest, src=emptied)
    assert wrong.returncode == 1, wrong.stderr + wrong.stdout
    assert wrong.stderr.strip() == (
        f"s3syncer verify: cannot verify: {emptied} holds no tags, s3://mirror/unproven holds "
        "3: nothing proven (is --source right?)"
    )
    as_json = _verify(source, dest, "--json", src=emptied)
    assert as_json.returncode == 1
    assert json.loads(as_json.stdout)["complete"] is False
    # A registry and a mirror that are both still empty (nothing pushed to a new registry
    # yet, in buckets that hold nothing else) are not an error.
    source.s3.client().create_bucket(Bucket="empty")
    empty = _verify(source, "s3://empty/mirror", src="s3://empty/registry")
    assert empty.returncode == 0, empty.stderr + empty.stdout
    assert "0 tags" in empty.stdout and "; complete" in empty.stdout


def test_a_truncated_events_file_copies_every_tag(source: Source) -> None:
    events = source.tmp / "truncated.json"
    one_event = {"action": "push", "target": {"repository": "team/app", "tag": "v1"}}
    body = {"command": "replicate", "reason": "event", "events": [one_event], "truncated": True}
    events.write_text(json.dumps(body))
    dest = "s3://mirror/truncated"
    result = _tool(
        source, "replicate", "--source", "s3://seed/reg", "--dest", dest, "--events", str(events)
    )
    assert result.returncode == 0, result.stderr + result.stdout
    assert "is marked truncated" in result.stderr
    assert "copying every tag of the source instead" in result.stderr
    assert _verify(source, dest).returncode == 0


@pytest.mark.parametrize("mode", ["stream", "server"])
def test_a_layer_above_64_mib_is_copied_in_parts(source: Source, mode: str) -> None:
    client, layout = source.s3.client(), Layout("big")
    key_of = layout.blob_data
    if not client.list_objects_v2(Bucket="big", Prefix=layout.repositories)["KeyCount"]:
        path = source.tmp / "layer.bin"
        layer = random_file(path, MULTIPART_LAYER)
        put_blob_file(client, "big", layout, path, layer)
        path.unlink()
        put_image(client, "big", layout, "big/app", tags=["v1"], layers=[layer])
    dest = f"s3://mirror/{mode}"
    limit = [f"--{'server-copy' if mode == 'server' else 'stream-put'}-limit", str(PARTS_ABOVE)]
    result = _tool(
        source,
        "replicate",
        "--all",
        "--copy",
        mode,
        *limit,
        "--source",
        "s3://big/big",
        "--dest",
        dest,
    )
    assert result.returncode == 0, result.stderr + result.stdout
    assert ("server-side" if mode == "server" else "streamed") in result.stdout
    tag_key = layout.tag_current_link("big/app", "v1")
    manifest = client.get_object(Bucket="big", Key=tag_key)["Body"].read().decode()
    body = client.get_object(Bucket="big", Key=key_of(manifest))["Body"].read()
    layer_digest = json.loads(body)["layers"][0]["digest"]
    head = client.head_object(Bucket="mirror", Key=Layout(mode).blob_data(layer_digest))
    assert head["ContentLength"] == MULTIPART_LAYER
    assert "-" in head["ETag"], head["ETag"]  # a multipart object's ETag ends in -PARTS
    deep = _verify(source, dest, "--deep", src="s3://big/big")
    assert deep.returncode == 0, deep.stdout + deep.stderr


def _requests(source: Source, dest: str, *flags: str) -> int:
    """Run a server-side ``replicate --all`` of the big image to ``dest``: its S3 requests."""
    result = _tool(
        source,
        "replicate",
        "--all",
        "--copy",
        "server",
        *flags,
        "--source",
        "s3://big/big",
        "--dest",
        dest,
    )
    assert result.returncode == 0, result.stderr + result.stdout
    found = re.search(r"(\d+) S3 requests", result.stdout)
    assert found, result.stdout
    return int(found.group(1))


def test_below_the_limit_a_server_copy_is_one_copy_object(source: Source) -> None:
    client, layout = source.s3.client(), Layout("big")
    if not client.list_objects_v2(Bucket="big", Prefix=layout.repositories)["KeyCount"]:
        test_a_layer_above_64_mib_is_copied_in_parts(source, "server")
    parts = _requests(source, "s3://mirror/parts", "--server-copy-limit", str(PARTS_ABOVE))
    whole = _requests(source, "s3://mirror/whole")
    # 2 UploadPartCopy between CreateMultipartUpload and Complete, against one CopyObject
    assert parts - whole >= 3, (parts, whole)
    deep = _verify(source, "s3://mirror/whole", "--deep", src="s3://big/big")
    assert deep.returncode == 0, deep.stdout + deep.stderr


def test_below_the_limit_a_streamed_layer_is_one_put(source: Source) -> None:
    client, layout = source.s3.client(), Layout("big")
    if not client.list_objects_v2(Bucket="big", Prefix=layout.repositories)["KeyCount"]:
        test_a_layer_above_64_mib_is_copied_in_parts(source, "stream")
    dest = "s3://mirror/one-put"
    result = _tool(
        source, "replicate", "--all", "--copy", "stream", "--source", "s3://big/big", "--dest", dest
    )
    assert result.returncode == 0, result.stderr + result.stdout
    big = [o for o in client.list_objects_v2(Bucket="mirror", Prefix="one-put/")["Contents"]]
    layer = max(big, key=lambda o: o["Size"])
    assert layer["Size"] == MULTIPART_LAYER
    assert "-" not in layer["ETag"], layer["ETag"]  # one PutObject: no -PARTS suffix
    deep = _verify(source, dest, "--deep", src="s3://big/big")
    assert deep.returncode == 0, deep.stdout + deep.stderr


def test_a_sha512_layer_is_read_from_the_source_once(source: Source) -> None:
    """No checksum header carries a sha512 digest. As one PutObject over http, botocore would
    read the layer to compute a CRC32, rewind and read it again to send it."""
    client, data = source.s3.client(), os.urandom(3 * 1024 * 1024)
    wide: dict[str, Any] = {
        "digest": "sha512:" + hashlib.sha512(data).hexdigest(),
        "size": len(data),
    }
    usual: dict[str, Any] = {
        "digest": "sha256:" + hashlib.sha256(data).hexdigest(),
        "size": len(data),
    }
    source_requests = {}
    for root, layer in (("wide", wide), ("usual", usual)):
        layout = Layout(root)
        client.put_object(Bucket="seed", Key=layout.blob_data(layer["digest"]), Body=data)
        put_image(client, "seed", layout, "team/wide", tags=["v1"], layers=[layer])
        src, dest = f"s3://seed/{root}", f"s3://mirror/{root}"
        result = _tool(
            source, "replicate", "--all", "--copy", "stream", "--source", src, "--dest", dest
        )
        assert result.returncode == 0, result.stderr + result.stdout
        found = re.search(r"\((\d+) to the source\)", result.stdout)
        assert found, result.stdout
        source_requests[root] = int(found.group(1))
        deep = _verify(source, dest, "--deep", src=src)
        assert deep.returncode == 0, deep.stdout + deep.stderr
    # the same image but for its layer's digest: the same reads of the source
    assert source_requests["wide"] == source_requests["usual"], source_requests


@pytest.mark.parametrize(
    ("size", "flags"),
    [(1024 * 1024, []), (12 * 1024 * 1024, ["--stream-put-limit", str(5 * 1024 * 1024)])],
    ids=["one-put", "parts"],
)
def test_a_source_blob_that_is_not_its_digest_is_never_written(
    source: Source, size: int, flags: list[str]
) -> None:
    """A corrupt source layer: the copy fails naming it, the mirror gets neither it nor the tag."""
    client, root = source.s3.client(), f"bad-{size}"
    layout = Layout(root)
    layer = put_blob(client, "seed", layout, os.urandom(size))
    tampered = bytearray(
        client.get_object(Bucket="seed", Key=layout.blob_data(layer["digest"]))["Body"].read()
    )
    tampered[size // 2] ^= 0xFF  # same size, one byte off: only the digest tells
    client.put_object(Bucket="seed", Key=layout.blob_data(layer["digest"]), Body=bytes(tampered))
    put_image(client, "seed", layout, "team/bad", tags=["v1"], layers=[layer])
    dest = f"s3://mirror/{root}"
    result = _tool(
        source, "replicate", "--all", "--copy", "stream", *flags,
        "--source", f"s3://seed/{root}", "--dest", dest,
    )  # fmt: skip
    assert result.returncode == 1, result.stderr + result.stdout
    assert f"blob {layer['digest']}" in result.stderr, result.stderr
    assert "team/bad:v1: not updated" in result.stderr, result.stderr
    mirror = Layout(root)
    listed = client.list_objects_v2(Bucket="mirror", Prefix=f"{root}/").get("Contents", [])
    keys = {o["Key"] for o in listed}
    assert mirror.blob_data(layer["digest"]) not in keys
    assert mirror.tag_current_link("team/bad", "v1") not in keys
    uploads = client.list_multipart_uploads(Bucket="mirror", Prefix=f"{root}/")
    assert not uploads.get("Uploads"), uploads  # an abandoned upload is aborted, not left behind


def _with_foreign_layer(layout: Path, tag: str) -> tuple[str, str]:
    """Give image ``tag`` a first layer that only its URL serves, as Windows base images have.

    Returns the new manifest's digest and the foreign layer's: skopeo pushes no such layer.
    """
    blobs = layout / "blobs/sha256"
    top = json.loads((layout / "index.json").read_text())
    entry = next(m for m in top["manifests"] if m["annotations"][_REF_NAME_ANNOTATION] == tag)
    manifest = json.loads((blobs / entry["digest"].removeprefix("sha256:")).read_bytes())
    foreign = _write_blob(blobs, b"a base layer that is fetched from its URL")
    manifest["layers"].insert(
        0,
        {
            "mediaType": "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip",
            **foreign,
            "urls": ["https://example.com/base-layer.tar.gz"],
        },
    )
    entry.update(_write_blob(blobs, _canonical_json(manifest)))
    (layout / "index.json").write_text(json.dumps(top))
    return str(entry["digest"]), str(foreign["digest"])


def test_a_foreign_layer_the_source_never_had_is_no_gap(source: Source) -> None:
    """Neither the source nor the mirror has a foreign layer, nor its layer link: the tag is
    served all the same, so verify calls it complete."""
    layout = source.tmp / "foreign-layout"
    make_oci_layout(layout, tag="win", payload=b"on top of a foreign layer")
    digest, foreign = _with_foreign_layer(layout, "win")
    allow = {"manifests": {"urls": {"allow": ["^https://"]}}}
    with run_s3_registry(
        source.tmp / "foreign-reg", source.s3, "seed", root="foreign", validation=allow
    ) as reg:
        skopeo_push(layout, reg.addr, "win/app:v1", src_tag="win")
    client, seed = source.s3.client(), Layout("foreign")
    assert "Contents" not in client.list_objects_v2(Bucket="seed", Prefix=seed.blob_data(foreign))

    dest, src = "s3://mirror/foreign", "s3://seed/foreign"
    seeded = _tool(source, "replicate", "--all", "--source", src, "--dest", dest)
    assert seeded.returncode == 0, seeded.stderr + seeded.stdout
    verified = _verify(source, dest, src=src)
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert verified.stdout.splitlines()[-1].endswith("; complete")
    with run_s3_registry(source.tmp / "foreign-mirror", source.s3, "mirror", root="foreign") as dst:
        raw = subprocess.run(
            [tool("skopeo"), "inspect", "--raw", "--tls-verify=false", "--no-creds",
             f"docker://{dst.addr}/win/app:v1"],
            capture_output=True, timeout=60, check=True,
        ).stdout  # fmt: skip
    assert "sha256:" + hashlib.sha256(raw).hexdigest() == digest

    # a layer the mirror lacks is still a gap: the other layer's link
    layer = json.loads(raw)["layers"][1]["digest"]
    client.delete_object(Bucket="mirror", Key=Layout("foreign").layer_link("win/app", layer))
    broken = _verify(source, dest, src=src)
    assert broken.returncode == 1
    assert broken.stdout.splitlines()[0] == f"win/app:v1: layer link {layer}"


def test_a_tag_moved_during_a_seed_keeps_what_its_push_wrote(source: Source) -> None:
    """The seed reads every tag first and writes them last. A tag pushed in between is mirrored
    by the daemon's own run for its event; the seed must not put the older digest back after
    it, where no event would ever come to correct it."""
    client, layout = source.s3.client(), Layout("race")
    path = source.tmp / "race-layer.bin"
    layer = random_file(path, MULTIPART_LAYER)  # copied in parts: the seed is seen mid-copy
    put_blob_file(client, "seed", layout, path, layer)
    path.unlink()
    put_image(client, "seed", layout, "team/big", tags=["v1"], layers=[layer])
    old = put_image(client, "seed", layout, "team/app", tags=["v1"], layers=[
        put_blob(client, "seed", layout, b"the image v1 was when the seed began")
    ])  # fmt: skip
    src, dest = "s3://seed/race", "s3://mirror/race"
    base = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "S3SYNCER_"))}
    seed = subprocess.Popen(
        [sys.executable, "-m", "s3syncer", "replicate", "--all", "--copy", "stream",
         "--stream-put-limit", str(5 * 1024 * 1024), "--jobs", "1",
         "--source", src, "--dest", dest],
        env={**base, **source.s3.env("source"), **source.s3.env("dest")},
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        wait_until(
            lambda: bool(
                client.list_multipart_uploads(Bucket="mirror", Prefix="race/").get("Uploads")
            ),
            timeout=60,
            message="the seed never started copying the large layer",
        )
        seed.send_signal(signal.SIGSTOP)  # mid-copy: past reading the tags, before writing them
        new = put_image(client, "seed", layout, "team/app", tags=["v1"], layers=[
            put_blob(client, "seed", layout, b"the image v1 was pushed as during the seed")
        ])  # fmt: skip
        push = {"kind": "manifest", "repository": "team/app", "tag": "v1", "digest": new}
        events = source.tmp / "race-events.json"
        events.write_text(json.dumps({"events": [{"action": "push", "target": push}]}))
        pushed = _tool(
            source, "replicate", "--source", src, "--dest", dest, "--events", str(events)
        )
        assert pushed.returncode == 0, pushed.stderr + pushed.stdout
        seed.send_signal(signal.SIGCONT)
        out, err = seed.communicate(timeout=300)
    finally:
        if seed.poll() is None:
            seed.kill()
            seed.wait()
    assert seed.returncode == 0, err + out
    assert "team/app:v1: moved in the source during the run" in err
    current = client.get_object(
        Bucket="mirror", Key=Layout("race").tag_current_link("team/app", "v1")
    )
    assert current["Body"].read().decode() == new != old
    assert _verify(source, dest, src=src).returncode == 0


def test_verify_tells_an_unreadable_tag_from_a_missing_one(source: Source) -> None:
    dest, client, layout = "s3://mirror/garbled", source.s3.client(), Layout("garbled")
    _replicate_all(source, dest)
    key = layout.tag_current_link("team/app", "v1")
    client.put_object(Bucket="mirror", Key=key, Body=b"not a digest")
    client.delete_object(Bucket="mirror", Key=layout.tag_current_link("team/app", "v2"))
    lines = _verify(source, dest).stdout.splitlines()[:-1]
    assert lines == [
        f"team/app:v1: tag (cannot read s3://mirror/{key}: LayoutError: not a valid digest: "
        f"'not a digest'; source has {source.tags['team/app:v1']})",
        f"team/app:v2: tag (no current/link; source has {source.tags['team/app:v2']})",
    ]
    _replicate_all(source, dest)  # --all rewrites a link that does not hold the digest
    assert _verify(source, dest).returncode == 0


def test_a_repeat_pass_with_a_state_dir_costs_listings_alone(source: Source) -> None:
    """The closure cache ($S3SYNCER_STATE_DIR): what a manifest references and which digest a
    link holds never change, so a repeat full pass and a warm verify read no link and no
    manifest: their requests are the listings, however many tags."""
    dest, state = "s3://mirror/cached", source.tmp / "state"
    env = {"S3SYNCER_STATE_DIR": str(state)}
    cold = _tool(source, "replicate", "--all", "--source", "s3://seed/reg", "--dest", dest, env=env)
    assert cold.returncode == 0, cold.stderr + cold.stdout
    assert (state / "closures.sqlite3").exists()
    warm = _tool(source, "replicate", "--all", "--source", "s3://seed/reg", "--dest", dest, env=env)
    assert warm.returncode == 0, warm.stderr + warm.stdout
    assert " 0 blobs copied" in warm.stdout and " 0 links written" in warm.stdout
    # one look at the source's root, then repositories/ and blobs/ of both sides
    assert re.search(r", 5 S3 requests \(3 to the source\); ok$", warm.stdout.strip()), warm.stdout
    for _ in range(2):  # the first leaves the sweep's marker, the second sweeps
        swept = _tool(source, "replicate", "--all", "--delete", "--source", "s3://seed/reg",
                      "--dest", dest, env=env)  # fmt: skip
        assert swept.returncode == 0, swept.stderr + swept.stdout
    # and with --delete: the records of kept deletes, the sweep's marker read and written
    assert re.search(r", 8 S3 requests \(3 to the source\); ok$", swept.stdout.strip()), (
        swept.stdout
    )
    proof = _tool(source, "verify", "--source", "s3://seed/reg", "--dest", dest, env=env)
    assert proof.returncode == 0, proof.stdout + proof.stderr
    # both roots looked at, four listings, and the mirror's records of kept deletes
    assert ", 7 S3 requests; complete" in proof.stdout, proof.stdout
    # the cache only ever saves reads: a garbled one is rebuilt, and the run is right
    (state / "closures.sqlite3").write_bytes(b"not a database" * 100)
    rebuilt = _tool(source, "verify", "--source", "s3://seed/reg", "--dest", dest, env=env)
    assert rebuilt.returncode == 0, rebuilt.stdout + rebuilt.stderr
    # the same proof: a blob corrupted in the mirror is found by its ETag, cache or not
    layer = _layer_of(source, "one")
    client, key = source.s3.client(), Layout("cached").blob_data(layer)
    size = client.head_object(Bucket="mirror", Key=key)["ContentLength"]
    client.put_object(Bucket="mirror", Key=key, Body=b"y" * size)
    broken = _tool(source, "verify", "--source", "s3://seed/reg", "--dest", dest, env=env)
    assert broken.returncode == 1, broken.stdout + broken.stderr
    assert f"team/app:v1: blob {layer} (its ETag is not the source's" in broken.stdout
