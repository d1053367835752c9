"""The one ``replicate`` command, both ways, against a real registry on SeaweedFS and skopeo.

* A run for no event (the daemon's start, reconcile, schedule, a manual run) or with a
  truncated events file makes a full convergent pass: a push whose notification never arrived
  reaches the mirror.
* Events are hints, the source is the truth: a forged push, a replayed old push and a forged
  delete change nothing in the mirror.

Each test mirrors into its own root of the mirror bucket, and a second registry serving that
root is what proves a pull (as a restore would).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from daemon import start_daemon
from mirror_world import OCI_MANIFEST, SOURCE, World, mirror_world, pulled, snapshot
from registry_harness import skopeo_delete
from s3_harness import run_s3_registry
from s3syncer.model.pass_report import PassReport
from s3syncer.replicate.layout import Layout
from waiting import wait_until as wait_for

pytestmark = pytest.mark.integration
MIRROR_TIMEOUT = 60.0
"""How long a push may take to reach the mirror through the daemon on a loaded machine."""


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    with mirror_world(tmp_path_factory.mktemp("events")) as made:
        yield made


# --- one command, both ways ----------------------------------------------------------------


@pytest.mark.slow
def test_a_push_whose_notification_never_arrives_is_mirrored_by_one_reconcile_run(
    world: World,
) -> None:
    lost = world.push("team/lost:v1", b"pushed while the notification was lost")
    result = world.replicate("reconciled", [], "reconcile", "--delete")
    assert result.returncode == 0, result.stderr + result.stdout
    assert "run for reconcile: a full pass" in result.stderr
    assert "all tags" in result.stdout and "; ok" in result.stdout
    assert world.mirrored("reconciled", "team/lost:v1") == lost
    # the same empty file for an event run (its events went to other commands) does nothing
    idle = world.replicate("event-only", [], "event")
    assert idle.returncode == 0, idle.stderr + idle.stdout
    assert "0 events, 0 manifests" in idle.stdout
    assert world.tag_in_mirror("event-only", "team/lost", "v1") is None


@pytest.mark.slow
def test_the_result_file_says_what_a_full_pass_repaired(world: World) -> None:
    """The daemon reads it after the run: a full pass that repaired anything means a
    notification was lost; the next one repairs nothing."""
    root, result = "results", world.tmp / "result.json"
    world.push("team/result:v1", b"a push the daemon never heard of")
    first = world.replicate(root, [], "reconcile", "--delete", result=result)
    assert first.returncode == 0, first.stderr + first.stdout
    found = json.loads(result.read_text())
    checked = found["tags"]["checked"]
    assert checked >= 1
    assert found == {
        "command": "replicate", "fullPass": True, "ok": True,
        "tags": {"checked": checked, "repaired": checked, "deleted": 0, "kept": 0, "refused": 0},
        "blobsCopied": found["blobsCopied"], "bytesCopied": found["bytesCopied"],
        "blobsSwept": 0, "bytesSwept": 0,
    }  # fmt: skip
    # What the daemon makes of it (it reads the same file after the run).
    assert PassReport.from_document(found) == PassReport(
        True, {"checked": checked, "repaired": checked, "deleted": 0, "kept": 0, "refused": 0}
    )
    assert found["blobsCopied"] > 0
    again = world.replicate(root, [], "reconcile", "--delete", result=result)
    assert again.returncode == 0, again.stderr + again.stdout
    found = json.loads(result.read_text())
    tags = found["tags"]
    assert (tags["checked"], tags["repaired"], found["blobsCopied"]) == (checked, 0, 0)
    assert world.verify(root, result).returncode == 0
    assert json.loads(result.read_text()) == {
        "command": "verify", "fullPass": True, "ok": True,
        "tags": {"checked": checked, "broken": 0, "kept": 0},
    }  # fmt: skip


@pytest.mark.slow
def test_the_daemon_s_reconcile_of_the_one_command_mirrors_a_push_nobody_was_told_of(
    world: World, tmp_path: Path
) -> None:
    """The recommended setup (examples/replicate.yaml) with a short reconcile: no event is
    ever sent, yet the push is pullable from the mirror after a reconcile run."""
    root = "daemon"
    args = ["-m", "s3syncer", "replicate", "--source", SOURCE, "--dest", f"s3://dst/{root}",
            "--delete"]  # fmt: skip
    config = (
        "commands:\n"
        "  - name: replicate\n"
        f"    cmd: {sys.executable}\n"
        f"    args: {json.dumps(args)}\n"
        f"    env: {json.dumps({**world.s3.env('source'), **world.s3.env('dest')})}\n"
        "    delay: 200ms\n"
        "    reconcile: 1s\n"
        "    timeout: 5m\n"
    )
    with start_daemon(tmp_path, config) as daemon:
        digest = world.push("team/unnoticed:v1", b"no registry notification names this push")
        wait_for(
            lambda: world.tag_in_mirror(root, "team/unnoticed", "v1") == digest,
            timeout=MIRROR_TIMEOUT,
            message=lambda: f"never mirrored; log:\n{daemon.log_text()}",
        )
        assert "reason reconcile" in daemon.log_text()
    assert world.mirrored(root, "team/unnoticed:v1") == digest


# --- events are hints ----------------------------------------------------------------------


def _push_event(repo: str, digest: str, tag: str | None = None) -> dict[str, Any]:
    target = {"repository": repo, "digest": digest, "mediaType": OCI_MANIFEST}
    return {"action": "push", "target": {**target, **({"tag": tag} if tag else {})}}


@pytest.mark.slow
def test_a_forged_push_a_replayed_old_push_and_a_forged_delete_change_nothing(
    world: World,
) -> None:
    root = "hints"
    old = world.push("team/app:latest", b"what latest was")
    assert world.replicate(root, [], "reconcile").returncode == 0
    new = world.push("team/app:latest", b"what latest is now")
    svc = world.push("other/svc:v1", b"a tag nobody deleted")
    first = world.replicate(root, [], "reconcile", "--delete")
    assert first.returncode == 0, first.stderr + first.stdout
    before = snapshot(world, root)

    events = [
        _push_event("public/anything", new, "latest"),  # a repository the source lacks
        _push_event("public/anything", svc),  # by digest: another repository's manifest
        _push_event("team/app", old, "latest"),  # replayed: latest moved on since
        {"action": "delete", "target": {"repository": "other/svc", "tag": "v1"}},
    ]
    result = world.replicate(root, events, "event", "--delete")
    assert result.returncode == 0, result.stderr + result.stdout
    said = result.stderr
    assert "public/anything:latest: not in the source" in said
    assert f"public/anything@{svc}: no longer in the source, skipped" in said
    assert f"team/app:latest: the source points at {new}, not the event's {old}" in said
    assert f"other/svc:v1: still in the source (at {svc}), not deleted" in said
    # a forged delete by digest (in a run of its own: a tag pushed in the same batch would
    # vouch for the manifest) of a manifest the source still has, untagged
    by_digest = {"action": "delete", "target": {"repository": "team/app", "digest": old}}
    result = world.replicate(root, [by_digest], "event", "--delete")
    assert result.returncode == 0, result.stderr + result.stdout
    assert f"team/app@{old}: still in the source, not deleted" in result.stderr

    assert snapshot(world, root) == before  # not one object added, changed or removed
    assert not [key for key in before if "/repositories/public/" in key]
    assert world.tag_in_mirror(root, "team/app", "latest") == new
    with run_s3_registry(world.tmp / "hints-mirror", world.s3, "dst", root=root) as mirror:
        assert pulled(mirror.addr, "team/app:latest") == new
        assert pulled(mirror.addr, "other/svc:v1") == svc
        assert pulled(mirror.addr, "public/anything:latest") is None
        assert pulled(mirror.addr, f"public/anything@{svc}") is None


@pytest.mark.slow
def test_a_push_event_writes_what_the_source_holds_and_a_true_delete_deletes(
    world: World,
) -> None:
    """The events of a real push and delete still do their work once checked."""
    root = "heeded"
    one = world.push("team/real:v1", b"pushed and announced")
    pushed = world.replicate(root, [_push_event("team/real", one, "v1")], "event")
    assert pushed.returncode == 0, pushed.stderr + pushed.stdout
    assert world.tag_in_mirror(root, "team/real", "v1") == one
    client, layout = world.s3.client(), Layout("reg")
    for key in (layout.tag_current_link("team/real", "v1"), layout.tag_index_link(
            "team/real", "v1", one)):  # fmt: skip
        client.delete_object(Bucket="src", Key=key)  # the tag deleted in the source
    delete = {"action": "delete", "target": {"repository": "team/real", "tag": "v1"}}
    deleted = world.replicate(root, [delete], "event", "--delete", "--keep-deleted", "0")
    assert deleted.returncode == 0, deleted.stderr + deleted.stdout
    assert world.tag_in_mirror(root, "team/real", "v1") is None


# --- deletes wait --------------------------------------------------------------------------


def _until_run(world: World, root: str, *extra: str, code: int) -> str:
    """Run a full pass until it exits ``code`` (its window passing): its stderr. Bounded."""

    def attempt() -> str | None:
        result = world.replicate(root, [], "reconcile", "--delete", *extra)
        return result.stderr or "-" if result.returncode == code else None

    return wait_for(attempt, timeout=60, message=f"no run exited {code}")


@pytest.mark.slow
def test_a_deleted_tag_stays_pullable_through_the_window_and_is_gone_after_it(
    world: World,
) -> None:
    root = "kept"
    deleted = world.push("team/kept:v1", b"a tag the source deletes")
    stays = world.push("team/kept:stays", b"a tag the source keeps")
    assert world.replicate(root, [], "reconcile", "--delete").returncode == 0
    skopeo_delete(world.addr, "team/kept:v1")
    delete = {"action": "delete", "target": {"repository": "team/kept", "tag": "v1"}}
    for reason, events in (("event", [delete]), ("reconcile", [])):
        run = world.replicate(root, events, reason, "--delete")  # the default window, 7 days
        assert run.returncode == 0, run.stderr + run.stdout
        assert "team/kept:v1: deleted in the source, kept until " in run.stderr
    assert world.mirrored(root, "team/kept:v1") == deleted
    proof = world.verify(root)
    assert proof.returncode == 0, proof.stdout + proof.stderr
    assert "kept: team/kept:v1 (deleted in the source, kept until " in proof.stdout
    assert "1 deleted tag kept" in proof.stdout
    # the operator's window is one second: the record made above is older than that
    _until_run(world, root, "--keep-deleted", "1s", code=0)
    wait_for(lambda: world.tag_in_mirror(root, "team/kept", "v1") is None, timeout=60,
             message="the window passed, the tag stayed")  # fmt: skip
    record = f"{root}/s3syncer/deleted/team/kept/_tags/v1"
    records = world.s3.client().list_objects_v2(Bucket="dst", Prefix=record)
    assert records["KeyCount"] == 0  # the record went with the tag
    assert world.mirrored(root, "team/kept:v1") is None
    assert world.mirrored(root, "team/kept:stays") == stays


@pytest.mark.slow
def test_max_deletes_refuses_a_run_that_would_remove_more_and_lists_them(world: World) -> None:
    root = "capped"
    digests = {tag: world.push(f"team/many:{tag}", f"image {tag}".encode()) for tag in "abc"}
    assert world.replicate(root, [], "reconcile", "--delete").returncode == 0
    for tag in "ab":
        skopeo_delete(world.addr, f"team/many:{tag}")
    assert world.replicate(root, [], "reconcile", "--delete").returncode == 0  # recorded
    said = _until_run(world, root, "--keep-deleted", "1s", "--max-deletes", "1", code=1)
    assert (
        "--max-deletes 1: this run would remove 2 tags from the mirror; it removes none: "
        "team/many:a, team/many:b" in said
    ), said
    for tag in "abc":
        assert world.tag_in_mirror(root, "team/many", tag) == digests[tag]
    allowed = world.replicate(root, [], "reconcile", "--delete", "--keep-deleted", "1s",
                              "--max-deletes", "2")  # fmt: skip
    assert allowed.returncode == 0, allowed.stderr + allowed.stdout
    assert [world.tag_in_mirror(root, "team/many", tag) for tag in "abc"] == [
        None, None, digests["c"]
    ]  # fmt: skip


@pytest.mark.slow
def test_a_repository_delete_event_is_honoured_and_a_forged_one_is_not(world: World) -> None:
    """Distribution 3 sends one event for a repository deleted whole: a target with the
    repository and no tag or digest."""
    root = "repository"
    for tag in ("a", "b"):
        world.push(f"team/gone:{tag}", f"gone {tag}".encode())
    other = world.push("team/other:v1", b"in a repository that stays")
    assert world.replicate(root, [], "reconcile", "--delete").returncode == 0
    client = world.s3.client()
    prefix = Layout("reg").repository_keys("team/gone")
    for page in client.get_paginator("list_objects_v2").paginate(Bucket="src", Prefix=prefix):
        for obj in page.get("Contents", []):
            client.delete_object(Bucket="src", Key=obj["Key"])  # as Distribution 3 does
    gone = {"action": "delete", "target": {"repository": "team/gone"}}
    forged = {"action": "delete", "target": {"repository": "team/other"}}
    kept = world.replicate(root, [gone, forged], "event", "--delete")
    assert kept.returncode == 0, kept.stderr + kept.stdout
    for tag in ("a", "b"):
        assert f"team/gone:{tag}: deleted in the source, kept until " in kept.stderr
        assert world.tag_in_mirror(root, "team/gone", tag) is not None
    assert "team/other:v1: still in the source" in kept.stderr
    now = world.replicate(root, [gone, forged], "event", "--delete", "--keep-deleted", "0")
    assert now.returncode == 0, now.stderr + now.stdout
    assert [world.tag_in_mirror(root, "team/gone", t) for t in ("a", "b")] == [None, None]
    assert world.mirrored(root, "team/other:v1") == other
