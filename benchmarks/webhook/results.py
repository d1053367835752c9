"""The results files of a run, and what they say about where and how it was measured.

Every run writes ``webhook.md`` (the section a person copies into benchmarks/README.md) and
``webhook.json`` (the same rows plus the raw figures, for ``--compare`` with a later run).
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import time
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from benchmarks.webhook import BenchmarkError
from benchmarks.webhook.report import HEADER, Row
from benchmarks.webhook.settings import REPO

STACK = ("s3syncer", "hypercorn", "trio", "quart-trio", "h11")


@dataclass(frozen=True)
class Report:
    """One run: its rows, its figures and where and how it was measured."""

    command: str
    measured_at: str
    elapsed_s: float
    machine: list[str]
    code: str
    rows: list[Row]
    numbers: dict[str, float]
    profile: list[str]
    profile_files: str = ""

    @property
    def passed(self) -> bool:
        """Whether every figure with a target met it."""
        return all(row.verdict != "FAIL" for row in self.rows)


def _package_version(name: str) -> str:
    try:
        return version(name)
    except PackageNotFoundError:
        return "?"


def code_revision() -> str:
    """The code measured: HEAD, the last commit that changed src/, and any local changes.

    The last change to src/ is what tells a "before" run from an "after" run; HEAD alone
    also moves with commits that touch only tests or docs.
    """

    def git(*args: str) -> str:
        done = subprocess.run(
            ["git", "-C", str(REPO), *args], check=False, capture_output=True, text=True
        )
        return done.stdout.strip() if done.returncode == 0 else ""

    head = git("rev-parse", "--short", "HEAD")
    if not head:
        return "unknown (not a git checkout)"
    changed = git("log", "-1", "--format=%h", "--", "src")
    dirty = " plus uncommitted changes in src/" if git("status", "--porcelain", "--", "src") else ""
    return f"HEAD {head}, src/ as of commit {changed}{dirty}"


def describe_machine(wrk_version: str) -> list[str]:
    """nproc, CPU model and load, Python, kernel and the versions of the stack."""
    model = "unknown"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            model = line.split(":", 1)[1].strip()
            break
    stack = ", ".join(f"{name} {_package_version(name)}" for name in STACK)
    return [
        f"- CPUs (nproc): {os.cpu_count()}; model: {model}; load average before the run "
        + " ".join(f"{n:.2f}" for n in os.getloadavg()),
        f"- Python {platform.python_version()} ({platform.python_implementation()}); "
        f"kernel {platform.release()} ({platform.machine()})",
        f"- {stack}; {wrk_version}",
    ]


def measured_now() -> str:
    """The wall-clock time of a run, as the results show it."""
    return time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())


def render_markdown(report: Report) -> str:
    """The section a person copies into benchmarks/README.md."""
    out = [
        f"Measured {report.measured_at} by `{report.command}` in {report.elapsed_s:.0f} s, on:",
        "",
        *report.machine,
        f"- s3syncer code: {report.code}",
        "",
        "| " + " | ".join(HEADER) + " |",
        "|" + "---|" * len(HEADER),
    ]
    for row in report.rows:
        cells = (*row.cells()[:-1], f"**{row.verdict}**")
        out.append("| " + " | ".join(cells) + " |")
    if report.profile:
        out += [
            "",
            f"Profile of the daemon under the serial load ({report.profile_files}):",
            "",
            "```",
            *report.profile,
            "```",
        ]
    return "\n".join(out) + "\n"


def to_json(report: Report) -> dict[str, Any]:
    """The report as JSON: rows as shown, figures as numbers."""
    return {
        "benchmark": "webhook",
        "command": report.command,
        "measured_at": report.measured_at,
        "elapsed_s": round(report.elapsed_s, 1),
        "machine": report.machine,
        "code": report.code,
        "passed": report.passed,
        "rows": [dict(zip(HEADER, row.cells(), strict=True)) for row in report.rows],
        "figures": report.numbers,
        "profile": report.profile,
    }


def write_results(report: Report, directory: Path) -> list[Path]:
    """Write ``webhook.md`` and ``webhook.json`` into ``directory``; return their paths."""
    directory.mkdir(parents=True, exist_ok=True)
    markdown, data = directory / "webhook.md", directory / "webhook.json"
    markdown.write_text(render_markdown(report))
    data.write_text(json.dumps(to_json(report), indent=2) + "\n")
    return [markdown, data]


def read_results(path: Path) -> dict[str, Any]:
    """An earlier run's ``webhook.json``; a clear error when it is not one."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise BenchmarkError(f"cannot read the results file {path}: {exc}") from exc
    if not isinstance(data, dict) or data.get("benchmark") != "webhook":
        raise BenchmarkError(f"{path} is not a webhook.json written by benchmarks/run")
    return data


def compare(before: dict[str, Any], report: Report) -> str:
    """Each figure of an earlier run beside this run's, with after/before."""
    old, new = before["figures"], report.numbers
    names = [name for name in new if name in old]
    width = max(len(name) for name in names)
    out = [
        f"compared with the run of {before['measured_at']} ({before['code']}):",
        f"{'figure'.ljust(width)}  {'before':>10}  {'after':>10}  after/before",
    ]
    for name in names:
        ratio = f"{new[name] / old[name]:.2f}x" if old[name] else "-"
        out.append(f"{name.ljust(width)}  {old[name]:>10.2f}  {new[name]:>10.2f}  {ratio}")
    return "\n".join(out)
