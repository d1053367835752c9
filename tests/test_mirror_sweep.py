"""The mirror sheds what nothing references, against a real registry on SeaweedFS and skopeo.

A full pass with ``--delete`` removes the blobs and layer links that no revision left in the
mirror reaches, once older than the previous full pass, and the revisions that the source
dropped and no mirror tag reaches, once their window has passed. A kept tag keeps all of its
closure, and a blob another repository still uses stays.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from mirror_world import World, mirror_world
from registry_harness import make_oci_layout, manifest_digest, skopeo_delete
from s3syncer.replicate.layout import Layout, parse_manifest
from waiting import wait_until

pytestmark = [pytest.mark.integration, pytest.mark.slow]

ROOT = "swept"


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    with mirror_world(tmp_path_factory.mktemp("sweep")) as made:
        yield made


def _full_pass(world: World, *extra: str, root: str = ROOT) -> subprocess.CompletedProcess[str]:
    run = world.replicate(root, [], "reconcile", "--delete", *extra)
    assert run.returncode == 0, run.stderr + run.stdout
    return run


def _keys(world: World, root: str = ROOT) -> dict[str, float]:
    """The mirror's keys under ``root``, with their LastModified (POSIX seconds)."""
    client, found = world.s3.client(), {}
    pages = client.get_paginator("list_objects_v2").paginate(Bucket="dst", Prefix=f"{root}/")
    for page in pages:
        found.update({o["Key"]: o["LastModified"].timestamp() for o in page.get("Contents", [])})
    return found


def _plant(world: World, key: str, body: bytes) -> float:
    """Write ``key`` into the mirror as another writer would; its LastModified."""
    client = world.s3.client()
    client.put_object(Bucket="dst", Key=key, Body=body)
    return float(client.head_object(Bucket="dst", Key=key)["LastModified"].timestamp())


def _store_clock_past(world: World, instant: float) -> None:
    """Wait until the store's clock (an object's LastModified) is past ``instant``: an object
    written after this is strictly younger, in the store's one-second resolution."""
    wait_until(
        lambda: _plant(world, "clock", b"tick") > instant,
        timeout=10,
        message="the store's clock did not move",
    )


def _layer_links(world: World, repo: str) -> set[str]:
    prefix = Layout(ROOT).layer_link(repo, "sha256:" + "0" * 64).split("/_layers/")[0]
    return {k for k in _keys(world) if k.startswith(f"{prefix}/_layers/")}


def test_the_sweep_removes_only_what_nothing_references_and_what_is_older_than_the_last_pass(
    world: World,
) -> None:
    layout = Layout(ROOT)
    gone = world.push("team/sweep:gone", b"an image the source deletes")
    stays = world.push("team/sweep:stays", b"an image the source keeps")
    shared = world.push("other/copy:v1", b"an image the source deletes")  # gone's, elsewhere
    assert shared == gone
    first = _full_pass(world)
    assert "sweep: the first full pass of this mirror" in first.stderr
    links_of_sweep = _layer_links(world, "team/sweep")
    blobs_before = {k for k in _keys(world) if "/blobs/" in k}

    # garbage another writer left: a blob and a layer link that nothing references
    junk = os.urandom(64)
    junk_digest = "sha256:" + hashlib.sha256(junk).hexdigest()
    junk_blob, junk_link = (
        layout.blob_data(junk_digest),
        layout.layer_link("team/sweep", junk_digest),
    )
    planted = max(_plant(world, junk_blob, junk), _plant(world, junk_link, junk_digest.encode()))
    _store_clock_past(world, planted)
    skopeo_delete(world.addr, "team/sweep:gone")

    # the garbage is younger than the previous pass: it stays; the deleted tag is kept
    second = _full_pass(world)
    assert "team/sweep:gone: deleted in the source, kept until " in second.stderr
    assert {junk_blob, junk_link} <= set(_keys(world))
    in_flight = layout.blob_data("sha256:" + hashlib.sha256(b"in flight").hexdigest())
    _plant(world, in_flight, b"in flight")  # a copy another writer has not linked yet

    # now it is older than the previous pass: swept; the copy in flight is younger: it stays
    third = _full_pass(world)
    assert "1 blob (64 bytes) and 1 layer link swept" in third.stdout, third.stdout
    remaining = _keys(world)
    assert junk_blob not in remaining and junk_link not in remaining
    assert in_flight in remaining
    assert blobs_before <= set(remaining)  # the kept tag's closure is whole
    assert _layer_links(world, "team/sweep") == links_of_sweep
    assert world.mirrored(ROOT, "team/sweep:gone") == gone  # the kept tag still pulls

    # the window passes: the tag goes, then its revision (the source dropped it too), then
    # the layer links of team/sweep that served it; its blobs stay, other/copy uses them
    manifest = world.s3.client().get_object(Bucket="dst", Key=layout.blob_data(gone))
    refs = parse_manifest(manifest["Body"].read()).blobs
    links_of_gone = {layout.layer_link("team/sweep", ref.digest) for ref in refs}
    assert links_of_gone < links_of_sweep

    def shed() -> bool:
        _full_pass(world, "--keep-deleted", "1s")
        return not _layer_links(world, "team/sweep") & links_of_gone

    wait_until(shed, timeout=90, message="team/sweep's links for the deleted image stayed")
    assert _layer_links(world, "team/sweep") == links_of_sweep - links_of_gone
    remaining = _keys(world)
    assert layout.revision_link("team/sweep", gone) not in remaining
    assert layout.revision_link("other/copy", gone) in remaining
    assert blobs_before <= set(remaining)  # every blob of gone is other/copy's too
    assert in_flight not in remaining  # older than a previous pass by now, and unreferenced
    assert world.mirrored(ROOT, "team/sweep:gone") is None
    assert world.mirrored(ROOT, "team/sweep:stays") == stays
    assert world.mirrored(ROOT, "other/copy:v1") == shared
    proof = world.verify(ROOT)
    assert proof.returncode == 0, proof.stdout + proof.stderr


def _junk_older_than_a_pass(world: World, root: str, junk: bytes) -> str:
    """A mirror seeded by a full pass, then a blob nothing references written after it (in
    the store's clock): the blob's key."""
    _full_pass(world, root=root)
    junk_blob = Layout(root).blob_data("sha256:" + hashlib.sha256(junk).hexdigest())
    _store_clock_past(world, _plant(world, junk_blob, junk))
    return junk_blob


def test_a_dry_run_sweeps_nothing_and_says_what_it_would(world: World) -> None:
    root = "dry-sweep"
    world.push("team/dry:v1", b"an image in a mirror a dry run sweeps")
    junk_blob = _junk_older_than_a_pass(world, root, b"dry junk")
    _full_pass(world, root=root)  # the pass the junk is older than
    dry = _full_pass(world, "--dry-run", root=root)
    assert f"would sweep {junk_blob}" in dry.stdout
    assert "1 blob (8 bytes) and 0 layer links swept" in dry.stdout
    assert junk_blob in _keys(world, root)
    _full_pass(world, root=root)
    assert junk_blob not in _keys(world, root)


def test_a_revision_whose_references_cannot_be_known_stops_the_sweep(world: World) -> None:
    """A mirror revision whose manifest cannot be read could reference any blob: nothing is
    swept, the run says why, and the next pass without it sweeps."""
    root = "unknown-sweep"
    world.push("team/known:v1", b"an image beside a revision nobody can read")
    junk_blob = _junk_older_than_a_pass(world, root, b"junk beside an unreadable revision")
    missing = "sha256:" + hashlib.sha256(b"a manifest the mirror lacks").hexdigest()
    stray = Layout(root).revision_link("team/known", missing)
    _plant(world, stray, missing.encode())
    _full_pass(world, root=root)
    stopped = _full_pass(world, root=root)
    assert f"sweep: the references of {missing} are unknown" in stopped.stderr, stopped.stderr
    assert "nothing swept" in stopped.stderr
    assert junk_blob in _keys(world, root)
    world.s3.client().delete_object(Bucket="dst", Key=stray)
    swept = _full_pass(world, root=root)
    assert "1 blob (34 bytes) and 0 layer links swept" in swept.stdout, swept.stdout
    assert junk_blob not in _keys(world, root)


def test_a_revision_the_source_has_again_is_no_longer_a_delete_that_waits(world: World) -> None:
    root = "again-sweep"
    digest = world.push("team/again:v1", b"an image deleted, then pushed again")
    world.push("team/again:stays", b"a tag that keeps the source from looking empty")
    _full_pass(world, root=root)
    skopeo_delete(world.addr, "team/again:v1")  # the tag and the revision, by digest
    record = f"{root}/s3syncer/deleted/team/again/_revisions/{digest}"

    def recorded() -> bool:  # the tag's window passes, then its revision waits in turn
        _full_pass(world, "--keep-deleted", "1s", root=root)
        return record in _keys(world, root)

    wait_until(recorded, timeout=60, message="the orphan revision was never recorded")
    assert world.tag_in_mirror(root, "team/again", "v1") is None
    assert world.push("team/again:v2", b"an image deleted, then pushed again") == digest
    again = _full_pass(world, root=root)
    assert record not in _keys(world, root), again.stderr
    assert world.mirrored(root, "team/again:v2") == digest


def test_an_old_blob_that_the_run_links_again_is_not_swept(world: World, tmp_path: Path) -> None:
    """A blob the mirror held with nothing referencing it, that this very run's new tag uses
    (found there, so not copied again): the sweep counts what the run wrote."""
    root = "relinked-sweep"
    payload = b"an image whose layer the mirror already holds"
    image = make_oci_layout(tmp_path / "oci", payload=payload)
    manifest = json.loads((image / "blobs/sha256" / manifest_digest(image)[7:]).read_bytes())
    layer = manifest["layers"][0]["digest"]
    world.push("team/relinked:other", b"a tag that keeps the source from looking empty")
    layer_blob = _junk_older_than_a_pass(
        world, root, (image / "blobs/sha256" / layer[7:]).read_bytes()
    )
    _full_pass(world, root=root)  # the pass the layer is older than, unreferenced
    digest = world.push("team/relinked:v1", payload)
    linked = _full_pass(world, root=root)
    assert "swept" not in linked.stdout, linked.stdout
    assert layer_blob in _keys(world, root)
    assert world.mirrored(root, "team/relinked:v1") == digest
