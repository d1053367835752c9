"""A source registry on SeaweedFS, a mirror bucket, and the one ``replicate`` command run on
them as the daemon runs it: what the mirror tests of issue 27 share.

Each test mirrors into its own root of the mirror bucket, and a registry serving that root is
what proves a pull (as a restore would).
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from registry_harness import make_oci_layout, manifest_digest, require_tools, skopeo_push
from s3_harness import S3Server, run_s3_registry, run_seaweedfs, tool
from s3syncer.replicate.layout import Layout

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
SOURCE = "s3://src/reg"


@dataclass
class World:
    s3: S3Server
    tmp: Path
    addr: str  # the source registry's, which sends no notification to anyone
    layout: Path

    def push(self, ref: str, payload: bytes) -> str:
        """Push a new image as ``ref`` (``repo:tag``) to the source; its manifest digest."""
        name = hashlib.sha256(payload).hexdigest()[:12]
        make_oci_layout(self.layout, tag=name, payload=payload)
        skopeo_push(self.layout, self.addr, ref, src_tag=name)
        return manifest_digest(self.layout, name)

    def env(self) -> dict[str, str]:
        base = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "S3SYNCER_"))}
        return {**base, **self.s3.env("source"), **self.s3.env("dest")}

    def replicate(
        self, root: str, events: list[Any], reason: str, *extra: str, result: Path | None = None
    ) -> subprocess.CompletedProcess[str]:
        """Run the one command as the daemon does: its events file, its reason and, with
        ``result``, the path of its result file."""
        path = self.tmp / f"events-{root}.json"
        body = {"command": "replicate", "reason": reason, "events": events, "truncated": False}
        path.write_text(json.dumps(body))
        env = {**self.env(), "S3SYNCER_EVENTS_FILE": str(path), "S3SYNCER_REASON": reason}
        if result is not None:
            env["S3SYNCER_RESULT_FILE"] = str(result)
        return subprocess.run(
            [sys.executable, "-m", "s3syncer", "replicate", "--source", SOURCE,
             "--dest", f"s3://dst/{root}", *extra],
            env=env, capture_output=True, text=True, timeout=300, check=False,
        )  # fmt: skip

    def verify(self, root: str, result: Path | None = None) -> subprocess.CompletedProcess[str]:
        """``s3syncer verify`` of the mirror's ``root``."""
        env = self.env() | ({"S3SYNCER_RESULT_FILE": str(result)} if result else {})
        return subprocess.run(
            [sys.executable, "-m", "s3syncer", "verify", "--source", SOURCE,
             "--dest", f"s3://dst/{root}"],
            env=env, capture_output=True, text=True, timeout=300, check=False,
        )  # fmt: skip

    def mirrored(self, root: str, ref: str) -> str | None:
        """The digest of ``ref`` as a registry serving the mirror's ``root`` gives it, or None."""
        with run_s3_registry(self.tmp / f"mirror-{root}", self.s3, "dst", root=root) as mirror:
            return pulled(mirror.addr, ref)

    def tag_in_mirror(self, root: str, repo: str, tag: str) -> str | None:
        """What the mirror's ``current/link`` of ``repo:tag`` holds, or None."""
        key = Layout(root).tag_current_link(repo, tag)
        client = self.s3.client()
        try:
            return client.get_object(Bucket="dst", Key=key)["Body"].read().decode()
        except client.exceptions.NoSuchKey:
            return None


def pulled(addr: str, ref: str) -> str | None:
    """``ref`` pulled whole (every blob) from ``addr``: its manifest digest, None if it fails."""
    out = Path(os.environ.get("TMPDIR", "/tmp")) / f"pull-{os.getpid()}-{abs(hash(ref))}"
    copy = subprocess.run(
        [tool("skopeo"), "--insecure-policy", "copy", "--src-tls-verify=false", "--src-no-creds",
         f"docker://{addr}/{ref}", f"dir:{out}"],
        capture_output=True, timeout=60, check=False,
    )  # fmt: skip
    if copy.returncode != 0:
        return None
    digest = "sha256:" + hashlib.sha256((out / "manifest.json").read_bytes()).hexdigest()
    subprocess.run(["rm", "-rf", str(out)], check=True)
    return digest


def snapshot(world: World, root: str) -> dict[str, str]:
    """Every object of the mirror's ``root``: key -> ETag (an MD5 of its bytes here)."""
    client, found = world.s3.client(), {}
    for page in client.get_paginator("list_objects_v2").paginate(Bucket="dst", Prefix=f"{root}/"):
        found.update({o["Key"]: o["ETag"] for o in page.get("Contents", [])})
    return found


@contextmanager
def mirror_world(tmp: Path) -> Iterator[World]:
    """SeaweedFS with buckets ``src`` and ``dst``, and a registry on ``src`` under ``reg``."""
    require_tools()
    with (
        run_seaweedfs(tmp / "s3", ["src", "dst"]) as s3,
        run_s3_registry(tmp / "src-reg", s3, "src", root="reg") as registry,
    ):
        yield World(s3, tmp, registry.addr, tmp / "layout")
