"""The systemd walkthrough and the restore runbook, run from the pages' own text (issue 29).

Every file the operator writes is a fenced block titled with its path on the page
(``docs/walkthroughs/systemd.md``, ``docs/restore.md``); every command a block titled with
what it does. The test writes the files and runs the commands as written, through one small
:class:`Host` mapping of what must differ on a test machine, and nothing else:

* the ports (SeaweedFS's S3 port 8333, the registries' 5000 and 5001, s3syncer's 9999) become
  free ones, since other tests run on this machine at the same time;
* ``/etc/``, ``/var/lib/``, ``/var/tmp/`` and ``/opt/s3syncer`` move into a temporary
  directory, and ``/run/credentials/s3syncer.service/`` becomes the ``/etc/s3syncer/`` it is
  copied from (``LoadCredential=``: no systemd runs the service here);
* the images pushed from Docker Hub become local OCI layouts (no Internet here).

``systemctl`` lines are what the test does itself: it starts each unit's ``ExecStart``
(mapped) as a process, and stops it. The real tools run: SeaweedFS (with the page's own
``s3.json`` identities), Debian's ``docker-registry``, ``skopeo``,
``systemd-analyze verify`` on the page's units after the page's install into ``/opt/s3syncer``
(a temporary prefix), ``s3syncer serve`` from that install. The page's one ``replicate``
command is seen doing both of its jobs: the push's event, and the full pass at start that
finds a push whose notification was lost.
"""

from __future__ import annotations

import contextlib
import json
import re
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

import pytest

from deployment_files import page_section, titled_blocks
from registry_harness import make_oci_layout, require_tools
from s3_harness import S3Server, run_seaweedfs
from waiting import free_port, wait_until
from walkthrough_host import Host, assert_pulled_as_pushed, exec_start

pytestmark = [pytest.mark.integration, pytest.mark.slow]

WALKTHROUGH = "walkthroughs/systemd.md"
RESTORE = "restore.md"
IMAGE = "docker://docker.io/library/busybox:1.36"  # the page's image, from Docker Hub
LOST_IMAGE = "docker://docker.io/library/alpine:3.20"  # the push whose notification is lost
DEBIAN_REGISTRY_EXEC = "/usr/bin/docker-registry serve /etc/docker/registry/config.yml"
TOKEN_HEADER = "Authorization"


@pytest.fixture(scope="module")
def install(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The page's install into /opt/s3syncer, run as written into a temporary prefix."""
    require_tools()
    prefix = tmp_path_factory.mktemp("opt") / "s3syncer"
    block = titled_blocks(WALKTHROUGH)["Install the registry, skopeo and s3syncer"]
    [line] = [line for line in block.splitlines() if "/opt/s3syncer" in line]
    host = Host(Path("/nonexistent"), {"/opt/s3syncer": str(prefix)})
    host.run(line)  # the apt-get line: the test machine has the packages (require_tools)
    return prefix


@contextlib.contextmanager
def walkthrough(tmp_path: Path, install: Path) -> Iterator[tuple[Host, S3Server, dict[str, Path]]]:
    """The systemd walkthrough, run from its page: returns the host, the store and the images
    pushed (``repo:tag`` -> OCI layout), with every process still running."""
    blocks = titled_blocks(WALKTHROUGH)
    identities = json.loads(blocks["/etc/seaweedfs/s3.json"])["identities"]
    images = {"team/app:v1": make_oci_layout(tmp_path / "image-v1", payload=b"walkthrough v1")}
    with run_seaweedfs(
        tmp_path / "weed", ["registry", "registry-mirror"], identities=identities
    ) as server:
        store = server.endpoint.removeprefix("http://")
        root = tmp_path / "host"
        host = Host(
            root,
            {
                "127.0.0.1:8333": store,
                "127.0.0.1:5000": f"127.0.0.1:{free_port()}",
                "127.0.0.1:5001": f"127.0.0.1:{free_port()}",
                "127.0.0.1:9999": f"127.0.0.1:{free_port()}",
                "/run/credentials/s3syncer.service/": f"{root}/etc/s3syncer/",
                "/etc/": f"{root}/etc/",
                "/var/lib/": f"{root}/var/lib/",
                "/var/tmp/": f"{root}/var/tmp/",
                "/opt/s3syncer": str(install),
                IMAGE: f"oci:{images['team/app:v1']}:v1",
            },
        )
        try:
            written = host.write_files(blocks)
            assert {
                "/etc/docker/registry/config.yml",
                "/etc/docker/registry/mirror.yml",
                "/etc/s3syncer/config.yaml",
                "/etc/s3syncer/token",
                "/etc/s3syncer/aws-config",
                "/etc/systemd/system/s3syncer.service",
                "/etc/systemd/system/s3syncer.service.d/credentials.conf",
                "/etc/systemd/system/docker-registry-mirror.service",
            } <= set(written), written
            for directory in ("var/lib", "var/tmp"):  # there on every host
                (host.root / directory).mkdir(parents=True, exist_ok=True)

            # The checks of "Protect the secrets, check and start everything", as written.
            outputs = host.run_block(blocks["Protect the secrets, check and start everything"])
            assert any("OK, 2 commands" in out and "auth: token required" in out for out in outputs)
            verify = host.run(
                "systemd-analyze verify docker-registry-mirror.service s3syncer.service 2>&1"
            )
            assert verify.stdout == "", verify.stdout  # verify exits 0 even on a warning

            # systemctl restart docker-registry, enable --now docker-registry-mirror s3syncer
            mirror_unit = blocks["/etc/systemd/system/docker-registry-mirror.service"]
            s3syncer_unit = blocks["/etc/systemd/system/s3syncer.service"]
            host.start("registry", DEBIAN_REGISTRY_EXEC, "http://127.0.0.1:5000/v2/")
            host.start("mirror", exec_start(mirror_unit), "http://127.0.0.1:5001/v2/")
            host.start("s3syncer", exec_start(s3syncer_unit), "http://127.0.0.1:9999/ready")
            # runOnStart: replicate's full pass of the still empty registry, over before the
            # push (a human's few seconds), so that the push's run is the one that copies it
            wait_full_pass(host, blocks["Look at the last run"], "startup")

            host.run_block(blocks["Push an image"])
            wait_mirrored(host, blocks["Look at the last run"], runs_with_events=1)
            host.run_block(blocks["Pull it from the mirror"])
            assert_pulled_as_pushed(host.path("/var/tmp/app-v1"), images["team/app:v1"])
            yield host, server, images
        finally:
            host.stop_all()


def replicate_status(host: Host, status_block: str) -> dict[str, Any]:
    """``replicate``'s entry of the status the page's status command prints."""
    status = json.loads(host.run_block(status_block)[0])
    [replicate] = [c for c in status["commands"] if c["name"] == "replicate"]
    return cast(dict[str, Any], replicate)


def wait_mirrored(host: Host, status_block: str, *, runs_with_events: int) -> None:
    """Until the page's status command shows ``replicate`` succeeded on that many events."""

    def done() -> bool:
        replicate = replicate_status(host, status_block)
        runs = [r for r in replicate["recentRuns"] if r["reason"] == "event"]
        failed = [r for r in runs if not r["ok"]]
        assert not failed, replicate
        return len(runs) >= runs_with_events and replicate["state"] == "idle"

    wait_until(done, timeout=60, interval=0.5, message="replicate did not run on the push")


def wait_full_pass(host: Host, status_block: str, reason: str) -> dict[str, Any]:
    """``replicate``'s entry once a run of this daemon for ``reason`` ended with a full pass."""

    def done() -> dict[str, Any] | None:
        replicate = replicate_status(host, status_block)
        last, full_pass = replicate["lastRun"], replicate["lastFullPass"]
        ended = last is not None and not last["beforeRestart"] and last["reason"] == reason
        if not (ended and replicate["state"] == "idle" and full_pass is not None):
            return None
        assert last["ok"] and full_pass["runId"] == last["runId"], replicate
        return replicate

    return wait_until(
        done, timeout=60, interval=0.5, message=f"no full pass for {reason} (replicate)"
    )


def test_the_systemd_walkthrough_mirrors_a_push_to_the_mirror_registry(
    tmp_path: Path, install: Path
) -> None:
    """Push to the registry, see it mirrored by replicate after its full pass at start, pull it
    from the mirror registry; what the delete paths say: Distribution 2.8 answers a DELETE by
    tag 400 DIGEST_INVALID; and a push whose notification is lost (s3syncer down, the registry
    restarted) is found by the same command's full pass at the next start."""
    with walkthrough(tmp_path, install) as (host, _, _):
        log = (host.root / "s3syncer.log").read_text()
        said = page_section(WALKTHROUGH, "6. Push, see it mirrored, pull it from the mirror")
        quoted = re.findall(r"`(replicate: run [^`]+)`", said)
        assert len(quoted) == 4, said
        for line in quoted:  # the log lines the page quotes are the log's
            assert line in log, f"{line!r} not in the log:\n{log}"
        assert "s3syncer replicate: 1 event, 1 manifest (1 copied)," in log, log
        assert "; ok\n" in log, log

        url = host.text("http://127.0.0.1:5000/v2/team/app/manifests/v1")
        request = urllib.request.Request(url, method="DELETE")
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(request, timeout=10)
        assert refused.value.code == 400
        assert json.loads(refused.value.read())["errors"][0]["code"] == "DIGEST_INVALID"

        # 7. a lost notification: s3syncer stopped, a push, the registry restarted (its queue
        # of undelivered notifications gone), s3syncer started; the systemctl lines are ours
        blocks = titled_blocks(WALKTHROUGH)
        status = blocks["Look at the last run"]
        lost = make_oci_layout(tmp_path / "image-v2", payload=b"walkthrough v2, never announced")
        host.mapping[LOST_IMAGE] = f"oci:{lost}:v1"
        host.stop("s3syncer")
        host.run_block(blocks["Lose a notification"])
        host.stop("registry")
        host.start("registry", DEBIAN_REGISTRY_EXEC, "http://127.0.0.1:5000/v2/")
        unit = exec_start(blocks["/etc/systemd/system/s3syncer.service"])
        host.start("s3syncer", unit, "http://127.0.0.1:9999/ready")
        replicate = wait_full_pass(host, status, "startup")
        assert replicate["lastFullPass"]["tags"]["repaired"] == 1, replicate  # team/app:v2
        said = page_section(WALKTHROUGH, "7. A lost notification, found by the full pass")
        [line] = re.findall(r"`(s3syncer replicate: run for [^`]+)`", said)
        assert line in (host.root / "s3syncer.log").read_text()
        assert '`"repaired": 1`' in said
        host.run_block(blocks["Pull the lost push from the mirror"])
        assert_pulled_as_pushed(host.path("/var/tmp/app-v2"), lost)

        # a full pass asked for by hand: nothing lost since, nothing to repair
        host.run_block(blocks["Ask for a full pass now"])
        replicate = wait_full_pass(host, status, "manual")
        assert replicate["lastFullPass"]["tags"]["repaired"] == 0, replicate
        assert '`"reason": "manual"`' in said and '`"repaired": 0`' in said
        # since the restart: the start's full pass and this one, no event run: the push's
        # notification really was lost, and the full pass alone mirrored it
        assert replicate["runs"] == 2, replicate


def delete_bucket(server: S3Server, bucket: str) -> None:
    client = server.client()
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket):
        keys = [{"Key": item["Key"]} for item in page.get("Contents", [])]
        if keys:
            client.delete_objects(Bucket=bucket, Delete={"Objects": keys})  # type: ignore[typeddict-item]
    client.delete_bucket(Bucket=bucket)


def test_the_restore_runbook_restores_every_tag_from_the_mirror(
    tmp_path: Path, install: Path
) -> None:
    """The source bucket lost; the mirror verified, served, made the new source; a new mirror
    seeded with replicate --all; every tag pulls bit for bit as pushed; pushes resume."""
    with walkthrough(tmp_path, install) as (host, server, images):
        delete_bucket(server, "registry")
        blocks = titled_blocks(RESTORE)
        walkthrough_blocks = titled_blocks(WALKTHROUGH)

        # 1. systemctl stop docker-registry s3syncer
        assert host.run_block(blocks["Stop the registry and s3syncer"]) == []
        host.stop("registry", "s3syncer")

        # 2. the mirror, verified on its own
        [out] = host.run_block(blocks["Verify the mirror on its own"])
        assert "complete" in out.splitlines()[-1], out

        # 3. every tag pulled from the mirror registry, bit for bit
        host.run_block(blocks["Pull every tag from the mirror"])
        for ref, layout in images.items():
            repo, tag = ref.split(":")
            assert_pulled_as_pushed(host.path(f"/var/tmp/restore-check/{repo}/{tag}"), layout)

        # 4. the mirror made the new source, a new mirror bucket, the new files
        written = host.write_files(blocks)
        assert set(written) == {
            "/etc/docker/registry/config.yml",
            "/etc/docker/registry/mirror.yml",
            "/etc/s3syncer/config.yaml",
        }
        host.run_block(blocks["Create the new mirror bucket"])

        # 5. seeded, verified, started again
        seed, proof = host.run_block(blocks["Seed the new mirror"])
        assert "ok" in seed.splitlines()[-1] and "complete" in proof.splitlines()[-1], seed + proof
        assert host.run_block(blocks["Start the registry, the mirror registry and s3syncer"]) == []
        host.stop("mirror")
        mirror_unit = walkthrough_blocks["/etc/systemd/system/docker-registry-mirror.service"]
        s3syncer_unit = walkthrough_blocks["/etc/systemd/system/s3syncer.service"]
        host.start("registry", DEBIAN_REGISTRY_EXEC, "http://127.0.0.1:5000/v2/")
        host.start("mirror", exec_start(mirror_unit), "http://127.0.0.1:5001/v2/")
        host.start("s3syncer", exec_start(s3syncer_unit), "http://127.0.0.1:9999/ready")

        # The restored registry serves every tag, and takes a push that reaches the new mirror.
        v2 = make_oci_layout(tmp_path / "image-v2", payload=b"after the restore")
        images["team/app:v2"] = v2
        push = walkthrough_blocks["Push an image"].replace(IMAGE, f"oci:{v2}:v1")
        host.run_block(push.replace("team/app:v1", "team/app:v2"))
        # the run history survives the restart (stateDir): the walkthrough's run, then this one
        wait_mirrored(host, walkthrough_blocks["Look at the last run"], runs_with_events=2)
        for ref, layout in images.items():
            for name, registry in (("registry", "127.0.0.1:5000"), ("mirror", "127.0.0.1:5001")):
                pulled = f"/var/tmp/after/{name}/{ref.replace(':', '/')}"
                host.path(pulled).parent.mkdir(parents=True, exist_ok=True)
                host.run(
                    f"skopeo copy --src-tls-verify=false docker://{registry}/{ref} dir:{pulled}"
                )
                assert_pulled_as_pushed(host.path(pulled), layout)
        proof = host.run_block(blocks["Seed the new mirror"])[1]
        assert "complete" in proof.splitlines()[-1], proof
