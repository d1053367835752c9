"""A small inline SVG of a command's recent runs: when each ran, how long, ok or failed.

Plain SVG, no script: each bar carries a ``<title>`` that a browser shows on
hover. Bars have a minimum width, so a run of 20 ms among hours is still seen.
"""

from __future__ import annotations

from collections.abc import Sequence
from html import escape

from ..model.run import PastRun, RunRecord
from .status import iso

WIDTH = 600
HEIGHT = 24
MIN_BAR = 3.0


def _bar(run: PastRun | RunRecord, start: float, end: float, x0: float, scale: float) -> str:
    if isinstance(run, PastRun):
        css, result = ("ok" if run.ok else "failed"), run.outcome
    else:
        css, result = "running", "running"
    x = (start - x0) * scale
    width = max(MIN_BAR, (end - start) * scale)
    x = min(x, WIDTH - width)
    title = f"#{run.run_id} {run.reason}: {result}, {iso(run.started_at)}"
    return (
        f'<rect class="bar {css}" x="{x:.1f}" y="2" width="{width:.1f}" height="{HEIGHT - 4}" '
        f'rx="1"><title>{escape(title)}</title></rect>'
    )


def render_timeline(runs: Sequence[PastRun], current: RunRecord | None, now: float) -> str:
    """The SVG for the recent runs (any order) and the run in progress; empty with no run."""
    spans: list[tuple[PastRun | RunRecord, float, float]] = [
        (run, run.started_at, run.started_at + run.duration) for run in runs
    ]
    if current is not None:
        spans.append((current, current.started_at, now))
    if not spans:
        return ""
    x0 = min(start for _, start, _ in spans)
    scale = WIDTH / max(now - x0, 1.0)
    bars = "".join(_bar(run, start, end, x0, scale) for run, start, end in spans)
    label = f"timeline of the last {len(spans)} runs"
    return (
        f'<svg class="timeline" viewBox="0 0 {WIDTH} {HEIGHT}" preserveAspectRatio="none" '
        f'role="img" aria-label="{label}"><title>{label}</title>'
        f'<rect class="track" x="0" y="0" width="{WIDTH}" height="{HEIGHT}"/>{bars}</svg>'
    )
