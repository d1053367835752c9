"""The status page at ``GET /``: the same facts as ``/status``, for a person diagnosing.

Server-rendered, no JavaScript: it refreshes itself every few seconds. Each
command gets a card: its state, the events waiting and how old the oldest is,
the last success, the next run or retry, a timeline and a table of the last
runs, and the output of the run in progress or of the last one. Every string
that came from a process, a request or the config is escaped.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping
from html import escape
from typing import Any

from ..model.config import format_duration
from .timeline import render_timeline

REFRESH_SECONDS = 10

_STYLE = """
:root { color-scheme: light dark; --ok: #1a7f37; --bad: #cf222e; --run: #0969da; --dim: #59636e;
        --line: #d0d7de; --track: #f0f2f4; }
@media (prefers-color-scheme: dark) {
  :root { --ok: #3fb950; --bad: #f85149; --run: #58a6ff; --dim: #9198a1; --line: #3d444d;
          --track: #21262d; }
}
a { color: var(--run); }
* { box-sizing: border-box; }
body { font: 15px/1.45 system-ui, sans-serif; margin: 0 auto; max-width: 80rem; padding: 1rem; }
h1 { font-size: 1.25rem; margin: 0 0 .25rem; }
.meta { color: var(--dim); margin: 0 0 1rem; font-size: .875rem; }
.cmds { display: grid; gap: 1rem;
        grid-template-columns: repeat(auto-fill, minmax(min(100%, 34rem), 1fr)); }
.cmd { border: 1px solid var(--line); border-left: .375rem solid var(--dim); border-radius: .5rem;
       padding: .75rem 1rem; min-width: 0; }
.cmd.ok { border-left-color: var(--ok); } .cmd.failed { border-left-color: var(--bad); }
.cmd.running { border-left-color: var(--run); }
.cmd h2 { font-size: 1.05rem; margin: 0; display: flex; justify-content: space-between;
          align-items: baseline; gap: .5rem; overflow-wrap: anywhere; }
.mark { font-size: .8rem; font-weight: 600; white-space: nowrap; }
.ok .mark, td.ok { color: var(--ok); } .failed .mark, td.failed, .late { color: var(--bad); }
.running .mark { color: var(--run); } .idle .mark, .disabled .mark { color: var(--dim); }
dl { display: grid; grid-template-columns: max-content 1fr; gap: .125rem .75rem; margin: .5rem 0; }
dt { color: var(--dim); } dd { margin: 0; overflow-wrap: anywhere; }
h3 { font-size: .85rem; color: var(--dim); font-weight: 600; margin: .75rem 0 .25rem; }
.timeline { display: block; width: 100%; height: 1.5rem; }
.timeline .track { fill: var(--track); }
.bar.ok { fill: var(--ok); } .bar.failed { fill: var(--bad); } .bar.running { fill: var(--run); }
.axis { display: flex; justify-content: space-between; color: var(--dim); font-size: .75rem; }
.runs { max-height: 17rem; overflow: auto; }
table { border-collapse: collapse; width: 100%; font-size: .8rem;
        font-variant-numeric: tabular-nums; }
th { text-align: left; color: var(--dim); font-weight: 600; position: sticky; top: 0;
     background: Canvas; }
th, td { padding: .125rem .5rem .125rem 0; border-bottom: 1px solid var(--line);
         white-space: nowrap; }
td.result { white-space: normal; overflow-wrap: anywhere; }
details summary { cursor: pointer; color: var(--run); margin-top: .5rem; }
@media (max-width: 30rem) {
  body { padding: .5rem; } .cmd { padding: .625rem .75rem; } th, td { padding-right: .375rem; }
}
pre { max-height: 24rem; overflow: auto; background: var(--track); padding: .5rem;
      border-radius: .25rem; font-size: .8rem; white-space: pre-wrap; overflow-wrap: anywhere; }
"""


def ago(when: float | None, now: float) -> str:
    """``"3 min ago"``, ``"in 5 min"``, ``"just now"``; ``"never"`` for None."""
    if when is None:
        return "never"
    delta = now - when
    words = _span(abs(delta))
    if words is None:
        return "just now"
    return f"{words} ago" if delta > 0 else f"in {words}"


def _span(seconds: float) -> str | None:
    if seconds < 5:
        return None
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{int(seconds // size)} {unit}"
    return f"{int(seconds)} s"


def duration(seconds: float) -> str:
    """``"40ms"``, ``"2.5s"``, ``"42s"``, ``"3m5s"``, ``"2h5m"``: syncs may take hours."""
    if seconds < 1:
        return format_duration(round(seconds, 3))
    if seconds < 10:
        return format_duration(round(seconds, 1))
    if seconds < 3600:
        return format_duration(int(seconds))
    return format_duration(int(seconds) // 60 * 60)


def _parse(iso: str | None) -> float | None:
    return None if iso is None else dt.datetime.fromisoformat(iso).timestamp()


def _mark(command: Mapping[str, Any]) -> tuple[str, str]:
    """CSS class and label: running, failed, ok, or the runner's state."""
    state = command["state"]
    last = command.get("lastRun")
    if state == "running":
        return "running", "running"
    if state == "disabled":
        return "disabled", "disabled"
    if last is None or last.get("ok") is None:
        return "idle", "no run yet" if state == "idle" else state
    label = "ok" if last["ok"] else "failed"
    if state in ("waiting", "backoff"):
        label += f", {state}"
    return ("ok" if last["ok"] else "failed"), label


Row = tuple[str, str, str | None]


def _rows(pairs: Iterable[Row]) -> str:
    """``<dt>/<dd>`` pairs; the third item is a title (the exact time)."""
    html = []
    for label, value, title in pairs:
        attribute = f' title="{escape(title)}"' if title else ""
        html.append(f"<dt>{escape(label)}</dt><dd{attribute}>{escape(value)}</dd>")
    return "".join(html)


def _waiting(command: Mapping[str, Any], now: float) -> Row:
    count = int(command.get("pendingEvents") or 0)
    everything = bool(command.get("pendingFullSync"))
    if not count and not everything and not command.get("pendingEventAgeSeconds"):
        return ("events waiting", "none", None)
    oldest = now - float(command.get("pendingEventAgeSeconds") or 0.0)
    # Events were dropped or a journal was unreadable: a count alone would understate it.
    what = f"{count} and a run covering everything" if everything else str(count)
    return ("events waiting", f"{what}, oldest accepted {ago(oldest, now)}", None)


def _facts(command: Mapping[str, Any], now: float) -> list[Row]:
    pairs = [_waiting(command, now)]
    if command.get("pendingTriggers"):
        pairs.append(("triggers pending", str(command["pendingTriggers"]), None))
    current = command.get("currentRun")
    if current is not None:
        since = ago(_parse(current.get("start")), now)
        pairs.append(("running", f"#{current['runId']} {current['reason']}, started {since}", None))
    last = command.get("lastRun")
    if last is not None and last.get("ok") is not None:
        took = duration(last.get("durationSeconds") or 0.0)
        when = ago(_parse(last.get("start")), now)
        text = f"#{last['runId']} {last['reason']} {when}, took {took}: {last.get('outcome')}"
        pairs.append(("last run", text, last.get("start")))
    success = command.get("lastSuccess")
    pairs.append(("last success", ago(_parse(success), now), success))
    if command.get("nextRun") and current is not None:
        # Triggers during a run make one follow-up, never before this run ends.
        pairs.append(("next run", f"after #{current['runId']} ends", command["nextRun"]))
    elif command.get("nextRun"):
        label = "retry" if command["state"] == "backoff" else "next run"
        pairs.append((label, ago(_parse(command["nextRun"]), now), command["nextRun"]))
    for key, name in (("nextReconcile", "reconcile"), ("nextSchedule", "schedule")):
        if command.get(key):
            pairs.append((name, ago(_parse(command[key]), now), command[key]))
    pairs.append(("runs", f"{command['runs']} since start ({command['failures']} failed)", None))
    return pairs


def _history(command: Mapping[str, Any], now: float) -> str:
    runs = command.get("recentRuns") or []
    timeline = render_timeline(runs, command.get("currentRun"), now)
    if not timeline:
        return ""
    current = command.get("currentRun")
    starts = [run["start"] for run in [*runs, *([current] if current else [])]]
    oldest = min(_parse(start) or now for start in starts)
    rows = "".join(
        f"<tr><td>#{run['runId']}</td><td>{escape(run['reason'])}</td>"
        f'<td title="{escape(run["start"])}">{ago(_parse(run["start"]), now)}</td>'
        f"<td>{duration(run['durationSeconds'])}</td>"
        f'<td class="result {"ok" if run["ok"] else "failed"}">{escape(run["result"])}</td>'
        f"<td>{run['triggers']}</td><td>{run['events']}</td></tr>"
        for run in runs
    )
    table = ""
    if rows:
        table = (
            '<div class="runs"><table><thead><tr><th>run</th><th>reason</th><th>started</th>'
            "<th>took</th><th>result</th><th title=triggers>trig.</th><th title=events>ev.</th>"
            "</tr></thead>"
            f"<tbody>{rows}</tbody></table></div>"
        )
    return (
        f'<h3>recent runs</h3>{timeline}<div class="axis"><span>{ago(oldest, now)}'
        f"</span><span>now</span></div>{table}"
    )


def _output(command: Mapping[str, Any]) -> str:
    current = command.get("currentRun")
    if current is not None:
        tail = current.get("outputTail") or "(nothing yet)"
        return (
            f"<details open><summary>output of run #{current['runId']} so far</summary>"
            f"<pre>{escape(tail)}</pre></details>"
        )
    last = command.get("lastRun")
    if last is not None and last.get("outputTail"):
        return (
            "<details><summary>output of the last run</summary>"
            f"<pre>{escape(last['outputTail'])}</pre></details>"
        )
    return ""


def _command_card(command: Mapping[str, Any], now: float) -> str:
    css, label = _mark(command)
    return (
        f'<section class="cmd {css}" id="cmd-{escape(command["name"])}">'
        f'<h2><span>{escape(command["name"])}</span><span class="mark">{escape(label)}</span></h2>'
        f"<dl>{_rows(_facts(command, now))}</dl>{_history(command, now)}{_output(command)}"
        "</section>"
    )


def render_status_page(status: Mapping[str, Any], version: str, now: float) -> str:
    """The whole HTML page for a ``/status`` document."""
    cards = "".join(_command_card(command, now) for command in status["commands"])
    stamp = dt.datetime.fromtimestamp(now, dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    return (
        "<!doctype html><html lang=en><head><meta charset=utf-8>"
        '<meta name=viewport content="width=device-width, initial-scale=1">'
        f'<meta http-equiv=refresh content="{REFRESH_SECONDS}">'
        f"<title>s3syncer</title><style>{_STYLE}</style></head><body>"
        f"<h1>s3syncer</h1><p class=meta>version {escape(version)} &middot; {stamp} &middot; "
        f'refreshes every {REFRESH_SECONDS} s &middot; <a href="status">JSON</a></p>'
        f'<main class="cmds">{cards}</main></body></html>'
    )
