"""The documentation site: built strictly from docs/, opened in Debian's headless Chromium.

``mkdocs build --strict`` (as .ci/run does) into a temporary directory, served over loopback
HTTP (the search fetches its index, which a ``file://`` page may not). In Chromium:

* the home page and a page two levels down show every page of ``mkdocs.yml``'s navigation as
  a link with its title, each link leading to a built page, and the search box;
* the search: Material's own search worker, over the index the build wrote, answers a query
  with the pages that hold it. ``--dump-dom`` does not wait for a Web Worker, so a small probe
  page (written next to the site, not part of it) runs the worker's script in the page itself,
  passing it the same messages the theme does.
"""

from __future__ import annotations

import contextlib
import functools
import json
import subprocess
import sys
import threading
from collections.abc import Iterator
from html.parser import HTMLParser
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, cast
from urllib.parse import urljoin

import pytest
import yaml

from deployment_files import REPO
from test_browser import chromium

pytestmark = [pytest.mark.integration, pytest.mark.slow]

PROBE = """<!doctype html><html><body><pre id="out">pending</pre><script>
const out = document.getElementById("out");
const queries = QUERIES;
const found = {};
window.postMessage = (message) => {
  if (message.type === 1) ask();
  if (message.type === 3) {
    found[queries.shift()] = message.data.items.map((item) => item[0].location);
    if (queries.length) ask(); else out.textContent = JSON.stringify(found);
  }
};
function ask() {
  window.dispatchEvent(new MessageEvent("message", {data: {type: 2, data: queries[0]}}));
}
</script><script src="WORKER"></script><script>
fetch("search/search_index.json").then((answer) => answer.json()).then((index) => {
  const data = {...index, options: {suggest: false}};
  window.dispatchEvent(new MessageEvent("message", {data: {type: 0, data: data}}));
}).catch((error) => { out.textContent = "error " + error; });
</script></body></html>
"""


def nav_pages() -> list[tuple[str, str]]:
    """``(title, docs path)`` of every page in mkdocs.yml's navigation, in order."""
    config = yaml.safe_load((REPO / "mkdocs.yml").read_text(encoding="utf-8"))
    pages: list[tuple[str, str]] = []

    def walk(items: list[Any]) -> None:
        for item in items:
            [(title, value)] = cast(dict[str, Any], item).items()
            if isinstance(value, list):
                walk(value)
            else:
                pages.append((title, value))

    walk(config["nav"])
    return pages


def url_of(path: str) -> str:
    """The URL of a page, relative to the site's root (use_directory_urls)."""
    if path == "index.md" or path.endswith("/index.md"):
        return path.removesuffix("index.md")
    return path.removesuffix(".md") + "/"


class NavLinks(HTMLParser):
    """The navigation's links (``a.md-nav__link``: href -> text) and the search box."""

    def __init__(self) -> None:
        super().__init__()
        self.links: dict[str, str] = {}
        self.search_box = False
        self._href: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = dict(attrs)
        if tag == "a" and "md-nav__link" in (attributes.get("class") or "").split():
            self._href = attributes.get("href") or ""
            self.links.setdefault(self._href, "")
        if attributes.get("data-md-component") == "search-query":
            self.search_box = True

    def handle_endtag(self, tag: str) -> None:
        if tag == "a":
            self._href = None

    def handle_data(self, data: str) -> None:
        if self._href is not None and data.strip():
            self.links[self._href] = (self.links[self._href] + " " + data.strip()).strip()


@contextlib.contextmanager
def served(directory: Path) -> Iterator[str]:
    class Quiet(SimpleHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            pass

    handler = functools.partial(Quiet, directory=str(directory))
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``mkdocs build --strict`` of this clone, into a temporary directory."""
    directory = tmp_path_factory.mktemp("site")
    result = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(directory)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        env={"NO_MKDOCS_2_WARNING": "1", "PATH": "/usr/bin:/bin"},
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return directory


@pytest.mark.parametrize("page", ["index.md", "walkthroughs/systemd.md"])
def test_chromium_shows_the_whole_navigation(site: Path, tmp_path: Path, page: str) -> None:
    with served(site) as root:
        url = root + url_of(page)
        dumped = chromium(tmp_path, url, "--dump-dom")
    assert dumped.returncode == 0, dumped.stderr
    dom = NavLinks()
    dom.feed(dumped.stdout)
    assert dom.search_box, "the page has the search box"
    links: dict[str, set[str]] = {}
    for href, text in dom.links.items():
        links.setdefault(urljoin(url, href).split("#")[0], set()).add(text)
    for title, path in nav_pages():
        target = root + url_of(path)
        assert target in links, (title, target, sorted(links))
        assert any(title in text for text in links[target]), (title, links[target])
        assert (site / url_of(path) / "index.html").is_file(), path


def test_chromium_searches_the_built_site(site: Path, tmp_path: Path) -> None:
    config = json.loads(
        (site / "index.html")
        .read_text()
        .split('<script id="__config" type="application/json">')[1]
        .split("</script>")[0]
    )
    queries = {"restore": "restore/", "DIGEST_INVALID": "registries/distribution/"}
    probe = PROBE.replace("QUERIES", json.dumps(list(queries))).replace("WORKER", config["search"])
    (site / "search-probe.html").write_text(probe, encoding="utf-8")
    with served(site) as root:
        dumped = chromium(
            tmp_path, root + "search-probe.html", "--dump-dom", "--virtual-time-budget=10000"
        )
    assert dumped.returncode == 0, dumped.stderr
    text = dumped.stdout.split('<pre id="out">', 1)[1].split("</pre>", 1)[0]
    found = json.loads(text.replace("&quot;", '"'))
    for query, page in queries.items():
        assert page in [location.split("#")[0] for location in found[query]], (query, found)
