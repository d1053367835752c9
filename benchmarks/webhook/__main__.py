"""``benchmarks/run``: measure every figure, print the table, write the results files.

Exit status: 0 when every target holds, 1 when one is missed, 2 when a figure could not be
measured (a missing tool, a server that did not start, a timeout).
"""

from __future__ import annotations

import argparse
import importlib.util
import shlex
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from benchmarks.webhook import BenchmarkError
from benchmarks.webhook.profiling import profile_serial
from benchmarks.webhook.report import build_rows, numbers, render_text
from benchmarks.webhook.results import (
    Report,
    code_revision,
    compare,
    describe_machine,
    measured_now,
    read_results,
    write_results,
)
from benchmarks.webhook.scenarios import measure_all
from benchmarks.webhook.servers import Server, servers_running, write_daemon_config
from benchmarks.webhook.settings import FIXTURE, QUICK, REPO, RESULTS, SERIAL_TARGET, Settings
from benchmarks.webhook.tools import (
    INSTALL_HINT,
    find_py_spy,
    find_wrk,
    require_py_spy,
    wrk_version,
)


def check_environment() -> None:
    """Fail early with a useful message when the interpreter cannot run the servers."""
    for module in ("hypercorn", "quart_trio", "s3syncer"):
        if importlib.util.find_spec(module) is None:
            raise BenchmarkError(
                f"{sys.executable} cannot import {module}: run benchmarks/run, which uses "
                "the project's venv, or pip install -e . first"
            )
    if not FIXTURE.exists():
        raise BenchmarkError(f"missing fixture {FIXTURE} (set S3SYNCER_FIXTURES)")


def _shown(path: Path) -> str:
    return str(path.relative_to(REPO)) if path.is_relative_to(REPO) else str(path)


def _profile(
    mode: str,
    py_spy: str | None,
    *,
    serial_ratio: float,
    daemon: Server,
    settings: Settings,
    results: Path,
    step: Callable[[str], None],
) -> tuple[list[str], str]:
    """Profile lines and where the profile files are, when ``mode`` asks for a profile.

    A profile explains a miss; it is not a figure, so a failed one is reported, not fatal.
    """
    if mode == "never" or (mode == "auto" and serial_ratio >= SERIAL_TARGET):
        return [], ""
    if py_spy is None:
        step(f"no profile: py-spy is not installed ({INSTALL_HINT})")
        return [], ""
    step("profiling the daemon under serial load with py-spy")
    results.mkdir(parents=True, exist_ok=True)
    flamegraph, collapsed = results / "webhook-profile.svg", results / "webhook-profile.collapsed"
    try:
        lines = profile_serial(py_spy, daemon, settings, flamegraph, collapsed)
    except (BenchmarkError, subprocess.SubprocessError, OSError) as exc:
        return [f"profiling failed: {exc}"], ""
    return lines, f"`{_shown(flamegraph)}`, collapsed stacks in `{_shown(collapsed)}`"


def run(
    settings: Settings,
    profile: str,
    results: Path,
    before: dict[str, Any] | None,
    command: str,
) -> int:
    """Measure everything, print the table, write the results; 0 when every target holds."""
    began = time.monotonic()
    check_environment()
    wrk = find_wrk()
    py_spy = require_py_spy() if profile == "always" else find_py_spy()
    # Described before the servers start, so the load average is the rest of the machine's.
    machine = describe_machine(wrk_version(wrk))

    def step(text: str) -> None:
        print(f"[{time.monotonic() - began:6.1f}s] {text}", file=sys.stderr, flush=True)

    with tempfile.TemporaryDirectory(prefix="s3syncer-bench-") as tmp:
        workdir = Path(tmp)
        files = write_daemon_config(workdir)
        step("starting s3syncer, the baseline and the Quart-Trio route")
        with servers_running(workdir, workdir / "config.yaml") as servers:
            figures = measure_all(servers, files, wrk, settings, step)
            measured = numbers(figures)
            profile_lines, profile_files = _profile(
                profile,
                py_spy,
                serial_ratio=measured["serial.ratio"],
                daemon=servers["s3syncer"],
                settings=settings,
                results=results,
                step=step,
            )
    report = Report(
        command=command,
        measured_at=measured_now(),
        elapsed_s=time.monotonic() - began,
        machine=machine,
        code=code_revision(),
        rows=build_rows(figures),
        numbers=measured,
        profile=profile_lines,
        profile_files=profile_files,
    )
    _print(report, before, write_results(report, results))
    return 0 if report.passed else 1


def _print(report: Report, before: dict[str, Any] | None, written: Sequence[Path]) -> None:
    print()
    print(render_text(report.rows))
    if report.profile:
        print()
        print("\n".join(report.profile))
    if before is not None:
        print()
        print(compare(before, report))
    print(f"\nthe benchmark took {report.elapsed_s:.0f}s; results in", *map(_shown, written))


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """The command line: load size, profiling, where results go, what to compare with."""
    parser = argparse.ArgumentParser(
        prog="benchmarks/run",
        description="Benchmark s3syncer's webhook against a bare Hypercorn-Trio app.",
    )
    parser.add_argument("--quick", action="store_true", help="smaller loads, for development")
    parser.add_argument(
        "--profile",
        choices=("auto", "always", "never"),
        default="auto",
        help="py-spy the daemon under serial load: when the target is missed (auto), always, never",
    )
    parser.add_argument(
        "--results",
        type=Path,
        default=RESULTS,
        help=f"folder for webhook.md, webhook.json and the profile (default {_shown(RESULTS)})",
    )
    parser.add_argument(
        "--compare",
        type=Path,
        metavar="JSON",
        help="an earlier run's webhook.json: print each figure before and after",
    )
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """Parse the flags and run the benchmark."""
    args = parse_args(argv)
    command = shlex.join(["benchmarks/run", *(sys.argv[1:] if argv is None else argv)])
    try:
        before = read_results(args.compare) if args.compare else None
        settings = QUICK if args.quick else Settings()
        return run(settings, args.profile, args.results.resolve(), before, command)
    except BenchmarkError as exc:
        print(f"benchmark failed: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
