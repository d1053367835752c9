"""How long ``s3syncer verify`` and ``replicate --all`` take for a registry of 1,000 tags.

On one SeaweedFS (``weed mini``), 1,000 tags over 20 repositories are written straight into a
registry layout (tests/registry_storage.py): each tag its own manifest and config over three
of 50 shared small layers, as tags of one project share base layers. Then, timed as separate
processes with the default ``--jobs``:

1. ``replicate --all`` into an empty mirror (seeding);
2. ``verify`` (HEADs and small GETs), and ``verify --deep`` (every blob read and hashed);
3. ``replicate --all`` again, with nothing left to do.

Each line gives the wall time and the S3 requests the tool counted.

Run: ``.venv/bin/python benchmarks/verify_tags.py [--tags 1000] [--workdir DIR] [--out FILE]``.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from registry_storage import put_blob, put_image  # noqa: E402
from s3_harness import S3Server, run_seaweedfs  # noqa: E402
from s3syncer.replicate.layout import Layout  # noqa: E402

REPOSITORIES = 20
SHARED_LAYERS = 50


def fill(server: S3Server, tags: int) -> float:
    """``tags`` tagged images in the source bucket; the seconds it took."""
    client, layout = server.client(max_pool=64), Layout("reg")
    started = time.monotonic()
    layers = [put_blob(client, "src", layout, os.urandom(1024)) for _ in range(SHARED_LAYERS)]

    def image(i: int) -> None:
        picked = [layers[(i + k * 7) % SHARED_LAYERS] for k in range(3)]
        repo = f"project/app{i % REPOSITORIES}"
        put_image(client, "src", layout, repo, tags=[f"v{i}"], layers=picked)

    with ThreadPoolExecutor(max_workers=32) as pool:
        list(pool.map(image, range(tags)))
    return time.monotonic() - started


def timed(server: S3Server, *args: str) -> tuple[float, int, str]:
    """Run ``s3syncer ARGS`` on src -> dst: seconds, S3 requests, its last line."""
    env = {**os.environ, **server.env("source"), **server.env("dest")}
    command = [sys.executable, "-m", "s3syncer", *args]
    command += ["--source", "s3://src/reg", "--dest", "s3://dst/reg"]
    started = time.monotonic()
    result = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    elapsed = time.monotonic() - started
    if result.returncode != 0:
        raise RuntimeError(f"{args} failed: {result.stdout}{result.stderr}")
    last = result.stdout.strip().splitlines()[-1]
    requests = re.search(r"(\d+) S3 requests", last)
    assert requests, last
    return elapsed, int(requests.group(1)), last


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tags", type=int, default=1000)
    parser.add_argument("--workdir")
    parser.add_argument("--out", default=str(ROOT / "benchmarks/results/verify_tags.json"))
    args = parser.parse_args()
    base = Path(args.workdir or tempfile.mkdtemp(prefix="s3syncer-bench-"))
    results: dict[str, object] = {"tags": args.tags}
    with run_seaweedfs(base / "s3", ["src", "dst"]) as server:
        results["fill_s"] = fill(server, args.tags)
        steps = {
            "replicate --all (empty mirror)": ("replicate", "--all"),
            "verify": ("verify",),
            "verify --deep": ("verify", "--deep"),
            "replicate --all (nothing to do)": ("replicate", "--all"),
        }
        print(f"| {args.tags:,} tags | wall time | S3 requests |\n|---|---:|---:|")
        for name, step in steps.items():
            seconds, requests, last = timed(server, *step)
            results[name] = {"seconds": seconds, "requests": requests, "output": last}
            print(f"| `{name}` | {seconds:.1f} s | {requests:,} |", flush=True)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=1))
    print(f"results: {out}", file=sys.stderr)


if __name__ == "__main__":
    main()
