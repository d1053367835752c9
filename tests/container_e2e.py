"""The built image and manifest/k8s.yaml, end to end, with podman.

Run by .ci/container-checks once it has built the image (the plain `pytest` run does not
collect this module: without an image it could only fail)::

    S3SYNCER_IMAGE=localhost/s3syncer:ci python -m pytest tests/container_e2e.py

1. Every ``cmd`` of examples/*.yaml and of the manifest's ConfigMap exists in the image.
2. The pod of ``podman kube play manifest/k8s.yaml``, its image swapped for the build and its
   placeholders (Secret values, the two S3 endpoints) filled; probes, security context and
   the config's commands as written. ``replicate``, the one command that writes the mirror,
   makes its full pass at start (``runOnStart``). A real ``docker-registry`` on SeaweedFS
   sends the site's Distribution notifications block to it; two tags pushed with skopeo are
   pullable from a second registry on the mirror bucket, first through ``replicate`` on the
   events, then, with the mirror emptied (what lost notifications leave, and worse), through
   the same command's full pass on a manual run (``POST /run/replicate``, no events), both
   inside the pod.
3. The pod stops within ``terminationGracePeriodSeconds`` and logs a clean shutdown.

Needs root, podman with runc, docker-registry, skopeo and ``pip install -e '.[test]'``.
podman 4.3 falls short of Kubernetes in three places, worked around here and nowhere else:
its ``kube play`` stores a Secret in a form its own ``secretKeyRef`` cannot read, so the
Secret is created with ``podman secret create``; ``kube down`` SIGKILLs at once
(containers/podman#19135), so ``podman pod stop --time GRACE`` does what the kubelet does
first; and its probes run ``curl`` inside the container, so this test probes like the kubelet.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import secrets
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast
from urllib.parse import urlsplit

import pytest
import yaml

from deployment_files import (
    Obj,
    command_paths,
    configmap_config,
    documented_notifications,
    http_port,
    main_container,
    manifest_object,
    manifest_objects,
    pod_spec,
)
from registry_harness import make_oci_layout, manifest_digest, skopeo_push
from s3_harness import S3Server, run_s3_registry, run_seaweedfs, tool
from waiting import wait_until

pytestmark = pytest.mark.integration

IMAGE = os.environ.get("S3SYNCER_IMAGE", "localhost/s3syncer:ci")
# The manifest's stand-ins for the registry's S3 and the mirror's; both become SeaweedFS here.
SOURCE_ENDPOINT = "http://minio.registry.svc:9000"
MIRROR_ENDPOINT = "https://s3.mirror.example.com"
# The pod runs in its own network namespace (slirp4netns, which publishes its containerPort on
# the host as Kubernetes' Service would route to it); there, the host's loopback, where
# SeaweedFS listens, is this address.
POD_NETWORK = "slirp4netns:allow_host_loopback=true"
HOST_LOOPBACK_FROM_POD = "10.0.2.2"
REPOSITORY = "team/app"
TAGS = ("v1", "v2")
# Bounds for conditions, not sleeps: generous for a loaded 2-core CI machine.
READY_TIMEOUT = 90.0
RUN_TIMEOUT = 120.0

_DIRECT = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def podman(
    *args: str, stdin: str | None = None, check: bool = True, timeout: float = 120.0
) -> subprocess.CompletedProcess[str]:
    """Run podman; with ``check``, fail the test with its output on a non-zero exit."""
    result = subprocess.run(
        ["podman", *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    if check and result.returncode != 0:
        pytest.fail(f"podman {' '.join(args)} exited {result.returncode}:\n{result.stderr}")
    return result


@pytest.fixture(scope="module")
def image() -> str:
    if podman("image", "exists", IMAGE, check=False).returncode != 0:
        pytest.fail(f"no image {IMAGE}; build it first (.ci/container-checks does)")
    return IMAGE


def run_in_image(image: str, entrypoint: str, *args: str) -> subprocess.CompletedProcess[str]:
    return podman(
        "run", "--rm", "--network", "none", "--entrypoint", entrypoint, image, *args, check=False
    )


# --- 1. the image holds what the configs run ------------------------------------------------


def test_every_configured_command_exists_in_the_image(image: str) -> None:
    # One container for all: absolute paths must be executable, bare names found on PATH.
    script = (
        'for c; do case "$c" in /*) test -x "$c" ;; *) command -v "$c" ;; esac || echo "$c"; done'
    )
    paths = command_paths()
    result = run_in_image(image, "/bin/sh", "-c", script, "sh", *paths)
    assert result.returncode == 0, result.stderr
    missing = [line for line in result.stdout.splitlines() if line in paths]
    assert not missing, {cmd: paths[cmd] for cmd in missing}


def test_the_image_runs_replicate_and_rclone(image: str) -> None:
    result = run_in_image(image, "/opt/s3syncer/bin/python", "-c", "import boto3")
    assert result.returncode == 0, f"no boto3 for replicate: {result.stderr}"
    result = run_in_image(image, "/usr/bin/rclone", "version")
    assert result.returncode == 0 and result.stdout.startswith("rclone v"), result.stderr
    result = run_in_image(image, "/usr/bin/id", "-u")
    assert result.stdout.strip() == "10001"


# --- 2. the pod -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Bucket:
    name: str
    root: str


def replicate_bucket(flag: str) -> Bucket:
    """The bucket and root directory the ConfigMap's replicate command names after ``flag``."""
    commands = {command["name"]: command for command in configmap_config()["commands"]}
    args = cast(list[str], commands["replicate"]["args"])
    name, _, root = args[args.index(flag) + 1].removeprefix("s3://").partition("/")
    return Bucket(name, root)


def fill_placeholders(s3: S3Server, token: str) -> tuple[list[Obj], Obj]:
    """The manifest's objects with the image, endpoints and Secret values filled in."""
    objects = manifest_objects()
    config_map = manifest_object("ConfigMap", objects)
    text = cast(str, config_map["data"]["config.yaml"])
    endpoint = s3.endpoint.replace("127.0.0.1", HOST_LOOPBACK_FROM_POD)
    for stand_in in (SOURCE_ENDPOINT, MIRROR_ENDPOINT):
        assert stand_in in text, f"the ConfigMap no longer names {stand_in}: update this test"
        text = text.replace(stand_in, endpoint)
    config_map["data"]["config.yaml"] = text
    secret = manifest_object("Secret", objects)
    values = cast(dict[str, str], secret["stringData"])
    for key in values:
        if key == "token":
            values[key] = token
        elif key.endswith("secret-access-key"):
            values[key] = s3.secret_key
        else:
            assert key.endswith("access-key-id"), f"unknown Secret key {key}: update this test"
            values[key] = s3.access_key
    spec = pod_spec(objects)
    for container in [*spec.get("initContainers", []), *spec["containers"]]:
        container["image"] = IMAGE
    return [obj for obj in objects if obj is not secret], secret


def create_podman_secret(secret: Obj) -> str:
    """The Secret as podman 4.3's secretKeyRef reads it: JSON, values base64."""
    name = cast(str, secret["metadata"]["name"])
    data = {
        key: base64.b64encode(value.encode()).decode()
        for key, value in secret["stringData"].items()
    }
    podman("secret", "rm", name, check=False)
    podman("secret", "create", name, "-", stdin=json.dumps(data))
    return name


@dataclass
class Pod:
    """The played pod: its names, its port, its log."""

    yaml_text: str
    pod: str
    container: str
    port: int
    token: str
    log_path: Path

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def request(self, method: str, path: str, *, token: bool = True) -> tuple[int, bytes]:
        request = urllib.request.Request(self.url(path), method=method)
        if token:
            request.add_header("Authorization", f"Bearer {self.token}")
        try:
            with _DIRECT.open(request, timeout=5) as response:
                return int(response.status), response.read()
        except urllib.error.HTTPError as error:
            return error.code, error.read()
        except OSError:
            return 0, b""

    def command(self, name: str) -> Obj:
        """``GET /status`` (with the token): the command's entry."""
        status, body = self.request("GET", "/status")
        assert status == 200, (status, body)
        commands = {c["name"]: c for c in json.loads(body)["commands"]}
        return cast(Obj, commands[name])

    def log(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")


def port_is_free(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) != 0


@contextlib.contextmanager
def played_pod(tmp: Path, s3: S3Server) -> Iterator[Pod]:
    """``podman kube play`` the filled manifest; always torn down."""
    token = secrets.token_hex(24)
    objects, secret = fill_placeholders(s3, token)
    container = main_container(objects)
    port = http_port(container, container["readinessProbe"]["httpGet"]["port"])
    if not port_is_free(port):
        pytest.fail(f"port {port} (the manifest's) is taken on this machine; the pod needs it")
    deployment = manifest_object("Deployment", objects)["metadata"]["name"]
    config_map = manifest_object("ConfigMap", objects)["metadata"]["name"]
    pod_name = f"{deployment}-pod-0"
    yaml_text = yaml.safe_dump_all(objects, sort_keys=False)
    # kube play keeps a ConfigMap's volume after kube down and (4.3) refuses an existing one.
    podman("volume", "rm", "--force", config_map, check=False)
    secret_name = create_podman_secret(secret)
    log_path = tmp / "pod.log"
    follower: subprocess.Popen[bytes] | None = None
    try:
        podman("kube", "play", "--replace", "--network", POD_NETWORK, "-", stdin=yaml_text)
        with log_path.open("wb") as log:
            name = f"{pod_name}-{container['name']}"
            follower = subprocess.Popen(
                ["podman", "logs", "--follow", name], stdout=log, stderr=log
            )
        yield Pod(yaml_text, pod_name, name, port, token, log_path)
    finally:
        podman("kube", "down", "-", stdin=yaml_text, check=False)
        if follower is not None:
            follower.wait(timeout=30)
        podman("secret", "rm", secret_name, check=False)
        podman("volume", "rm", "--force", config_map, check=False)


def wait_ready(pod: Pod) -> None:
    """Probe like the kubelet: the readiness and liveness paths, as the manifest writes them."""
    container = main_container()
    ready = container["readinessProbe"]["httpGet"]["path"]
    live = container["livenessProbe"]["httpGet"]["path"]
    wait_until(
        lambda: pod.request("GET", ready, token=False)[0] == 200,
        timeout=READY_TIMEOUT,
        interval=0.5,
        message=lambda: f"{ready} never answered 200; pod log:\n{pod.log()[-4000:]}",
    )
    assert pod.request("GET", live, token=False)[0] == 200


def assert_security_context_applied(pod: Pod) -> None:
    inspect = json.loads(podman("container", "inspect", pod.container).stdout)[0]
    assert inspect["Config"]["User"].split(":")[0] == "10001"
    assert inspect["HostConfig"]["ReadonlyRootfs"] is True
    assert "no-new-privileges" in inspect["HostConfig"]["SecurityOpt"]
    touched = podman("exec", pod.container, "touch", "/rootfs-probe", check=False)
    assert "Read-only file system" in touched.stderr


def wait_run(pod: Pod, name: str, after: int) -> Obj:
    """The command's entry once more than ``after`` runs ended and it is idle; the last ok."""

    def finished() -> Obj | None:
        command = pod.command(name)
        done = command["runs"] > after and command["state"] in ("idle", "disabled")
        return command if done else None

    command = wait_until(
        finished,
        timeout=RUN_TIMEOUT,
        interval=0.5,
        message=lambda: f"{name}: no finished run; status {pod.command(name)}",
    )
    assert command["lastRun"]["ok"], command["lastRun"]
    return command


def skopeo(*args: str) -> bytes:
    result = subprocess.run(
        [tool("skopeo"), "--insecure-policy", *args], capture_output=True, timeout=60, check=False
    )
    assert result.returncode == 0, f"skopeo {' '.join(args)}: {result.stderr.decode()}"
    return result.stdout


def assert_mirror_serves(tmp: Path, s3: S3Server, layout: Path, label: str) -> None:
    """A fresh registry on the mirror bucket serves every pushed tag, blobs included."""
    mirror = replicate_bucket("--dest")
    with run_s3_registry(
        tmp / f"mirror-registry-{label}", s3, mirror.name, root=mirror.root
    ) as reg:
        pulled = tmp / f"pulled-{label}"
        for tag in TAGS:
            ref = f"docker://{reg.addr}/{REPOSITORY}:{tag}"
            skopeo(
                "copy", "--preserve-digests", "--src-tls-verify=false", "--src-no-creds",
                ref, f"oci:{pulled}:{tag}",
            )  # fmt: skip
            assert manifest_digest(pulled, tag) == manifest_digest(layout, tag), (label, tag)


def tags_in(s3: S3Server, bucket: Bucket) -> bool:
    """Whether every pushed tag's ``current/link`` is in ``bucket``: its last object written."""
    client = s3.client()
    prefix = f"{bucket.root}/" if bucket.root else ""
    tags = f"{prefix}docker/registry/v2/repositories/{REPOSITORY}/_manifests/tags"
    for tag in TAGS:
        key = f"{tags}/{tag}/current/link"
        try:
            client.head_object(Bucket=bucket.name, Key=key)
        except client.exceptions.ClientError:
            return False
    return True


def empty_bucket(s3: S3Server, bucket: str) -> None:
    client = s3.client()
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket):
        keys = [{"Key": item["Key"]} for item in page.get("Contents", [])]
        if keys:
            client.delete_objects(Bucket=bucket, Delete={"Objects": keys})  # type: ignore[typeddict-item]
    assert client.list_objects_v2(Bucket=bucket).get("KeyCount", 0) == 0


def registry_notifications(pod: Pod) -> dict[str, Any]:
    """The documented block, its URL moved from the Service to the pod, with the pod's token."""
    block = documented_notifications()
    (endpoint,) = block["endpoints"]
    url = urlsplit(endpoint["url"])
    service = manifest_object("Service")["metadata"]
    assert url.hostname == f"{service['name']}.{service['namespace']}.svc"
    endpoint["url"] = f"http://127.0.0.1:{pod.port}{url.path}"
    placeholder = manifest_object("Secret")["stringData"]["token"]
    assert endpoint["headers"]["Authorization"] == [f"Bearer {placeholder}"]
    endpoint["headers"]["Authorization"] = [f"Bearer {pod.token}"]
    return block


def stop_like_kubernetes(pod: Pod) -> tuple[int, float]:
    """SIGTERM, up to terminationGracePeriodSeconds, SIGKILL; then kube down. (exit, seconds)."""
    grace = int(pod_spec()["terminationGracePeriodSeconds"])
    waiter = subprocess.Popen(["podman", "wait", pod.container], stdout=subprocess.PIPE, text=True)
    started = time.monotonic()
    podman("pod", "stop", "--time", str(grace), pod.pod, timeout=grace + 30)
    out, _ = waiter.communicate(timeout=30)
    elapsed = time.monotonic() - started
    podman("kube", "down", "-", stdin=pod.yaml_text)
    return int(out.strip().splitlines()[-1]), elapsed


def log_messages(pod: Pod) -> list[str]:
    messages = []
    for line in pod.log().splitlines():
        with contextlib.suppress(ValueError):
            record = json.loads(line)
            if isinstance(record, dict):
                messages.append(str(record.get("message", record.get("msg", ""))))
    return messages


def test_the_pod_mirrors_two_pushed_tags_and_stops_cleanly(
    image: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source, mirror = replicate_bucket("--source"), replicate_bucket("--dest")
    layout = tmp_path / "layout"
    for tag in TAGS:
        make_oci_layout(layout, tag=tag, payload=f"image {tag}".encode())
    grace = int(pod_spec()["terminationGracePeriodSeconds"])
    with (
        run_seaweedfs(tmp_path / "s3", [source.name, mirror.name]) as s3,
        played_pod(tmp_path, s3) as pod,
    ):
        wait_ready(pod)
        assert_security_context_applied(pod)
        # runOnStart: replicate's first full pass (of an empty source) ends before anything
        # is pushed.
        started = wait_run(pod, "replicate", after=0)
        assert started["lastRun"]["reason"] == "startup", started["lastRun"]
        assert started["lastFullPass"]["ok"], started
        replicate_runs = started["runs"]

        notifications = registry_notifications(pod)
        with run_s3_registry(
            tmp_path / "source-registry", s3, source.name, root=source.root,
            notifications=notifications,
        ) as registry:  # fmt: skip
            for tag in TAGS:
                skopeo_push(layout, registry.addr, f"{REPOSITORY}:{tag}", src_tag=tag)

            # 1. replicate, on the registry's events: both tags reach the mirror.
            def replicated() -> bool:
                command = pod.command("replicate")
                idle = command["state"] == "idle" and command["pendingTriggers"] == 0
                return idle and command["runs"] > replicate_runs and tags_in(s3, mirror)

            wait_until(replicated, timeout=RUN_TIMEOUT, interval=0.5,
                       message=lambda: f"replicate: {pod.command('replicate')}")  # fmt: skip
            assert_mirror_serves(tmp_path, s3, layout, "replicate")
            copied = pod.command("replicate")
            assert copied["lastRun"]["ok"] and copied["lastRun"]["reason"] == "event", copied

            # 2. every notification's copy lost: the same command's full pass, on a manual
            # run with no events, finds both tags missing from the emptied mirror and repairs
            # them (what reconcile does 10 minutes after the last run).
            empty_bucket(s3, mirror.name)
            status, body = pod.request("POST", "/run/replicate")
            assert status == 202, body
            repaired = wait_run(pod, "replicate", after=copied["runs"])
            assert repaired["lastRun"]["reason"] == "manual", repaired["lastRun"]
            full_pass = repaired["lastFullPass"]
            assert full_pass["runId"] == repaired["lastRun"]["runId"], repaired
            assert full_pass["tags"]["repaired"] == len(TAGS), full_pass
            assert_mirror_serves(tmp_path, s3, layout, "full-pass")

        # 3. shutdown, as Kubernetes does it.
        code, seconds = stop_like_kubernetes(pod)
    messages = log_messages(pod)
    with capsys.disabled():
        print(f"\n  pod stopped in {seconds:.2f}s (grace {grace}s), exit code {code}")
    assert code == 0, pod.log()[-4000:]
    assert seconds < grace
    assert "shut down cleanly" in messages, pod.log()[-4000:]
    text = pod.log()
    for secret in (pod.token, s3.secret_key):
        assert secret not in text, "a secret reached the log"
