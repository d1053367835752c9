"""What a repeat full pass and a warm verify cost, against listing both buckets (issue 27).

On one SeaweedFS (``weed mini``), N tags over 20 repositories are written straight into a
registry layout (as benchmarks/verify_tags.py does). The mirror is seeded once with
``replicate --all`` and a state directory (the closure cache); then, each a separate process,
timed with its peak RSS (``wait4``):

* **listing**: every key of both buckets, whole (one boto3 client, paginated): the floor;
* ``verify`` (warm: the cache knows every manifest and link);
* ``replicate --all`` with nothing to do (warm);
* ``rclone sync --checksum`` of the source to a copy of it, with nothing to do;
* ``replicate --all --delete`` with nothing to do, the sweep included (warm).

Targets (issue 27): warm verify and no-op --all within 1.5x the listing; no-op --all at most
half the no-op rclone sync; peak RSS at most 200 MB. Figures only: never a timed test.

``--src DIR`` runs s3syncer from that ``src`` tree (``git archive HEAD src | tar -x -C DIR``
gives one that no edit changes during an hour-long run); ``--before DIR`` also measures another
tree (e.g. main's) on the same fill, same machine and load: its own seed into a second mirror
bucket with its own state directory, then its warm verify and no-op --all.

Run: ``.venv/bin/python -m benchmarks.full_pass [--tags 3000] [--src DIR] [--before DIR]
[--out FILE]``.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from benchmarks.verify_tags import fill  # noqa: E402
from s3_harness import S3Server, run_seaweedfs, tool  # noqa: E402

LISTING = """\
import sys, boto3
from botocore.config import Config
endpoint, key, secret = sys.argv[1:4]
client = boto3.client("s3", endpoint_url=endpoint, aws_access_key_id=key,
    aws_secret_access_key=secret, region_name="us-east-1",
    config=Config(s3={"addressing_style": "path"}))
count = 0
for bucket in sys.argv[4:]:
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket):
        count += len(page.get("Contents", []))
print(count, "objects")
"""


def _rclone_env(server: S3Server) -> dict[str, str]:
    remote = {
        "TYPE": "s3",
        "PROVIDER": "Other",
        "ENDPOINT": server.endpoint,
        "ACCESS_KEY_ID": server.access_key,
        "SECRET_ACCESS_KEY": server.secret_key,
        "REGION": "us-east-1",
        "FORCE_PATH_STYLE": "true",
    }
    return {f"RCLONE_CONFIG_S3_{k}": v for k, v in remote.items()}


def step(name: str, command: list[str], env: dict[str, str]) -> dict[str, object]:
    """Measure one step in a fresh interpreter, so its peak RSS is its own."""
    probe = (
        "import json, resource, subprocess, sys, time\n"
        "t = time.monotonic()\n"
        "r = subprocess.run(sys.argv[1:], capture_output=True, text=True, check=False)\n"
        "e = time.monotonic() - t\n"
        "rss = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024\n"
        "lines = (r.stdout.strip() or r.stderr.strip()).splitlines()\n"
        "print(json.dumps({'code': r.returncode, 'seconds': e, 'rss_mb': rss,\n"
        "  'last': lines[-1] if lines else '', 'err': r.stderr[-2000:]}))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe, *command],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    found = json.loads(result.stdout)
    if found["code"] != 0:
        raise RuntimeError(f"{name} failed: {found['last']} {found['err']}")
    print(f"| {name} | {found['seconds']:.1f} s | {found['rss_mb']:.0f} MB |", flush=True)
    return {k: found[k] for k in ("seconds", "rss_mb", "last")}


def _before(src: str, base: Path, env: dict[str, str], s3syncer: list[str]) -> dict[str, object]:
    """The seed, warm verify and no-op --all of the s3syncer in ``src``, into bucket dst0."""
    env = {**env, "PYTHONPATH": str(Path(src).resolve())}
    env["S3SYNCER_STATE_DIR"] = str(base / "state-before")
    sides = ["--source", "s3://src/reg", "--dest", "s3://dst0/reg"]
    found: dict[str, object] = {}
    found["seed"] = step("before: `replicate --all` (seed, cold cache)", [*s3syncer,
                         "replicate", "--all", *sides], env)  # fmt: skip
    found["verify"] = step("before: `verify` (warm)", [*s3syncer, "verify", *sides], env)
    found["noop_all"] = step("before: `replicate --all`, nothing to do (warm)", [*s3syncer,
                             "replicate", "--all", *sides], env)  # fmt: skip
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tags", type=int, default=3000)
    parser.add_argument("--workdir")
    parser.add_argument("--out", default=str(ROOT / "benchmarks/results/full_pass.json"))
    parser.add_argument("--src", help="run s3syncer from this src tree (default: installed)")
    parser.add_argument("--before", help="also measure the s3syncer of this src tree")
    args = parser.parse_args()
    base = Path(args.workdir or tempfile.mkdtemp(prefix="s3syncer-fullpass-"))
    results: dict[str, object] = {"tags": args.tags, "src": args.src, "before_src": args.before}
    buckets = ["src", "dst", "copy", *(["dst0"] if args.before else [])]
    with run_seaweedfs(base / "s3", buckets, startup_timeout=120) as server:
        results["fill_s"] = fill(server, args.tags)
        env = {**os.environ, **server.env("source"), **server.env("dest"), **_rclone_env(server)}
        env["S3SYNCER_STATE_DIR"] = str(base / "state")
        if args.src:
            env["PYTHONPATH"] = str(Path(args.src).resolve())
        sides = ["--source", "s3://src/reg", "--dest", "s3://dst/reg"]
        s3syncer = [sys.executable, "-m", "s3syncer"]
        rclone = [tool("rclone"), "sync", "--checksum", "s3:src", "s3:copy"]
        print(f"| {args.tags:,} tags | wall time | peak RSS |\n|---|---:|---:|")
        results["seed"] = step("`replicate --all` (seed, cold cache)", [*s3syncer, "replicate",
                               "--all", *sides], env)  # fmt: skip
        results["rclone_first"] = step("`rclone sync --checksum` (first copy)", rclone, env)
        listing = [sys.executable, "-c", LISTING, server.endpoint, server.access_key,
                   server.secret_key, "src", "dst"]  # fmt: skip
        results["listing"] = step("listing both buckets whole", listing, env)
        results["verify"] = step("`verify` (warm)", [*s3syncer, "verify", *sides], env)
        results["noop_all"] = step("`replicate --all`, nothing to do (warm)", [*s3syncer,
                                   "replicate", "--all", *sides], env)  # fmt: skip
        results["noop_rclone"] = step("`rclone sync --checksum`, nothing to do", rclone, env)
        # the recommended setup's pass: --delete lists the kept deletes and sweeps; the first
        # leaves the sweep's marker, the second is the one every reconcile makes
        delete = [*s3syncer, "replicate", "--all", "--delete", *sides]
        step("`replicate --all --delete` (leaves the sweep's marker)", delete, env)
        results["noop_delete"] = step("`replicate --all --delete`, nothing to do (warm)",
                                      delete, env)  # fmt: skip
        if args.before:
            results["before"] = _before(args.before, base, env, s3syncer)
    floor = float(results["listing"]["seconds"])  # type: ignore[index]
    ratios = {
        "verify / listing": float(results["verify"]["seconds"]) / floor,  # type: ignore[index]
        "no-op --all / listing": float(results["noop_all"]["seconds"]) / floor,  # type: ignore[index]
        "no-op --all / no-op rclone": float(results["noop_all"]["seconds"])  # type: ignore[index]
        / float(results["noop_rclone"]["seconds"]),  # type: ignore[index]
        "no-op --all --delete / listing": float(results["noop_delete"]["seconds"]) / floor,  # type: ignore[index]
    }
    results["ratios"] = ratios
    for name, value in ratios.items():
        print(f"{name}: {value:.2f}x")
    requests = re.search(r"(\d+) S3 requests", str(results["noop_all"]["last"]))  # type: ignore[index]
    print(f"no-op --all requests: {requests.group(1) if requests else '?'}")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=1))
    print(f"results: {out}", file=sys.stderr)


if __name__ == "__main__":
    main()
