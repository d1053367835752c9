"""The status page at ``GET /``: the same facts as ``/status``, for a person diagnosing.

Server-rendered; it refreshes itself every few seconds with a meta refresh, so it works
without JavaScript. A tiny inline script (:data:`PAGE_SCRIPT`, allowed by the
Content-Security-Policy through :data:`PAGE_SCRIPT_HASH`) carries across each refresh
what a person did: the output sections opened or closed, the page's scroll, and the live
output following its newest line unless they scrolled up in it. Each
command gets a card: its state, the events waiting and how old the oldest is,
the last success, the next run or retry, a timeline and a table of the last
runs, and the output of the run in progress or of the last one. Every string
that came from a process, a request or the config is escaped.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
from collections.abc import Iterable
from html import escape

from ..model.command_view import CommandView
from ..model.config import format_duration
from .status import iso
from .timeline import render_timeline

REFRESH_SECONDS = 10

PAGE_STYLE = """
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

# Each output section sits in a <div class="out" id="out-NAME-RUN">: one place for a run
# while it runs and once it ended. At pagehide (the refresh), the script saves in
# sessionStorage which sections were open, where each output was scrolled and whether it
# was at its newest line, and the page's scroll; the next page puts them back. An output
# that was at its newest line (or is new) is scrolled to its newest line again.
PAGE_SCRIPT = """(function () {
  var KEY = "s3syncer-page", saved = {};
  try { saved = JSON.parse(sessionStorage.getItem(KEY) || "{}") || {}; } catch (e) {}
  var outs = saved.outs || {};
  function place(box) {
    var pre = box.querySelector("pre"), was = outs[box.id];
    if (!pre) return;
    pre.scrollTop = was && !was.bottom ? was.top : pre.scrollHeight;
  }
  document.querySelectorAll("div.out[id]").forEach(function (box) {
    var details = box.querySelector("details"), was = outs[box.id];
    if (was && details) details.open = was.open;
    if (details) details.addEventListener("toggle", function () { place(box); });
    place(box);
  });
  if (typeof saved.y === "number") {
    history.scrollRestoration = "manual";
    window.scrollTo(0, saved.y);
  }
  addEventListener("pagehide", function () {
    var now = {};
    document.querySelectorAll("div.out[id]").forEach(function (box) {
      var details = box.querySelector("details"), pre = box.querySelector("pre");
      var bottom = !pre || pre.scrollTop + pre.clientHeight >= pre.scrollHeight - 4;
      now[box.id] = {open: !!(details && details.open), top: pre ? pre.scrollTop : 0,
                     bottom: bottom || !(details && details.open)};
    });
    try {
      sessionStorage.setItem(KEY, JSON.stringify({outs: now, y: window.scrollY}));
    } catch (e) {}
  });
})();"""


def _csp_hash(text: str) -> str:
    return "sha256-" + base64.b64encode(hashlib.sha256(text.encode()).digest()).decode()


# For the Content-Security-Policy: script-src 'PAGE_SCRIPT_HASH', style-src 'PAGE_STYLE_HASH'.
PAGE_SCRIPT_HASH = _csp_hash(PAGE_SCRIPT)
PAGE_STYLE_HASH = _csp_hash(PAGE_STYLE)


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


def _mark(command: CommandView) -> tuple[str, str]:
    """CSS class and label: running, failed, ok, or the runner's state."""
    state = command.state
    last = command.last_run
    if state == "running":
        return "running", "running"
    if state == "disabled":
        return "disabled", "disabled"
    if last is None or last.result is None:
        return "idle", "no run yet" if state == "idle" else state
    ok = last.result.ok
    label = "ok" if ok else "failed"
    if state in ("waiting", "backoff"):
        label += f", {state}"
    return ("ok" if ok else "failed"), label


Row = tuple[str, str, str | None]


def _rows(pairs: Iterable[Row]) -> str:
    """``<dt>/<dd>`` pairs; the third item is a title (the exact time)."""
    html = []
    for label, value, title in pairs:
        attribute = f' title="{escape(title)}"' if title else ""
        html.append(f"<dt>{escape(label)}</dt><dd{attribute}>{escape(value)}</dd>")
    return "".join(html)


def _waiting(command: CommandView, now: float) -> Row:
    count = command.pending_events
    everything = command.pending_full_sync
    if not count and not everything and not command.pending_event_age:
        return ("events waiting", "none", None)
    oldest = now - command.pending_event_age
    # Events were dropped or a journal was unreadable: a count alone would understate it.
    what = f"{count} and a run covering everything" if everything else str(count)
    return ("events waiting", f"{what}, oldest accepted {ago(oldest, now)}", None)


def _when(label: str, at: float | None, now: float) -> Row:
    return (label, ago(at, now), iso(at))


def _facts(command: CommandView, now: float) -> list[Row]:
    pairs = [_waiting(command, now)]
    if command.pending_triggers:
        pairs.append(("triggers pending", str(command.pending_triggers), None))
    current = command.current_run
    if current is not None:
        since = ago(current.started_at, now)
        pairs.append(("running", f"#{current.run_id} {current.reason}, started {since}", None))
    last = command.last_run
    if last is not None and last.result is not None:
        took = duration(last.duration or 0.0)
        when = ago(last.started_at, now)
        text = f"#{last.run_id} {last.reason} {when}, took {took}: {last.result.describe()}"
        if last.before_restart:
            text += " (before the restart; its output was not kept)"
        pairs.append(("last run", text, iso(last.started_at)))
    success = command.last_success
    pairs.append(_when("last success", None if success is None else success.ended_at, now))
    full_pass = command.last_full_pass
    if full_pass is not None and full_pass.result is not None and full_pass.result.report:
        # A repair in a full pass is a change no notification brought: worth a look.
        found = full_pass.result.report.describe()
        when = ago(full_pass.ended_at, now)
        pairs.append(("last full pass", f"{when}: {found}", iso(full_pass.ended_at)))
    if command.next_run is not None and current is not None:
        # Triggers during a run make one follow-up, never before this run ends.
        pairs.append(("next run", f"after #{current.run_id} ends", iso(command.next_run)))
    elif command.next_run is not None:
        label = "retry" if command.state == "backoff" else "next run"
        pairs.append(_when(label, command.next_run, now))
    elif (stalled := _stalled(command, now)) is not None:
        pairs.append(stalled)
    for name, at in (("reconcile", command.next_reconcile), ("schedule", command.next_schedule)):
        if at is not None:
            pairs.append(_when(name, at, now))
    pairs.append(("runs", f"{command.runs} since start ({command.failures} failed)", None))
    return pairs


def _stalled(command: CommandView, now: float) -> Row | None:
    """After a failure that will not be retried: what will run the command again."""
    last = command.last_run
    if command.state != "idle" or last is None or last.result is None or last.result.ok:
        return None
    if last.before_restart:
        why = "failed before the restart"
    elif command.retry_attempts:
        why = f"retries used up ({command.retry_attempts} of {command.retry_attempts})"
    else:
        why = "no retry configured"
    wakes = ["the next event"] if command.listens else []
    if command.next_reconcile is not None:
        wakes.append(f"the reconcile {ago(command.next_reconcile, now)}")
    if command.next_schedule is not None:
        wakes.append(f"the schedule tick {ago(command.next_schedule, now)}")
    wakes.append("a manual run")
    until = wakes[0] if len(wakes) == 1 else f"{', '.join(wakes[:-1])} or {wakes[-1]}"
    return ("next run", f"none: {why}; nothing runs until {until}", None)


def _history(command: CommandView, now: float) -> str:
    runs = command.recent_runs
    current = command.current_run
    timeline = render_timeline(runs, current, now)
    if not timeline:
        return ""
    starts = [run.started_at for run in runs]
    if current is not None:
        starts.append(current.started_at)
    oldest = min(starts)
    rows = "".join(
        f"<tr><td>#{run.run_id}</td><td>{escape(run.reason)}</td>"
        f'<td title="{iso(run.started_at)}">{ago(run.started_at, now)}</td>'
        f"<td>{duration(run.duration)}</td>"
        f'<td class="result {"ok" if run.ok else "failed"}">{escape(run.outcome)}</td>'
        f"<td>{run.triggers}</td><td>{run.events}</td></tr>"
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


def _output(command: CommandView) -> str:
    current = command.current_run
    if current is not None:
        tail = (current.output.text if current.output is not None else "") or "(nothing yet)"
        return _output_box(
            command.name, current.run_id, f"output of run #{current.run_id} so far", tail, True
        )
    last = command.last_run
    if last is not None and last.result is not None and last.result.output_tail:
        # A failure's output is what a person opens the page for: it starts open.
        return _output_box(
            command.name,
            last.run_id,
            "output of the last run",
            last.result.output_tail,
            not last.result.ok,
        )
    return ""


def _output_box(name: str, run_id: int, summary: str, text: str, is_open: bool) -> str:
    # One id per run, live or ended: the script keeps what a person opened across refreshes.
    return (
        f'<div class="out" id="out-{escape(name)}-{run_id}">'
        f"<details{' open' if is_open else ''}><summary>{summary}</summary>"
        f"<pre>{escape(text)}</pre></details></div>"
    )


def _command_card(command: CommandView, now: float) -> str:
    css, label = _mark(command)
    return (
        f'<section class="cmd {css}" id="cmd-{escape(command.name)}">'
        f'<h2><span>{escape(command.name)}</span><span class="mark">{escape(label)}</span></h2>'
        f"<dl>{_rows(_facts(command, now))}</dl>{_history(command, now)}{_output(command)}"
        "</section>"
    )


def render_status_page(commands: Iterable[CommandView], version: str, now: float) -> str:
    """The whole HTML page for the commands' views; ``now`` is Unix time."""
    cards = "".join(_command_card(command, now) for command in commands)
    stamp = dt.datetime.fromtimestamp(now, dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    return (
        "<!doctype html><html lang=en><head><meta charset=utf-8>"
        '<meta name=viewport content="width=device-width, initial-scale=1">'
        f'<meta http-equiv=refresh content="{REFRESH_SECONDS}">'
        f"<title>s3syncer</title><style>{PAGE_STYLE}</style></head><body>"
        f"<h1>s3syncer</h1><p class=meta>version {escape(version)} &middot; {stamp} &middot; "
        f'refreshes every {REFRESH_SECONDS} s &middot; <a href="status">JSON</a></p>'
        f'<main class="cmds">{cards}</main><script>{PAGE_SCRIPT}</script></body></html>'
    )
