"""A py-spy profile of the daemon under the serial load, and a summary a person can read."""

from __future__ import annotations

import re
import subprocess
import threading
import time
from collections import Counter
from pathlib import Path

from benchmarks.webhook.load import post
from benchmarks.webhook.servers import Server
from benchmarks.webhook.settings import FIXTURE, REQUEST_TIMEOUT, Settings

FRAME = re.compile(r"(.*) \((.*?):\d+\)$")
LIBRARIES = (
    ("s3syncer/", "s3syncer"),
    ("hypercorn/", "hypercorn"),
    ("h11/", "h11"),
    ("trio/", "trio"),
    ("quart/", "quart"),
    ("json/", "json"),
)
# Inclusive time is shown only for frames of the request path, not trio's scheduler.
REQUEST_PATH = ("web.py", "events.py", "hypercorn", "h11", "json", "runner")


def profile_serial(
    py_spy: str, daemon: Server, settings: Settings, flamegraph: Path, collapsed: Path
) -> list[str]:
    """py-spy the daemon under serial load into ``flamegraph`` and ``collapsed``; summarise."""
    body = FIXTURE.read_bytes()
    stop = threading.Event()

    def load() -> None:
        deadline = time.monotonic() + 2 * settings.profile_seconds + 10
        for _ in range(200_000):
            if stop.is_set() or time.monotonic() > deadline:
                return
            post(daemon, "/trigger/serial", body)

    worker = threading.Thread(target=load, daemon=True)
    worker.start()
    try:
        time.sleep(0.5)  # let the load reach its pace before sampling
        for fmt, out in (("flamegraph", flamegraph), ("raw", collapsed)):
            subprocess.run(
                [
                    *(py_spy, "record", "--pid", str(daemon.pid)),
                    *("-d", str(settings.profile_seconds), "-r", "200"),
                    *("--format", fmt, "-o", str(out)),
                ],
                check=True,
                capture_output=True,
                timeout=settings.profile_seconds + 60,
            )
    finally:
        stop.set()
        worker.join(timeout=REQUEST_TIMEOUT + 5)
    return summarise_profile(collapsed.read_text())


def _frame_key(frame: str) -> str:
    # "function (path/to/module.py:123)" -> "function (to/module.py)"
    found = FRAME.match(frame)
    if not found:
        return frame
    function, path = found.groups()
    parts = Path(path).parts
    where = "/".join(parts[-2:]) if len(parts) >= 2 else path
    return f"{function} ({where})"


def _library(frame: str) -> str:
    for marker, label in LIBRARIES:
        if marker in frame:
            return label
    return "other"


def summarise_profile(collapsed: str) -> list[str]:
    """Top self-time frames and self time by library from py-spy's collapsed stacks."""
    own: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    libraries: Counter[str] = Counter()
    total = 0
    for line in collapsed.splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = stack.split(";")
        total += count
        own[_frame_key(frames[-1])] += count
        libraries[_library(frames[-1])] += count
        for key in {_frame_key(frame) for frame in frames}:
            inclusive[key] += count
    if not total:
        return ["py-spy recorded no samples"]
    out = [f"py-spy: {total} samples of the daemon under serial load"]
    out.append(
        "self time by library: "
        + ", ".join(f"{name} {100 * n / total:.0f}%" for name, n in libraries.most_common())
    )
    out.append("top self time:")
    out += [f"  {100 * n / total:5.1f}%  {name}" for name, n in own.most_common(12)]
    out.append("top inclusive time (selected):")
    selected = [
        (name, n)
        for name, n in inclusive.most_common(80)
        if any(marker in name for marker in REQUEST_PATH)
    ]
    out += [f"  {100 * n / total:5.1f}%  {name}" for name, n in selected[:14]]
    return out
