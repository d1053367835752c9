"""Synchronous test support for driving a real CNCF Distribution registry.

Integration tests use this module to:

* build a tiny OCI image layout locally (no network, no docker daemon): :func:`make_oci_layout`;
* run ``docker-registry serve`` (Debian package ``docker-registry``, distribution 2.8.x) with a
  notification endpoint pointing at a URL of their choice: :func:`run_registry`;
* push and delete images with ``skopeo``: :func:`skopeo_push`, :func:`skopeo_delete`;
* wait for a condition with a bounded deadline: :func:`wait_until`.

Everything here is plain blocking code (subprocess, urllib, hashlib); call it from sync tests or
from a worker thread (``trio.to_thread.run_sync``) in trio tests.

Install the external tools with ``apt-get install -y docker-registry skopeo``.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import io
import json
import os
import secrets
import shutil
import signal
import subprocess
import tarfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import yaml

from waiting import free_port

__all__ = [
    "ENDPOINT_NAME",
    "IGNORE_ACTIONS_PLACEHOLDER_MEDIA_TYPE",
    "INSTALL_HINT",
    "MEDIA_TYPE_BLOB",
    "MEDIA_TYPE_OCI_CONFIG",
    "MEDIA_TYPE_OCI_LAYER",
    "MEDIA_TYPE_OCI_MANIFEST",
    "NOTIFICATION_CONTENT_TYPE",
    "REGISTRY_BINARY",
    "SKOPEO_BINARY",
    "Registry",
    "free_port",
    "make_oci_layout",
    "manifest_digest",
    "require_tools",
    "run_registry",
    "skopeo_delete",
    "skopeo_push",
]

REGISTRY_BINARY = "docker-registry"
"""Name of the distribution registry executable (Debian package ``docker-registry``)."""

SKOPEO_BINARY = "skopeo"
"""Name of the skopeo executable."""

INSTALL_HINT = "apt-get install -y docker-registry skopeo"
"""How to install the external tools this module needs."""

ENDPOINT_NAME = "s3syncer"
"""Name of the notification endpoint written into the registry configuration."""

NOTIFICATION_CONTENT_TYPE = "application/vnd.docker.distribution.events.v1+json"
"""Content-Type of the notification POSTs sent by distribution 2.x."""

MEDIA_TYPE_BLOB = "application/octet-stream"
"""``target.mediaType`` of blob (layer / config) events sent by distribution 2.x."""

MEDIA_TYPE_OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
"""Media type of the image manifest written by :func:`make_oci_layout`."""

MEDIA_TYPE_OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
"""Media type of the image config written by :func:`make_oci_layout`."""

MEDIA_TYPE_OCI_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"
"""Media type of the layer written by :func:`make_oci_layout`."""

IGNORE_ACTIONS_PLACEHOLDER_MEDIA_TYPE = "application/x-s3syncer-harness-never-sent"
"""Media type added to ``ignore.mediatypes`` so that ``ignore.actions`` takes effect.

Distribution 2.8 (``notifications.newIgnoredSink``) returns the sink *unfiltered* when no media
type is ignored, so ``ignore.actions`` alone is silently a no-op. :func:`run_registry` adds this
never-sent media type whenever ``ignore_actions`` is given without ``ignore_media_types``.
"""

_REF_NAME_ANNOTATION = "org.opencontainers.image.ref.name"
_INDEX_MEDIA_TYPE = "application/vnd.oci.image.index.v1+json"
_LOG_TAIL_CHARS = 4000
_STARTUP_ATTEMPTS = 3

T = TypeVar("T")


# --------------------------------------------------------------------------------------------
# Generic helpers
# --------------------------------------------------------------------------------------------


def require_tools() -> None:
    """Fail (``RuntimeError``) with an install hint unless docker-registry and skopeo are on PATH.

    Integration tests must not skip when the tools are missing; call this to fail loudly instead.
    """
    missing = [tool for tool in (REGISTRY_BINARY, SKOPEO_BINARY) if shutil.which(tool) is None]
    if missing:
        raise RuntimeError(
            f"required tool(s) not found on PATH: {', '.join(missing)}; "
            f"install them with: {INSTALL_HINT}"
        )


def _which(tool: str) -> str:
    path = shutil.which(tool)
    if path is None:
        raise RuntimeError(f"{tool!r} not found on PATH; install it with: {INSTALL_HINT}")
    return path


def _tail(path: Path, chars: int = _LOG_TAIL_CHARS) -> str:
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError as exc:
        return f"<could not read {path}: {exc}>"
    return text[-chars:]


def _read_from(path: Path, offset: int) -> str:
    try:
        with path.open("rb") as f:
            f.seek(offset)
            return f.read().decode("utf-8", errors="replace")
    except OSError:
        return ""


# --------------------------------------------------------------------------------------------
# OCI image layout
# --------------------------------------------------------------------------------------------


def _sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _canonical_json(obj: Any) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()


def _write_blob(blobs_dir: Path, data: bytes) -> dict[str, Any]:
    """Store ``data`` under ``blobs/sha256/<hex>`` and return ``{"digest", "size"}``."""
    digest = _sha256(data)
    (blobs_dir / digest.removeprefix("sha256:")).write_bytes(data)
    return {"digest": digest, "size": len(data)}


def _layer_tar(payload: bytes) -> bytes:
    """Return a deterministic, uncompressed tar holding one file, ``hello.txt``."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        info = tarfile.TarInfo("hello.txt")
        info.size = len(payload)
        info.mode = 0o644
        info.mtime = 0
        info.uid = info.gid = 0
        info.uname = info.gname = "root"
        tar.addfile(info, io.BytesIO(payload))
    return buf.getvalue()


def make_oci_layout(dest: Path, *, tag: str = "v1", payload: bytes = b"hello") -> Path:
    """Write a minimal, valid OCI image layout to ``dest`` and return ``dest``.

    The image has one gzip layer containing a single file ``hello.txt`` whose content is
    ``payload``, an OCI config and an OCI image manifest, referenced from ``index.json`` under the
    ref name ``tag`` (so ``skopeo copy oci:DEST:TAG ...`` finds it). Output is deterministic:
    the same payload always gives the same digests, different payloads give different digests.

    Calling it again on the same ``dest`` with another ``tag`` adds that image to the existing
    layout (an entry with the same tag is replaced), so one layout can hold several images.
    """
    blobs_dir = dest / "blobs" / "sha256"
    blobs_dir.mkdir(parents=True, exist_ok=True)

    tar_bytes = _layer_tar(payload)
    layer = _write_blob(blobs_dir, gzip.compress(tar_bytes, mtime=0))
    config_obj = {
        "architecture": "amd64",
        "os": "linux",
        "config": {},
        "rootfs": {"type": "layers", "diff_ids": [_sha256(tar_bytes)]},
    }
    config = _write_blob(blobs_dir, _canonical_json(config_obj))
    manifest_obj = {
        "schemaVersion": 2,
        "mediaType": MEDIA_TYPE_OCI_MANIFEST,
        "config": {"mediaType": MEDIA_TYPE_OCI_CONFIG, **config},
        "layers": [{"mediaType": MEDIA_TYPE_OCI_LAYER, **layer}],
    }
    manifest = _write_blob(blobs_dir, _canonical_json(manifest_obj))

    (dest / "oci-layout").write_text(json.dumps({"imageLayoutVersion": "1.0.0"}))

    index_path = dest / "index.json"
    entries: list[dict[str, Any]] = []
    if index_path.exists():
        old = json.loads(index_path.read_text())
        entries = [
            entry
            for entry in old.get("manifests", [])
            if entry.get("annotations", {}).get(_REF_NAME_ANNOTATION) != tag
        ]
    entries.append(
        {
            "mediaType": MEDIA_TYPE_OCI_MANIFEST,
            **manifest,
            "annotations": {_REF_NAME_ANNOTATION: tag},
        }
    )
    index_obj = {"schemaVersion": 2, "mediaType": _INDEX_MEDIA_TYPE, "manifests": entries}
    index_path.write_text(json.dumps(index_obj, indent=2))
    return dest


def manifest_digest(layout: Path, tag: str = "v1") -> str:
    """Return the manifest digest (``sha256:...``) stored under ``tag`` in an OCI layout.

    This is the digest the registry reports in push events, and what ``repo@DIGEST`` pushes use.
    """
    index = json.loads((layout / "index.json").read_text())
    for entry in index.get("manifests", []):
        if entry.get("annotations", {}).get(_REF_NAME_ANNOTATION) == tag:
            digest: str = entry["digest"]
            return digest
    raise KeyError(f"tag {tag!r} not found in {layout / 'index.json'}")


# --------------------------------------------------------------------------------------------
# Registry process
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Registry:
    """A running ``docker-registry`` started by :func:`start_registry`."""

    addr: str
    """``127.0.0.1:PORT``; use as ``docker://{addr}/repo:tag``."""
    log_path: Path
    """File receiving the registry's stdout and stderr."""
    config_path: Path
    """The generated ``config.yml``."""
    storage_dir: Path
    """Root directory of the filesystem storage driver."""
    process: subprocess.Popen[bytes]
    """The registry process."""

    @property
    def url(self) -> str:
        """Base URL of the registry API, e.g. ``http://127.0.0.1:5000``."""
        return f"http://{self.addr}"

    def log_tail(self, chars: int = _LOG_TAIL_CHARS) -> str:
        """Return the last ``chars`` characters of the registry log."""
        return _tail(self.log_path, chars)


def _registry_config(
    workdir: Path,
    *,
    addr: str,
    notify_url: str,
    token: str | None,
    ignore_actions: Sequence[str],
    ignore_media_types: Sequence[str],
) -> dict[str, Any]:
    endpoint: dict[str, Any] = {
        "name": ENDPOINT_NAME,
        "url": notify_url,
        "timeout": "1s",
        "threshold": 1,
        "backoff": "1s",
    }
    if token is not None:
        endpoint["headers"] = {"Authorization": [f"Bearer {token}"]}
    media_types = list(ignore_media_types)
    if ignore_actions and not media_types:
        media_types = [IGNORE_ACTIONS_PLACEHOLDER_MEDIA_TYPE]
    ignore: dict[str, list[str]] = {}
    if media_types:
        ignore["mediatypes"] = media_types
    if ignore_actions:
        ignore["actions"] = list(ignore_actions)
    if ignore:
        endpoint["ignore"] = ignore
    return {
        "version": "0.1",
        "log": {"level": "info", "formatter": "text", "fields": {"service": "registry"}},
        "storage": {
            "filesystem": {"rootdirectory": str(workdir / "storage")},
            "delete": {"enabled": True},
            "cache": {"blobdescriptor": "inmemory"},
            "maintenance": {"uploadpurging": {"enabled": False}},
        },
        "http": {"addr": addr, "secret": secrets.token_hex(16)},
        "notifications": {"endpoints": [endpoint]},
    }


# Ignore http_proxy & co: the registry is on loopback.
_DIRECT_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def _registry_answers(url: str) -> bool:
    try:
        with _DIRECT_OPENER.open(f"{url}/v2/", timeout=1.0) as resp:
            return bool(resp.status == 200)
    except (urllib.error.URLError, OSError):
        return False


def _stop(process: subprocess.Popen[bytes], *, grace: float = 10.0) -> None:
    """SIGTERM ``process``, wait up to ``grace`` seconds, then SIGKILL and reap it."""
    if process.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            process.kill()
        process.wait(timeout=grace)


def start_registry(
    workdir: Path,
    config_for: Callable[[str], dict[str, Any]],
    *,
    env: dict[str, str],
    startup_timeout: float,
) -> tuple[Registry, bool]:
    """Start one ``docker-registry serve`` on a free port with ``config_for(addr)``.

    Returns ``(registry, ok)``; ``ok`` is False when another process took the port first.
    Raises ``RuntimeError`` with the log's tail when it dies or never answers.
    """
    addr = f"127.0.0.1:{free_port()}"
    config_path = workdir / "config.yml"
    config_path.write_text(yaml.safe_dump(config_for(addr), sort_keys=False))
    log_path = workdir / "registry.log"
    with log_path.open("ab") as log:
        log.write(f"--- starting registry on {addr}\n".encode())
        log.flush()
        log_offset = log.tell()
        process = subprocess.Popen(
            [_which(REGISTRY_BINARY), "serve", str(config_path)],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=workdir,
            env=env,
        )
    registry = Registry(
        addr=addr,
        log_path=log_path,
        config_path=config_path,
        storage_dir=workdir / "storage",
        process=process,
    )
    try:
        deadline = time.monotonic() + startup_timeout
        while True:
            # Ready = this process logged that it listens on *our* addr and GET /v2/ answers 200
            # (the log check rules out another server that grabbed the port in between).
            attempt_log = _read_from(log_path, log_offset)
            if (
                process.poll() is None
                and f"listening on {addr}" in attempt_log
                and _registry_answers(registry.url)
            ):
                break
            if process.poll() is not None:
                if "address already in use" in _read_from(log_path, log_offset):
                    return registry, False
                raise RuntimeError(
                    f"docker-registry exited with code {process.returncode} during startup; "
                    f"log tail ({log_path}):\n{registry.log_tail()}"
                )
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"docker-registry did not answer GET {registry.url}/v2/ within "
                    f"{startup_timeout:.0f}s; log tail ({log_path}):\n{registry.log_tail()}"
                )
            time.sleep(0.05)
    except BaseException:
        _stop(process)
        raise
    return registry, True


@contextlib.contextmanager
def serving_registry(
    workdir: Path,
    config_for: Callable[[str], dict[str, Any]],
    *,
    env: dict[str, str],
    startup_timeout: float = 20.0,
) -> Iterator[Registry]:
    """Run a registry with ``config_for(addr)`` for the block, retrying a lost port race."""
    workdir.mkdir(parents=True, exist_ok=True)
    for attempt in range(1, _STARTUP_ATTEMPTS + 1):
        registry, ok = start_registry(workdir, config_for, env=env, startup_timeout=startup_timeout)
        if ok:
            break
        if attempt == _STARTUP_ATTEMPTS:
            raise RuntimeError(
                f"docker-registry could not bind a free port after {attempt} attempts; "
                f"log tail ({registry.log_path}):\n{registry.log_tail()}"
            )
    try:
        yield registry
    finally:
        _stop(registry.process)


@contextlib.contextmanager
def run_registry(
    workdir: Path,
    *,
    notify_url: str,
    token: str | None = None,
    ignore_actions: Sequence[str] = (),
    ignore_media_types: Sequence[str] = (),
    startup_timeout: float = 20.0,
) -> Iterator[Registry]:
    """Run ``docker-registry serve`` on 127.0.0.1:<free port> for the duration of the block.

    Writes ``workdir/config.yml`` (filesystem storage in ``workdir/storage``, deletes enabled,
    one notification endpoint named :data:`ENDPOINT_NAME` posting to ``notify_url`` with
    ``Authorization: Bearer <token>`` if ``token`` is given, 1 s timeout / threshold 1 / 1 s
    backoff, ``ignore.actions`` / ``ignore.mediatypes`` when given), logs to
    ``workdir/registry.log``, and yields once ``GET /v2/`` answers 200 (bounded by
    ``startup_timeout``). If the registry dies or never answers, raises ``RuntimeError`` with the
    tail of its log. On exit the process is terminated (SIGTERM, then SIGKILL) and reaped.

    ``ignore_actions`` (e.g. ``["pull"]``) really filters: distribution 2.8 ignores
    ``ignore.actions`` unless ``ignore.mediatypes`` is non-empty, so
    :data:`IGNORE_ACTIONS_PLACEHOLDER_MEDIA_TYPE` is added in that case (see its docstring).

    Reusing a ``workdir`` restarts on the same storage (new port, log appended).

    Note: the registry retries undelivered notifications forever, in order (every 1 s here); events
    still queued when the block exits are lost.
    """
    # Environment variables named REGISTRY_* override config.yml; never let them leak in.
    env = {k: v for k, v in os.environ.items() if not k.startswith("REGISTRY_")}

    def config_for(addr: str) -> dict[str, Any]:
        return _registry_config(
            workdir,
            addr=addr,
            notify_url=notify_url,
            token=token,
            ignore_actions=ignore_actions,
            ignore_media_types=ignore_media_types,
        )

    with serving_registry(
        workdir, config_for, env=env, startup_timeout=startup_timeout
    ) as registry:
        yield registry


# --------------------------------------------------------------------------------------------
# skopeo
# --------------------------------------------------------------------------------------------


def _run_skopeo(args: Sequence[str], *, timeout: float) -> None:
    cmd = [_which(SKOPEO_BINARY), "--insecure-policy", *args]
    try:
        result = subprocess.run(
            cmd,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        stderr = exc.stderr.decode(errors="replace") if isinstance(exc.stderr, bytes) else ""
        raise RuntimeError(
            f"skopeo timed out after {timeout:.0f}s: {' '.join(cmd)}\n{stderr}"
        ) from exc
    if result.returncode != 0:
        raise RuntimeError(
            f"skopeo failed with exit code {result.returncode}: {' '.join(cmd)}\n"
            f"stderr:\n{result.stderr}"
        )


def skopeo_push(
    layout: Path,
    registry_addr: str,
    ref: str,
    *,
    src_tag: str = "v1",
    timeout: float = 60.0,
) -> None:
    """Push image ``src_tag`` of an OCI layout to ``docker://{registry_addr}/{ref}``.

    ``ref`` is ``repo:tag`` or ``repo@sha256:...`` (a by-digest push, which produces a manifest
    push event without ``tag``; the digest must be :func:`manifest_digest` of the image). Digests
    are preserved (skopeo fails instead of rewriting the manifest). Plain HTTP, anonymous.
    Raises ``RuntimeError`` with skopeo's stderr on failure or after ``timeout`` seconds.
    """
    _run_skopeo(
        [
            "copy",
            "--preserve-digests",
            "--dest-tls-verify=false",
            "--dest-no-creds",
            f"oci:{layout}:{src_tag}",
            f"docker://{registry_addr}/{ref}",
        ],
        timeout=timeout,
    )


def skopeo_delete(registry_addr: str, ref: str, *, timeout: float = 60.0) -> None:
    """Delete ``docker://{registry_addr}/{ref}`` (``repo:tag`` or ``repo@sha256:...``).

    The registry deletes the *manifest*: even when ``ref`` is a tag, it is resolved to its digest
    and every tag pointing at that manifest goes away. Distribution 2.8 then sends one delete
    event for the manifest (digest, no tag) followed by one delete event per removed tag.
    Raises ``RuntimeError`` with skopeo's stderr on failure or after ``timeout`` seconds.
    """
    _run_skopeo(
        ["delete", "--tls-verify=false", "--no-creds", f"docker://{registry_addr}/{ref}"],
        timeout=timeout,
    )
