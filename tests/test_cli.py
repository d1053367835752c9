"""The command line: ``check``, ``--version``, the original single-dash flags, exit codes.

``serve`` is only driven here up to the point where it would start serving:
its config and listen validation, and which settings it hands to the service.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from s3syncer import __version__
from s3syncer.cli import serve as serve_command
from s3syncer.cli.check import summarise
from s3syncer.cli.main import main, normalise_argv
from s3syncer.config import file as config_file
from s3syncer.config.file import parse_config
from s3syncer.daemon import service
from s3syncer.model.config import Config

SECRET = "s3cr3t-T0ken-value"
ENV_SECRET = "hunter2-env-value"
GOOD = f"""\
listen: ":9999"
auth: {{token: {SECRET}}}
stateDir: /var/lib/s3syncer
commands:
  - name: push
    cmd: /usr/local/bin/mc
    args: [mirror, --jobs, 4, local/registry, remote/registry]
    env: {{MC_CONFIG_DIR: /etc/mc, MC_PASSWORD: {ENV_SECRET}}}
    workdir: /tmp
    delay: 3s
    reconcile: 60s
    runAt: "0 3 * * *"
    runOnStart: true
    timeout: 1h
    retry: {{attempts: 3, backoff: 10s}}
    events:
      - {{action: push, tagged: true}}
      - {{action: delete, repository: "team/*"}}
  - {{name: idle, cmd: /bin/true, disable: true, delay: 30s, formats: [harbor, cloudevents]}}
"""
BAD = """\
shutdownGrace: soon
commands:
  - {name: a, cmd: x, delay: 3x}
  - {name: "a b", cmd: x, colour: red}
  - {name: a, runAt: "61 * * * *"}
"""
BAD_ERRORS = [
    'shutdownGrace: "soon" is not a duration',
    'commands[0].delay: "3x" is not a duration',
    "commands[1].colour: unknown key",
    'commands[1].name: "a b" may only use letters',
    'commands[2].name: "a" is already used by commands[0]',
    "commands[2].cmd: is missing",
    'commands[2].runAt: "61 * * * *" is not a valid cron schedule',
]


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests decide the S3SYNCER_* environment themselves."""
    for name in ("S3SYNCER_CONFIG", "S3SYNCER_LISTEN", "S3SYNCER_TOKEN"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def restore_logging() -> Iterator[None]:
    """``serve`` configures the root logger; put it back for the tests after this one."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers = handlers
    root.setLevel(level)


@pytest.fixture
def good(tmp_path: Path) -> Path:
    path = tmp_path / "good.yaml"
    path.write_text(GOOD)
    return path


@pytest.fixture
def bad(tmp_path: Path) -> Path:
    path = tmp_path / "bad.yaml"
    path.write_text(BAD)
    return path


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


# --- normalise_argv ------------------------------------------------------------


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        ([], ["serve"]),
        (["-config", "X", "-listen", "Y"], ["serve", "--config", "X", "--listen", "Y"]),
        (["-config=X"], ["serve", "--config=X"]),
        (["-listen=:9999", "-config=/a=b"], ["serve", "--listen=:9999", "--config=/a=b"]),
        (["--config", "X"], ["serve", "--config", "X"]),
        (["serve", "--listen", ":1"], ["serve", "--listen", ":1"]),
        (["check"], ["check"]),
        (["check", "-config", "X"], ["check", "--config", "X"]),
        (["run", "push"], ["run", "push"]),
        (["--version"], ["--version"]),
        (["-h"], ["-h"]),
        (["--help"], ["--help"]),
    ],
)
def test_normalise_argv(argv: list[str], expected: list[str]) -> None:
    assert normalise_argv(argv) == expected


def test_normalise_argv_leaves_other_flags_alone() -> None:
    assert normalise_argv(["-configure", "-listener=x"]) == ["serve", "-configure", "-listener=x"]


# --- check -----------------------------------------------------------------------


def test_check_good_config_prints_summary_and_exits_0(
    good: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["check", "--config", str(good)]) == 0
    out, err = capsys.readouterr()
    # mc is not installed here: named, but a config may be checked away from its host
    assert (
        err
        == f"{good}: warning: commands[0].cmd: /usr/local/bin/mc does not exist on this machine\n"
    )
    lines = out.splitlines()
    assert lines[0] == f"{good}: OK, 2 commands, 1 warning"
    assert "  listen: :9999" in lines
    assert "  auth: token required" in lines
    assert "  stateDir: /var/lib/s3syncer" in lines
    assert "  shutdownGrace: 25s" in lines
    assert "  push: /usr/local/bin/mc mirror --jobs 4 local/registry remote/registry" in lines
    assert (
        "    delay 3s, maxDelay 1m, reconcile 1m, runAt '0 3 * * *', runOnStart, timeout 1h,"
        " retry 3x from 10s"
    ) in lines
    assert "    on: push tagged; delete repository team/*" in lines
    assert "    workdir: /tmp" in lines
    assert "    env: MC_CONFIG_DIR, MC_PASSWORD" in lines
    assert "  idle (disabled): /bin/true" in lines
    assert "    delay 30s, maxDelay 5m" in lines
    # The formats each command accepts, in the order they are tried, all by default.
    assert lines.count("    formats: distribution, harbor, cloudevents") == 1
    assert lines.count("    formats: harbor, cloudevents") == 1


def test_check_never_prints_token_or_env_values(
    good: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["check", "--config", str(good)]) == 0
    out, err = capsys.readouterr()
    assert SECRET not in out + err
    assert ENV_SECRET not in out + err
    assert "/etc/mc" not in out


def test_check_token_file_and_env_token_never_printed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    token_file = write(tmp_path, "token", SECRET + "\n")
    config = write(
        tmp_path, "c.yaml", f"auth: {{tokenFile: {token_file}}}\ncommands: [{{name: a, cmd: x}}]\n"
    )
    assert main(["check", "--config", str(config)]) == 0
    monkeypatch.setenv("S3SYNCER_TOKEN", ENV_SECRET)
    assert main(["check", "--config", str(config)]) == 0
    out, err = capsys.readouterr()
    assert out.count("auth: token required") == 2
    assert SECRET not in out + err
    assert ENV_SECRET not in out + err


def test_summary_says_when_auth_is_off() -> None:
    config = parse_config("commands: [{name: a, cmd: /bin/true}]", source="c.yaml", env={})
    summary = summarise(config)
    assert summary.splitlines()[0] == "c.yaml: OK, 1 command"
    assert "  auth: off (anyone may trigger)" in summary.splitlines()
    assert "  listen: localhost:9999 (default)" in summary.splitlines()


def test_summarise_never_contains_secrets() -> None:
    config: Config = parse_config(GOOD, source="c.yaml", env={})
    summary = summarise(config)
    assert SECRET not in summary
    assert ENV_SECRET not in summary
    assert "MC_PASSWORD" in summary


def test_check_warns_about_a_byte_order_mark_in_the_token_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    token_file = tmp_path / "token"
    token_file.write_bytes(b"\xef\xbb\xbf" + SECRET.encode() + b"\n")
    config = write(
        tmp_path,
        "c.yaml",
        f"auth: {{tokenFile: {token_file}}}\ncommands: [{{name: a, cmd: /bin/true}}]\n",
    )
    assert main(["check", "--config", str(config)]) == 0
    out, err = capsys.readouterr()
    assert "auth: token required" in out
    assert err == (
        f"{config}: warning: auth.tokenFile: {token_file} starts with a UTF-8 byte order mark;"
        " ignored\n"
    )
    assert SECRET not in out + err


def test_check_bad_config_prints_every_error_and_exits_2(
    bad: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["check", "--config", str(bad)]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    lines = err.splitlines()
    assert len(lines) == len(BAD_ERRORS)
    for line, expected in zip(lines, BAD_ERRORS, strict=True):
        assert line.startswith(f"{bad}: {expected}"), line


def test_check_brief_example_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write(
        tmp_path, "c.yaml", "commands:\n  - {name: a, cmd: x}\n  - {name: b, cmd: x, delay: 3x}\n"
    )
    assert main(["check", "--config", str(path)]) == 2
    assert capsys.readouterr().err.startswith(f'{path}: commands[1].delay: "3x" is not a duration')


def test_check_missing_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    missing = tmp_path / "missing.yaml"
    assert main(["check", "--config", str(missing)]) == 2
    assert capsys.readouterr().err == f"{missing}: cannot read: No such file or directory\n"


def test_check_invalid_yaml_names_file_and_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write(tmp_path, "c.yaml", "commands:\n  - {name: a, cmd: x}\n  bad: : :\n")
    assert main(["check", "--config", str(path)]) == 2
    assert re.match(rf"{re.escape(str(path))}: line 3: not valid YAML: ", capsys.readouterr().err)


@pytest.mark.parametrize("listen", ["nope", "[::1", ":99999", "host:port"])
def test_check_rejects_a_listen_address_serve_would_refuse(
    tmp_path: Path, listen: str, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write(tmp_path, "c.yaml", f'listen: "{listen}"\ncommands: [{{name: a, cmd: x}}]\n')
    assert main(["check", "--config", str(path)]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err.startswith(f"{path}: listen: ")
    assert listen in err


def test_check_uses_s3syncer_config_env(
    good: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("S3SYNCER_CONFIG", str(good))
    assert main(["check"]) == 0
    assert capsys.readouterr().out.startswith(f"{good}: OK")


def test_check_flag_wins_over_env(
    good: Path, bad: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("S3SYNCER_CONFIG", str(bad))
    assert main(["check", "--config", str(good)]) == 0
    monkeypatch.setenv("S3SYNCER_CONFIG", str(good))
    assert main(["check", "-config", str(bad)]) == 2
    out, err = capsys.readouterr()
    assert out.startswith(f"{good}: OK")
    assert f"\n{bad}: " in err


def test_check_default_path(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # With no flag and no env, the documented default path is the one read.
    seen: list[str] = []

    def fake_load(path: str) -> Config:
        seen.append(path)
        return parse_config("commands: [{name: a, cmd: x}]", source=path, env={})

    # check imports the config reader when it runs (replicate never loads it): patch it there
    monkeypatch.setattr(config_file, "load_config", fake_load)
    assert main(["check"]) == 0
    assert seen == ["/etc/s3syncer/config.yaml"]
    assert capsys.readouterr().out.startswith("/etc/s3syncer/config.yaml: OK")


# --- --version and bad flags ---------------------------------------------------------


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["--version"])
    assert info.value.code == 0
    assert capsys.readouterr().out == f"s3syncer {__version__}\n"


@pytest.mark.parametrize(
    "argv",
    [
        ["check", "--bogus"],
        ["serve", "--nope"],
        ["-bogus"],
        ["serve", "--log-format", "xml"],
        ["serve", "--log-level", "loud"],
        ["check", "--config"],
        ["run"],
        ["check", "extra"],
    ],
)
def test_bad_flags_exit_2(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == 2
    assert "usage: s3syncer" in capsys.readouterr().err


# --- serve, up to the point of serving ---------------------------------------------------


@dataclass
class Started:
    """What ``serve`` handed to the service it would have run."""

    config: Config
    listen: str


@pytest.fixture
def started(monkeypatch: pytest.MonkeyPatch, restore_logging: None) -> list[Started]:
    """Replace the service with a recorder that returns at once."""
    record: list[Started] = []

    def build_service(
        config: Config, listen: str, config_path: str, listen_override: str | None
    ) -> object:
        record.append(Started(config, listen))
        return object()

    async def serve_nothing(service: object, early: object) -> None:
        return None

    # serve imports the service when it runs (replicate never loads it): patch it at its home
    monkeypatch.setattr(service, "build_service", build_service)
    monkeypatch.setattr(serve_command, "_serve", serve_nothing)
    return record


def test_serve_bad_config_exits_2_before_starting_anything(
    bad: Path, started: list[Started], capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["serve", "--config", str(bad), "--listen", "127.0.0.1:0"]) == 2
    assert started == []
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == len(BAD_ERRORS)
    assert all(line.startswith(f"{bad}: ") for line in lines)


def test_serve_missing_config_exits_2(
    tmp_path: Path, started: list[Started], capsys: pytest.CaptureFixture[str]
) -> None:
    missing = tmp_path / "missing.yaml"
    assert main(["serve", "--config", str(missing)]) == 2
    assert started == []
    assert f"{missing}: cannot read" in capsys.readouterr().err


@pytest.mark.parametrize(
    "listen", ["nope", "[::1", ":99999", "localhost", "1.2.3.4:http", "::1:80"]
)
def test_serve_bad_listen_exits_2(
    good: Path, listen: str, started: list[Started], capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["serve", "--config", str(good), "--listen", listen]) == 2
    assert started == []
    assert "s3syncer: listen address" in capsys.readouterr().err


def test_serve_bad_listen_from_env_exits_2(
    good: Path,
    started: list[Started],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("S3SYNCER_LISTEN", "nope")
    assert main(["serve", "--config", str(good)]) == 2
    assert started == []
    assert "'nope'" in capsys.readouterr().err


def test_no_arguments_means_serve_with_env_config(
    bad: Path,
    started: list[Started],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("S3SYNCER_CONFIG", str(bad))
    assert main([]) == 2
    assert started == []
    assert capsys.readouterr().err.startswith(f"{bad}: ")


def test_legacy_flags_reach_serve(good: Path, bad: Path, started: list[Started]) -> None:
    assert main(["-config", str(bad), "-listen", "127.0.0.1:0"]) == 2
    assert main(["-config", str(good), "-listen", "nope"]) == 2
    assert started == []
    assert main(["-config", str(good), "-listen", "127.0.0.1:0"]) == 0
    assert main([f"-config={good}", "-listen=:7000"]) == 0
    assert [(s.config.source, s.listen) for s in started] == [
        (str(good), "127.0.0.1:0"),
        (str(good), ":7000"),
    ]


@pytest.mark.parametrize(
    ("flag", "env", "expected"),
    [
        ("127.0.0.1:1", "127.0.0.1:2", "127.0.0.1:1"),
        (None, "127.0.0.1:2", "127.0.0.1:2"),
        (None, None, ":9999"),
    ],
)
def test_serve_listen_precedence_flag_env_config(
    good: Path,
    started: list[Started],
    monkeypatch: pytest.MonkeyPatch,
    *,
    flag: str | None,
    env: str | None,
    expected: str,
) -> None:
    if env is not None:
        monkeypatch.setenv("S3SYNCER_LISTEN", env)
    argv = ["serve", "--config", str(good)] + (["--listen", flag] if flag else [])
    assert main(argv) == 0
    assert [s.listen for s in started] == [expected]


def test_serve_default_listen_is_localhost_9999(tmp_path: Path, started: list[Started]) -> None:
    path = write(tmp_path, "c.yaml", "commands: [{name: a, cmd: x}]\n")
    assert main(["serve", "--config", str(path)]) == 0
    assert [s.listen for s in started] == ["localhost:9999"]


def test_serve_uses_env_token(
    tmp_path: Path, started: list[Started], monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write(
        tmp_path, "c.yaml", f"auth: {{token: {SECRET}}}\ncommands: [{{name: a, cmd: x}}]\n"
    )
    monkeypatch.setenv("S3SYNCER_TOKEN", ENV_SECRET)
    assert main(["serve", "--config", str(path), "--listen", ":0"]) == 0
    (run,) = started
    assert run.config.auth is not None
    assert run.config.auth.token == ENV_SECRET
