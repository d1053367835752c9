"""A garbage journal never wedges the mirror: real registry, skopeo, SeaweedFS and replicate.

Issue 13's "done when": garbage in ``stateDir/replicate.json`` once made every later run
``truncated``, which ``s3syncer replicate`` refused, so no push reached the mirror until
someone deleted the file by hand. Here a real ``s3syncer serve`` runs ``s3syncer replicate``
for a real registry's notifications, starts on a garbage journal, and the next two pushes
must still reach the mirror, after a first run that covered everything (an image pushed
before the daemon ever ran).
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from daemon import Daemon, start_daemon
from registry_harness import make_oci_layout, manifest_digest, require_tools, skopeo_push
from s3_harness import S3Server, run_s3_registry, run_seaweedfs, tool
from s3syncer.replicate.layout import Layout
from waiting import wait_until as wait_for

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

pytestmark = pytest.mark.integration

MIRROR_TIMEOUT = 60.0
"""How long a push may take to reach the mirror: the registry's delivery, the quiet period
and a replicate run, on a loaded machine."""


def _config(state: Path, s3: S3Server) -> str:
    env = {**s3.env("source"), **s3.env("dest")}
    args = ["-m", "s3syncer", "replicate", "--source", "s3://src/reg", "--dest", "s3://dst"]
    return (
        f"stateDir: {state}\n"
        "commands:\n"
        f"  - name: replicate\n"
        f"    cmd: {sys.executable}\n"
        f"    args: {json.dumps(args)}\n"
        f"    env: {json.dumps(env)}\n"
        "    delay: 200ms\n"
    )


def _mirrored(client: S3Client, repository: str, tag: str) -> str | None:
    """The digest the mirror's tag points at, or None while it has no such tag."""
    key = Layout().tag_current_link(repository, tag)
    try:
        return client.get_object(Bucket="dst", Key=key)["Body"].read().decode()
    except client.exceptions.NoSuchKey:
        return None


def _wait_mirrored(
    client: S3Client, repository: str, tag: str, digest: str, daemon: Daemon
) -> None:
    wait_for(
        lambda: _mirrored(client, repository, tag) == digest,
        timeout=MIRROR_TIMEOUT,
        message=lambda: f"{repository}:{tag} never reached the mirror; log:\n{daemon.log_text()}",
    )


def _raw_manifest(addr: str, ref: str) -> bytes:
    result = subprocess.run(
        [tool("skopeo"), "--insecure-policy", "inspect", "--raw", "--tls-verify=false",
         "--no-creds", f"docker://{addr}/{ref}"],
        capture_output=True, timeout=60, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr.decode()
    return result.stdout


def test_a_garbage_journal_is_set_aside_and_the_next_two_pushes_reach_the_mirror(
    tmp_path: Path,
) -> None:
    require_tools()
    layout = tmp_path / "layout"
    images = {"seed": b"pushed before the daemon ran", "one": b"first push", "two": b"second"}
    for tag, payload in images.items():
        make_oci_layout(layout, tag=tag, payload=payload)
    digests = {tag: manifest_digest(layout, tag) for tag in images}
    state = tmp_path / "state"
    state.mkdir()
    journal = state / "replicate.json"

    with run_seaweedfs(tmp_path / "s3", ["src", "dst"]) as s3:
        client = s3.client()
        # Pushed while nothing listened: only a run that covers everything copies it.
        with run_s3_registry(tmp_path / "seed-reg", s3, "src", root="reg") as registry:
            skopeo_push(layout, registry.addr, "team/seed:v1", src_tag="seed")
        journal.write_bytes(b'{"version": 1, "events": [{"id": "half a wri')

        with start_daemon(tmp_path, _config(state, s3)) as daemon:
            _wait_mirrored(client, "team/seed", "v1", digests["seed"], daemon)
            notify = f"{daemon.url}/trigger/replicate"
            with run_s3_registry(
                tmp_path / "src-reg", s3, "src", root="reg", notify_url=notify
            ) as registry:
                for tag in ("one", "two"):
                    skopeo_push(layout, registry.addr, f"team/app:{tag}", src_tag=tag)
                    _wait_mirrored(client, "team/app", tag, digests[tag], daemon)
            # Every run that covered the garbage succeeded: the journal is settled, not stuck.
            wait_for(lambda: not journal.exists(), timeout=MIRROR_TIMEOUT)
            log = daemon.log_text()

        # Said once, with the path and where the file went; nothing made up.
        [warning] = [line for line in log.splitlines() if str(journal) in line]
        [aside] = state.glob("replicate.json.corrupt-*")
        assert "is unreadable" in warning and aside.name in warning
        assert aside.read_bytes().startswith(b'{"version": 1, "events": [{"id": "half')
        assert "0 accepted events" not in log and "more were dropped" not in log
        assert "run 1 failed" not in log

        # The mirror serves each image whole, as a registry would to a restore.
        with run_s3_registry(tmp_path / "dst-reg", s3, "dst") as mirror:
            for ref, tag in (("team/seed:v1", "seed"), ("team/app:one", "one"),
                             ("team/app:two", "two")):  # fmt: skip
                manifest = _raw_manifest(mirror.addr, ref)
                assert "sha256:" + hashlib.sha256(manifest).hexdigest() == digests[tag], ref
