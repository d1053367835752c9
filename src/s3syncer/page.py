"""The status page at ``GET /``: the same facts as ``/status``, for a person.

Server-rendered, no JavaScript: it refreshes itself every few seconds. Every
string that came from a process or a request is escaped.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping
from html import escape
from typing import Any

from .config import format_duration

REFRESH_SECONDS = 10

_STYLE = """
:root { color-scheme: light dark; --ok: #1a7f37; --bad: #cf222e; --run: #0969da; --dim: #6e7781; }
@media (prefers-color-scheme: dark) {
  :root { --ok: #3fb950; --bad: #f85149; --run: #58a6ff; --dim: #8b949e; }
}
a { color: var(--run); }
* { box-sizing: border-box; }
body { font: 15px/1.45 system-ui, sans-serif; margin: 0 auto; max-width: 72rem; padding: 1rem; }
h1 { font-size: 1.25rem; margin: 0 0 .25rem; }
.meta { color: var(--dim); margin: 0 0 1rem; font-size: .875rem; }
.cmds { display: grid; gap: .75rem; grid-template-columns: repeat(auto-fill, minmax(20rem, 1fr)); }
.cmd { border: 1px solid #8884; border-left: .375rem solid var(--dim); border-radius: .5rem;
       padding: .75rem 1rem; }
.cmd.ok { border-left-color: var(--ok); } .cmd.failed { border-left-color: var(--bad); }
.cmd.running { border-left-color: var(--run); }
.cmd h2 { font-size: 1.05rem; margin: 0; display: flex; justify-content: space-between;
          align-items: baseline; gap: .5rem; overflow-wrap: anywhere; }
.mark { font-size: .8rem; font-weight: 600; white-space: nowrap; }
.ok .mark { color: var(--ok); } .failed .mark { color: var(--bad); }
.running .mark { color: var(--run); } .idle .mark, .disabled .mark { color: var(--dim); }
dl { display: grid; grid-template-columns: max-content 1fr; gap: .125rem .75rem; margin: .5rem 0; }
dt { color: var(--dim); } dd { margin: 0; overflow-wrap: anywhere; }
details summary { cursor: pointer; color: var(--run); }
pre { max-height: 24rem; overflow: auto; background: #8881; padding: .5rem; border-radius: .25rem;
      font-size: .8rem; white-space: pre-wrap; overflow-wrap: anywhere; }
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


def _rows(pairs: Iterable[tuple[str, str, str | None]]) -> str:
    """``<dt>/<dd>`` pairs; the third item is a title (the exact time)."""
    html = []
    for label, value, title in pairs:
        attribute = f' title="{escape(title)}"' if title else ""
        html.append(f"<dt>{escape(label)}</dt><dd{attribute}>{escape(value)}</dd>")
    return "".join(html)


def _command_card(command: Mapping[str, Any], now: float) -> str:
    css, label = _mark(command)
    last = command.get("lastRun")
    pairs: list[tuple[str, str, str | None]] = [("pending", str(command["pendingTriggers"]), None)]
    current = command.get("currentRun")
    if current is not None:
        since = ago(_parse(current.get("start")), now)
        pairs.append(("running", f"#{current['runId']} ({current['reason']}) since {since}", None))
    if last is not None:
        started = _parse(last.get("start"))
        pairs.append(("last run", f"#{last['runId']} {ago(started, now)}", last.get("start")))
        pairs.append(("reason", str(last["reason"]), None))
        if last.get("durationSeconds") is not None:
            pairs.append(("took", duration(last["durationSeconds"]), None))
        if last.get("ok") is not None:
            pairs.append(("result", str(last.get("outcome")), None))
    for key, name in (("nextReconcile", "reconcile"), ("nextSchedule", "schedule")):
        if command.get(key):
            pairs.append((name, ago(_parse(command[key]), now), command[key]))
    pairs.append(("runs", f"{command['runs']} ({command['failures']} failed)", None))
    output = ""
    if last is not None and last.get("outputTail"):
        output = (
            "<details><summary>output of the last run</summary>"
            f"<pre>{escape(last['outputTail'])}</pre></details>"
        )
    return (
        f'<section class="cmd {css}"><h2><span>{escape(command["name"])}</span>'
        f'<span class="mark">{escape(label)}</span></h2>'
        f"<dl>{_rows(pairs)}</dl>{output}</section>"
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
