"""The status page in a real browser: Debian's headless Chromium against a real daemon.

Chromium loads the page with the token as the Basic password in the URL (what an
operator types), and the test reads the DOM it built (``--dump-dom``). Screenshots
at 390 px and 1280 px, light and dark, go to ``artifacts/page/`` for a person to judge
(CI keeps them).
"""

from __future__ import annotations

import json
import os
import shutil
import struct
import subprocess
from functools import partial
from html.parser import HTMLParser
from pathlib import Path

import pytest

from cdp import Browser
from daemon import Daemon, start_daemon
from waiting import wait_until

pytestmark = pytest.mark.integration

TOKEN = "browser-token-7"
BEARER = {"Authorization": f"Bearer {TOKEN}"}
ARTIFACTS = Path(__file__).resolve().parent.parent / "artifacts" / "page"
CHROMIUM_TIMEOUT = 120.0
WIDTHS = {390: 1800, 1280: 1100}  # width: height of the window


def chromium(tmp_path: Path, url: str, *flags: str) -> subprocess.CompletedProcess[str]:
    """Run headless Chromium once; it must be installed (Debian's ``chromium``)."""
    binary = shutil.which("chromium")
    assert binary is not None, "Debian's chromium is needed: apt-get install -y chromium"
    argv = [
        binary,
        "--headless",
        "--disable-gpu",
        "--hide-scrollbars",
        "--no-first-run",
        f"--user-data-dir={tmp_path / 'chromium-profile'}",
        *flags,
        url,
    ]
    if os.geteuid() == 0:
        argv.insert(1, "--no-sandbox")  # Chromium refuses to run as root with its sandbox
    return subprocess.run(
        argv, capture_output=True, text=True, timeout=CHROMIUM_TIMEOUT, check=False
    )


class Dom(HTMLParser):
    """What the test asserts on: each command's card, its history rows, timeline bars, text."""

    def __init__(self) -> None:
        super().__init__()
        self.cards: dict[str, dict[str, list[str]]] = {}
        self._card: dict[str, list[str]] | None = None
        self._row: list[str] | None = None
        self._cell = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = dict(attrs)
        if tag == "section" and (attributes.get("id") or "").startswith("cmd-"):
            self._card = {"class": [attributes.get("class") or ""], "rows": [], "bars": []}
            self._card["text"] = []
            self.cards[(attributes["id"] or "")[4:]] = self._card
        elif self._card is None:
            return
        elif tag == "tr":
            self._row = []
        elif tag == "td":
            self._cell = True
        elif tag == "svg" and "timeline" in (attributes.get("class") or ""):
            self._card["timeline"] = ["yes"]
        elif tag == "rect" and (attributes.get("class") or "").startswith("bar "):
            self._card["bars"].append((attributes.get("class") or "")[4:])

    def handle_endtag(self, tag: str) -> None:
        if tag == "section":
            self._card = None
        elif tag == "td":
            self._cell = False
        elif tag == "tr" and self._card is not None and self._row:
            self._card["rows"].append(" | ".join(self._row))
            self._row = None

    def handle_data(self, data: str) -> None:
        if self._card is None:
            return
        self._card["text"].append(data)
        if self._cell and self._row is not None:
            self._row.append(data.strip())


def _png_size(path: Path) -> tuple[int, int]:
    header = path.read_bytes()[:24]
    assert header[:8] == b"\x89PNG\r\n\x1a\n", path
    width, height = struct.unpack(">II", header[16:24])
    return width, height


def _prepare(tmp_path: Path) -> tuple[str, Path]:
    release = tmp_path / "release"
    busy = (
        "echo 'copying layer 1 <of 3>'; echo 'slow endpoint' >&2; echo 'copying layer 2'; "
        f"while [ ! -e {release} ]; do sleep 0.05; done"
    )
    commands = [
        '{name: mirror, cmd: /bin/sh, args: [-c, "echo copied; echo note >&2"], delay: 50ms}',
        "{name: broken, cmd: /bin/sh, args: [-c, \"echo 'no <route>' >&2; exit 3\"], delay: 50ms}",
        f'{{name: busy, cmd: /bin/sh, args: [-c, "{busy}"], runOnStart: true}}',
        "{name: by-hand, cmd: /bin/true, events: []}",
    ]
    config = f"auth: {{token: {TOKEN}}}\nshutdownGrace: 2s\ncommands:\n" + "".join(
        f"  - {command}\n" for command in commands
    )
    return config, release


def _run(daemon: Daemon, name: str, count: int) -> None:
    for done in range(1, count + 1):
        assert daemon.post(f"/run/{name}", b"", BEARER)[0] == 202
        wait_until(
            partial(_has_run, daemon, name, done),
            timeout=20,
            message=lambda: f"{name}: {_status(daemon)[name]}",
        )


def _has_run(daemon: Daemon, name: str, count: int) -> bool:
    runs = _status(daemon)[name]["runs"]
    assert isinstance(runs, int)
    return runs >= count


def _status(daemon: Daemon) -> dict[str, dict[str, object]]:
    code, _, body = daemon.get("/status", BEARER)
    assert code == 200, body
    return {c["name"]: c for c in json.loads(body)["commands"]}


def test_chromium_shows_each_card_its_history_and_timeline(tmp_path: Path) -> None:
    config, release = _prepare(tmp_path)
    with start_daemon(tmp_path, config) as daemon:
        _run(daemon, "mirror", 4)
        _run(daemon, "broken", 1)
        wait_until(lambda: "copying layer 2" in daemon.log_text(), timeout=20)
        url = f"http://x:{TOKEN}@127.0.0.1:{daemon.port}/"

        dumped = chromium(tmp_path, url, "--dump-dom")
        assert dumped.returncode == 0, dumped.stderr[-2000:]
        dom = Dom()
        dom.feed(dumped.stdout)
        assert set(dom.cards) == {"mirror", "broken", "busy", "by-hand"}, dumped.stdout[:2000]

        mirror, broken, busy, by_hand = (
            dom.cards[n] for n in ("mirror", "broken", "busy", "by-hand")
        )
        assert mirror["class"] == ["cmd ok"] and broken["class"] == ["cmd failed"]
        assert busy["class"] == ["cmd running"]
        # The history, newest first: run, reason, started, took, result, triggers, events.
        assert [row.split(" | ")[0] for row in mirror["rows"]] == ["#4", "#3", "#2", "#1"]
        assert all(row.split(" | ")[4] == "exit 0" for row in mirror["rows"])
        assert all(row.split(" | ")[3].endswith("ms") for row in mirror["rows"])
        [failed] = broken["rows"]
        assert failed.split(" | ")[1] == "manual" and failed.split(" | ")[4] == "exit 3"
        # The timeline: a bar per run, coloured by its result; the running run is one too.
        assert mirror.get("timeline") and mirror["bars"] == ["ok"] * 4
        assert broken["bars"] == ["failed"] and busy["bars"] == ["running"]
        assert "timeline" not in by_hand and by_hand["rows"] == []
        # The running run's output so far, in the order it was written, escaped and intact.
        busy_text = "".join(busy["text"])
        assert "output of run #1 so far" in busy_text
        assert "copying layer 1 <of 3>\nslow endpoint\ncopying layer 2\n" in busy_text
        assert "no <route>" in "".join(broken["text"])

        # /status works from the browser too, with the same credentials.
        document = chromium(tmp_path, url + "status", "--dump-dom")
        assert document.returncode == 0, document.stderr[-2000:]
        assert (
            '"name": "by-hand"' in document.stdout
            and '"recentRuns": [{"runId": 4' in document.stdout
        )

        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        for width, height in WIDTHS.items():
            for scheme, flags in (("light", ()), ("dark", ("--force-dark-mode",))):
                shot = ARTIFACTS / f"status-{width}-{scheme}.png"
                shot.unlink(missing_ok=True)
                taken = chromium(
                    tmp_path, url, *flags, f"--window-size={width},{height}", f"--screenshot={shot}"
                )
                assert taken.returncode == 0, taken.stderr[-2000:]
                assert _png_size(shot) == (width, height)
        release.touch()


LIVE_LINES = 300
AT_NEWEST = (
    "(p => p.scrollHeight > p.clientHeight && p.scrollTop + p.clientHeight >= p.scrollHeight - 4)"
)


@pytest.mark.slow
def test_a_refresh_keeps_what_a_person_opened_and_the_live_output_at_its_newest_line(
    tmp_path: Path,
) -> None:
    release = tmp_path / "release"
    live = (
        f"i=1; while [ $i -le {LIVE_LINES} ]; do echo line $i; i=$((i+1)); done; "
        f"while [ ! -e {release} ]; do sleep 0.05; done"
    )
    commands = [
        '{name: mirror, cmd: /bin/sh, args: [-c, "echo copied"], delay: 50ms}',
        "{name: broken, cmd: /bin/sh, args: [-c, \"echo 'no route' >&2; exit 3\"], delay: 50ms}",
        f'{{name: live, cmd: /bin/sh, args: [-c, "{live}"], runOnStart: true}}',
    ]
    config = f"auth: {{token: {TOKEN}}}\nshutdownGrace: 2s\ncommands:\n" + "".join(
        f"  - {command}\n" for command in commands
    )
    with start_daemon(tmp_path, config) as daemon, Browser(tmp_path / "profile") as browser:
        _run(daemon, "mirror", 1)
        _run(daemon, "broken", 1)
        wait_until(lambda: f"line {LIVE_LINES}" in daemon.log_text(), timeout=20)
        browser.open(f"http://x:{TOKEN}@127.0.0.1:{daemon.port}/")

        def shown() -> str:
            return str(browser.evaluate("document.body && document.body.innerText.slice(0, 2000)"))

        browser.wait_for(
            "document.readyState == 'complete' && !!document.getElementById('out-live-1')",
            30,
            shown,
        )
        section = "document.querySelector('#out-{} details')"
        # Before a person does anything: a failed run's output is open, a success's closed,
        # and the live output shows its newest line.
        assert browser.evaluate(section.format("broken-1") + ".open") is True
        assert browser.evaluate(section.format("mirror-1") + ".open") is False
        assert browser.evaluate(f"{AT_NEWEST}(document.querySelector('#out-live-1 pre'))")
        # A person opens the successful run's output and closes the failed one's.
        browser.evaluate(section.format("mirror-1") + ".querySelector('summary').click()")
        browser.evaluate(section.format("broken-1") + ".querySelector('summary').click()")
        loaded = browser.evaluate("performance.timeOrigin")
        # The page's own refresh (10 s), not a reload by the test.
        browser.wait_for(
            f"performance.timeOrigin != {loaded} && document.readyState == 'complete'",
            30,
            shown,
        )
        assert browser.evaluate(section.format("mirror-1") + ".open") is True
        assert browser.evaluate(section.format("broken-1") + ".open") is False
        live_pre = "document.querySelector('#out-live-1 pre')"
        assert browser.evaluate(f"{AT_NEWEST}({live_pre})"), browser.evaluate(
            f"[{live_pre}.scrollTop, {live_pre}.clientHeight, {live_pre}.scrollHeight]"
        )
        newest = browser.evaluate(f"{live_pre}.textContent.trim().split('\\n').pop()")
        assert newest == f"line {LIVE_LINES}"

        # Scrolled up to read an older line, the output stays there; so does the page.
        browser.evaluate(f"{live_pre}.scrollTop = 40")
        page_y = browser.evaluate("window.scrollTo(0, 120), window.scrollY")
        loaded = browser.evaluate("performance.timeOrigin")
        browser.wait_for(
            f"performance.timeOrigin != {loaded} && document.readyState == 'complete'",
            30,
            shown,
        )
        assert browser.evaluate(f"{live_pre}.scrollTop") == 40
        assert page_y > 0 and browser.evaluate("window.scrollY") == page_y
        release.touch()
