"""``s3syncer replicate`` driven by Harbor webhooks, on the real Distribution layout.

Harbor stores images through its embedded Distribution, so its storage has the layout a
Distribution registry with the s3 driver writes. The test pushes images with skopeo to a real
docker-registry on SeaweedFS, posts the Harbor "Default" payloads for those pushes (shaped like
tests/fixtures/harbor/) to a real ``s3syncer serve``, whose command is ``s3syncer replicate``,
and reads the copies back through a second registry on the destination bucket.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from daemon import start_daemon
from registry_harness import make_oci_layout, manifest_digest, require_tools, skopeo_push
from s3_harness import run_s3_registry, run_seaweedfs, tool
from waiting import wait_until

TOKEN = "harbor-auth-header-token"


def harbor_payload(kind: str, repository: str, digest: str, tag: str | None) -> dict[str, Any]:
    """What Harbor posts for an artifact event (tag = the digest when the artifact has none)."""
    namespace, _, name = repository.rpartition("/")
    reference = tag or digest
    separator = ":" if tag else "@"
    return {
        "type": kind,
        "occur_at": 1700000000,
        "operator": "admin",
        "event_data": {
            "resources": [
                {
                    "digest": digest,
                    "tag": reference,
                    "resource_url": f"harbor.example.com/{repository}{separator}{reference}",
                }
            ],
            "repository": {
                "date_created": 1700000000,
                "name": name,
                "namespace": namespace,
                "repo_full_name": repository,
                "repo_type": "private",
            },
        },
    }


def inspect_raw(addr: str, ref: str) -> bytes:
    result = subprocess.run(
        [
            tool("skopeo"),
            "--insecure-policy",
            "inspect",
            "--raw",
            "--tls-verify=false",
            "--no-creds",
            f"docker://{addr}/{ref}",
        ],
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, f"{ref}: {result.stderr.decode()}"
    return result.stdout


@pytest.mark.integration
def test_replicate_from_harbor_events(tmp_path: Path) -> None:
    require_tools()
    layout = tmp_path / "layout"
    make_oci_layout(layout, tag="one", payload=b"pushed through harbor")
    make_oci_layout(layout, tag="two", payload=b"pushed by digest through harbor")
    one, two = manifest_digest(layout, "one"), manifest_digest(layout, "two")
    with (
        run_seaweedfs(tmp_path / "s3", ["src", "dst"]) as s3,
        run_s3_registry(tmp_path / "src-reg", s3, "src") as source,
    ):
        skopeo_push(layout, source.addr, "proj/app:v1", src_tag="one")
        skopeo_push(layout, source.addr, f"proj/app@{two}", src_tag="two")
        env = {**s3.env("source"), **s3.env("dest")}
        command = {
            "name": "replicate",
            "cmd": sys.executable,
            "args": ["-m", "s3syncer", "replicate", "--source", "s3://src", "--dest", "s3://dst"],
            "env": env,
            "delay": "200ms",
            "formats": ["harbor"],
            "events": [{"action": "push"}],
        }
        config = f"auth: {json.dumps({'token': TOKEN})}\ncommands:\n  - {json.dumps(command)}\n"
        headers = {"Content-Type": "application/json", "Authorization": f"Bearer {TOKEN}"}
        with start_daemon(tmp_path, config) as daemon:
            for digest, tag in ((one, "v1"), (two, None)):
                body = json.dumps(harbor_payload("PUSH_ARTIFACT", "proj/app", digest, tag))
                status, _, answer = daemon.post("/trigger/replicate", body.encode(), headers)
                assert (status, json.loads(answer)) == (200, {"accepted": 1, "ignored": 0})

            def command_status() -> dict[str, Any]:
                code, _, body = daemon.get("/status", {"Authorization": f"Bearer {TOKEN}"})
                assert code == 200, body
                [command] = json.loads(body)["commands"]
                return dict(command)

            def finished() -> dict[str, Any] | None:
                now = command_status()
                last = now["lastRun"]
                return last if last and now["state"] == "idle" else None

            last = wait_until(finished, timeout=60, message=lambda: str(command_status()))
            assert last["ok"], last["outputTail"]
            assert "2 events, 2 manifests" in last["outputTail"], last["outputTail"]
        # The destination serves both, by tag and by digest, through a registry of its own.
        with run_s3_registry(tmp_path / "dst-reg", s3, "dst") as mirror:
            assert manifest_sha(inspect_raw(mirror.addr, "proj/app:v1")) == one
            assert manifest_sha(inspect_raw(mirror.addr, f"proj/app@{one}")) == one
            assert manifest_sha(inspect_raw(mirror.addr, f"proj/app@{two}")) == two


def manifest_sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()
