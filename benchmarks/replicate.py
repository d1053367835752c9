"""Mirror lag for one pushed image: ``s3syncer replicate`` against ``rclone sync``.

For each bucket size N: a fresh SeaweedFS (``weed mini``), N dummy objects laid out like
registry blobs in the source bucket *and* already mirrored in the destination (a mirror that
is in sync), a real ``docker-registry`` on the source bucket (s3 driver) sending notifications.
Then:

1. push image A with skopeo, run ``s3syncer replicate`` on its events: time and S3 requests
   (counted by boto3 event hooks, printed by replicate itself);
2. push image B, run ``rclone sync`` source -> destination: time and S3 requests (counted from
   ``--dump headers``).

Run: ``.venv/bin/python benchmarks/replicate.py [--sizes 10000,100000] [--workdir DIR]``.
Needs ``pip install -e '.[test]'`` and ``apt-get install -y docker-registry skopeo``.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from registry_harness import make_oci_layout, skopeo_push  # noqa: E402
from s3_harness import EventSink, S3Server, run_s3_registry, run_seaweedfs, tool  # noqa: E402
from s3syncer.replicate.layout import Layout  # noqa: E402
from waiting import wait_until  # noqa: E402

REPLICATE_SAMPLES = 5


def fill(server: S3Server, count: int) -> float:
    """Put ``count`` small blob-like objects in both buckets; return the seconds it took."""
    client = server.client(max_pool=64)
    layout = Layout("reg")
    started = time.monotonic()

    def put(i: int) -> None:
        key = layout.blob_data("sha256:" + f"{i:064x}")
        for bucket in ("src", "dst"):
            client.put_object(Bucket=bucket, Key=key, Body=b"x" * 64)

    with ThreadPoolExecutor(max_workers=48) as pool:
        list(pool.map(put, range(count)))
    return time.monotonic() - started


def wait_manifest_push(sink: EventSink) -> list[Any]:
    """The events of one tagged push, once its manifest event has arrived."""
    wait_until(
        lambda: any(e["action"] == "push" and e["target"].get("tag") for e in sink.events),
        timeout=30,
    )
    return sink.take()


def run_replicate(server: S3Server, workdir: Path, events: list[Any]) -> tuple[float, int]:
    path = workdir / "events.json"
    path.write_text(json.dumps({"command": "r", "reason": "event", "events": events}))
    env = {**os.environ, **server.env("source"), **server.env("dest")}
    env["S3SYNCER_EVENTS_FILE"] = str(path)
    started = time.monotonic()
    result = subprocess.run(
        [
            *(sys.executable, "-m", "s3syncer", "replicate"),
            *("--source", "s3://src/reg", "--dest", "s3://dst/reg"),
        ],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    elapsed = time.monotonic() - started
    match = re.search(r"(\d+) S3 requests", result.stdout)
    assert match, result.stdout
    return elapsed, int(match.group(1))


def run_rclone(server: S3Server) -> tuple[float, int]:
    env = {
        **os.environ,
        "RCLONE_CONFIG_S3_TYPE": "s3",
        "RCLONE_CONFIG_S3_PROVIDER": "SeaweedFS",
        "RCLONE_CONFIG_S3_ENDPOINT": server.endpoint,
        "RCLONE_CONFIG_S3_ACCESS_KEY_ID": server.access_key,
        "RCLONE_CONFIG_S3_SECRET_ACCESS_KEY": server.secret_key,
        "RCLONE_CONFIG_S3_FORCE_PATH_STYLE": "true",
    }
    started = time.monotonic()
    result = subprocess.run(
        [tool("rclone"), "sync", "s3:src/reg", "s3:dst/reg", "-vv", "--dump", "headers"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    elapsed = time.monotonic() - started
    return elapsed, result.stderr.count("HTTP REQUEST")


def bench(size: int, workdir: Path) -> dict[str, Any]:
    sink = EventSink()
    try:
        with (
            run_seaweedfs(workdir / "s3", ["src", "dst"]) as server,
            run_s3_registry(workdir / "reg", server, "src", root="reg", notify_url=sink.url) as r,
        ):
            fill_s = fill(server, size)
            layout = workdir / "layout"
            lags: list[float] = []
            # Several pushes, each a new image to copy: one process start is a noisy sample.
            for i in range(REPLICATE_SAMPLES):
                tag = f"a{i}"
                make_oci_layout(layout, tag=tag, payload=f"image {tag} ".encode() + os.urandom(8))
                skopeo_push(layout, r.addr, f"bench/app:{tag}", src_tag=tag)
                lag, rep_req = run_replicate(server, workdir, wait_manifest_push(sink))
                lags.append(lag)
            rep_s = statistics.median(lags)
            make_oci_layout(layout, tag="b", payload=b"image B " + os.urandom(8))
            skopeo_push(layout, r.addr, "bench/app:b", src_tag="b")
            wait_manifest_push(sink)
            rcl_s, rcl_req = run_rclone(server)
    finally:
        sink.close()
    return {
        "objects": size,
        "fill_s": fill_s,
        "replicate_s": rep_s,
        "replicate_range_s": (min(lags), max(lags)),
        "replicate_requests": rep_req,
        "rclone_s": rcl_s,
        "rclone_requests": rcl_req,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="10000,100000")
    parser.add_argument("--workdir")
    args = parser.parse_args()
    base = Path(args.workdir or tempfile.mkdtemp(prefix="s3syncer-bench-"))
    rows = [bench(int(n), base / f"n{n}") for n in args.sizes.split(",")]
    print("| objects in the bucket | replicate: lag | replicate: S3 requests "
          "| rclone sync: lag | rclone sync: S3 requests | speed-up |")  # fmt: skip
    print("|---:|---:|---:|---:|---:|---:|")
    for row in rows:
        print(
            f"| {row['objects']:,} | {row['replicate_s']:.2f} s (median of {REPLICATE_SAMPLES}) "
            f"| {row['replicate_requests']} "
            f"| {row['rclone_s']:.2f} s | {row['rclone_requests']} "
            f"| {row['rclone_s'] / row['replicate_s']:.0f}x |"
        )
    print(json.dumps(rows), file=sys.stderr)


if __name__ == "__main__":
    main()
