"""``s3syncer run NAME`` against real local HTTP servers (issue 28).

It used to follow a redirect to another origin with the token still attached and report
"run requested (200)" from whoever answered there; and it ignored the config file, so
the daemon's address and token had to be repeated by hand. Now it reads ``listen`` and
``auth`` from the config (flags and the environment still win), never follows a redirect,
and reports success only when the daemon answered 202.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from s3syncer.cli.main import main

pytestmark = pytest.mark.integration

TOKEN = "run-client-token-8812"


@dataclass
class Server:
    """A local HTTP server answering every POST with ``status`` (and ``location``)."""

    status: int = 202
    location: str | None = None
    seen: list[tuple[str, str | None]] = field(default_factory=list)  # (path, Authorization)
    url: str = ""


@pytest.fixture
def servers() -> Iterator[list[Server]]:
    """Two servers on loopback: two origins (the ports differ)."""
    started: list[tuple[ThreadingHTTPServer, threading.Thread]] = []
    states = [Server(), Server()]
    for state in states:
        httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler(state))
        state.url = f"http://127.0.0.1:{httpd.server_address[1]}"
        thread = threading.Thread(target=httpd.serve_forever, daemon=True)
        thread.start()
        started.append((httpd, thread))
    yield states
    for httpd, thread in started:
        httpd.shutdown()
        httpd.server_close()
        thread.join(10)


def _handler(state: Server) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self._answer()

        def do_GET(self) -> None:
            self._answer()

        def _answer(self) -> None:
            state.seen.append((self.path, self.headers.get("Authorization")))
            self.send_response(state.status)
            if state.location is not None:
                self.send_header("Location", state.location)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *_args: object) -> None:
            pass

    return Handler


def config_file(tmp_path: Path, listen: str, token: str = TOKEN) -> Path:
    """A config whose listen and token the client should use."""
    path = tmp_path / "config.yaml"
    path.write_text(
        f'listen: "{listen}"\nauth: {{token: {token}}}\n'
        "commands: [{name: push, cmd: /bin/true}]\n",
        encoding="utf-8",
    )
    return path


@pytest.fixture(autouse=True)
def no_s3syncer_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("S3SYNCER_TOKEN", "S3SYNCER_LISTEN", "S3SYNCER_CONFIG"):
        monkeypatch.delenv(name, raising=False)


def test_url_and_token_come_from_the_config(
    tmp_path: Path, servers: list[Server], capsys: pytest.CaptureFixture[str]
) -> None:
    daemon = servers[0]
    config = config_file(tmp_path, daemon.url.removeprefix("http://"))
    assert main(["run", "push", "--config", str(config)]) == 0
    assert daemon.seen == [("/run/push", f"Bearer {TOKEN}")]
    assert capsys.readouterr().out == "push: run requested (202)\n"


def test_a_listen_on_every_interface_is_reached_on_loopback(
    tmp_path: Path, servers: list[Server], monkeypatch: pytest.MonkeyPatch
) -> None:
    port = servers[0].url.rpartition(":")[2]
    monkeypatch.setenv("S3SYNCER_CONFIG", str(config_file(tmp_path, f":{port}")))
    assert main(["run", "push"]) == 0
    assert servers[0].seen == [("/run/push", f"Bearer {TOKEN}")]


def test_flags_and_environment_win_over_the_config(
    tmp_path: Path, servers: list[Server], monkeypatch: pytest.MonkeyPatch
) -> None:
    in_config, by_flag = servers
    config = config_file(tmp_path, in_config.url.removeprefix("http://"))
    token_file = tmp_path / "token"
    token_file.write_text("from-the-flag\n", encoding="utf-8")
    run = ["run", "push", "--config", str(config)]
    assert main([*run, "--url", by_flag.url, "--token-file", str(token_file)]) == 0
    monkeypatch.setenv("S3SYNCER_TOKEN", "from-the-env")
    assert main(run) == 0
    assert by_flag.seen == [("/run/push", "Bearer from-the-flag")]
    assert in_config.seen == [("/run/push", "Bearer from-the-env")]


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
def test_a_redirect_is_never_followed(
    servers: list[Server],
    status: int,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    daemon, elsewhere = servers
    daemon.status, daemon.location = status, f"{elsewhere.url}/run/push"
    monkeypatch.setenv("S3SYNCER_TOKEN", TOKEN)
    assert main(["run", "push", "--url", daemon.url]) == 1
    assert elsewhere.seen == []  # neither the request nor the token went there
    out, err = capsys.readouterr()
    assert out == ""
    assert f"{status}" in err
    assert f"redirects to {elsewhere.url}/run/push: not followed" in err
    assert TOKEN not in out + err


@pytest.mark.parametrize("status", [200, 204])
def test_only_202_is_success(
    tmp_path: Path, servers: list[Server], status: int, capsys: pytest.CaptureFixture[str]
) -> None:
    servers[0].status = status
    assert main(["run", "push", "--url", servers[0].url]) == 1
    out, err = capsys.readouterr()
    assert out == ""
    assert f"answered {status}, not 202: is this an s3syncer daemon?" in err


def test_a_bad_config_named_by_flag_is_reported(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = tmp_path / "missing.yaml"
    assert main(["run", "push", "--config", str(missing)]) == 2
    assert f"{missing}: cannot read" in capsys.readouterr().err
