"""``check`` and the config reader: a key written twice, programs and folders that are not
there, and the small truths of the summary (issue 28).

A YAML mapping with a key twice keeps the last value and loses the first without a word:
two ``commands:`` blocks lose a whole block. The reader refuses it, naming every key path.
A ``cmd`` or ``workdir`` missing on this machine is a warning, not an error: a config is
often checked in CI, on a machine without the sync client, before it is deployed.
"""

from __future__ import annotations

import os
import stat
import textwrap
from pathlib import Path

import pytest

from s3syncer.cli.check import summarise
from s3syncer.cli.main import main
from s3syncer.config.file import parse_config
from s3syncer.model.config import Config, ConfigError, ListenError, parse_listen

NO_ENV: dict[str, str] = {}


def parse(text: str) -> Config:
    """Parse dedented YAML with an empty environment."""
    return parse_config(textwrap.dedent(text), source="c.yaml", env=NO_ENV)


def errors_of(text: str) -> list[str]:
    """The errors a file produces; fails the test when it is accepted."""
    with pytest.raises(ConfigError) as info:
        parse(text)
    return info.value.errors


# --- duplicate keys ----------------------------------------------------------------


def test_two_commands_blocks_are_refused() -> None:
    errors = errors_of(
        """\
        commands:
          - {name: first, cmd: /bin/true}
        commands:
          - {name: second, cmd: /bin/true}
        """
    )
    assert errors == ["line 3: commands: is written twice (first on line 1)"]


def test_a_key_twice_inside_a_command_is_refused_with_its_path() -> None:
    errors = errors_of(
        """\
        commands:
          - name: push
            cmd: /bin/true
            delay: 3x
            delay: 2s
        """
    )
    assert errors == ["line 5: commands[0].delay: is written twice (first on line 4)"]


def test_every_duplicate_is_reported_at_once() -> None:
    errors = errors_of(
        """\
        auth: {token: a, token: b}
        commands:
          - {name: a, cmd: /bin/true, env: {X: "1", X: "2"}}
          - {name: b, cmd: /bin/true, retry: {attempts: 1, attempts: 2}}
        """
    )
    assert errors == [
        "line 1: auth.token: is written twice (first on line 1)",
        "line 3: commands[0].env.X: is written twice (first on line 3)",
        "line 4: commands[1].retry.attempts: is written twice (first on line 4)",
    ]


def test_a_duplicate_is_reported_with_the_other_errors() -> None:
    errors = errors_of(
        """\
        shutdownGrace: soon
        commands:
          - {name: a, cmd: /bin/true, delay: 1s, delay: 2s}
        """
    )
    assert errors == [
        "line 3: commands[0].delay: is written twice (first on line 3)",
        'shutdownGrace: "soon" is not a duration (use e.g. 300ms, 3s, 1m30s, 2h)',
    ]


def test_a_merge_key_may_be_overridden() -> None:
    config = parse(
        """\
        commands:
          - &base {name: a, cmd: /bin/true, delay: 1s}
          - {<<: *base, name: b, delay: 2s}
        """
    )
    assert [(c.name, c.delay) for c in config.commands] == [("a", 1.0), ("b", 2.0)]


def test_an_alias_used_twice_is_not_a_duplicate() -> None:
    config = parse(
        """\
        commands:
          - &base {name: a, cmd: /bin/true, env: {X: "1"}}
          - {name: b, cmd: /bin/true, env: {X: "1"}}
        """
    )
    assert [c.name for c in config.commands] == ["a", "b"]


def test_check_exits_2_on_a_duplicate(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(
        "commands: [{name: a, cmd: /bin/true}]\ncommands: [{name: b, cmd: /bin/true}]\n",
        encoding="utf-8",
    )
    assert main(["check", "--config", str(path)]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err == f"{path}: line 2: commands: is written twice (first on line 1)\n"


@pytest.mark.slow  # most of a second: the full suite runs it
def test_a_file_nested_too_deeply_is_refused_not_a_crash() -> None:
    # it used to raise RecursionError, which a reload (catching ConfigError) let through
    assert errors_of("commands: " + "[" * 100_000) == ["not valid YAML: nested too deeply"]


# --- programs and folders that are not there ---------------------------------------------


def test_a_missing_cmd_is_named(tmp_path: Path) -> None:
    missing = tmp_path / "nope"
    config = parse(f"commands: [{{name: a, cmd: {missing}}}]")
    assert config.warnings == (f"commands[0].cmd: {missing} does not exist on this machine",)


def test_a_cmd_that_is_not_executable_is_named(tmp_path: Path) -> None:
    script = tmp_path / "sync.sh"
    script.write_text("#!/bin/sh\n", encoding="utf-8")
    os.chmod(script, stat.S_IRUSR | stat.S_IWUSR)
    config = parse(f"commands: [{{name: a, cmd: {script}}}]")
    assert config.warnings == (f"commands[0].cmd: {script} is not executable",)


def test_a_cmd_not_on_path_is_named() -> None:
    config = parse("commands: [{name: a, cmd: no-such-program-s3syncer}]")
    assert config.warnings == (
        "commands[0].cmd: no-such-program-s3syncer is not found on PATH on this machine",
    )


def test_a_cmd_on_the_commands_own_path_is_found(tmp_path: Path) -> None:
    program = tmp_path / "mirror-tool"
    program.write_text("#!/bin/sh\n", encoding="utf-8")
    program.chmod(0o755)
    config = parse(f"commands: [{{name: a, cmd: mirror-tool, env: {{PATH: '{tmp_path}'}}}}]")
    assert config.warnings == ()


def test_a_relative_cmd_is_looked_up_in_its_workdir(tmp_path: Path) -> None:
    program = tmp_path / "bin" / "sync"
    program.parent.mkdir()
    program.write_text("#!/bin/sh\n", encoding="utf-8")
    program.chmod(0o755)
    config = parse(f"commands: [{{name: a, cmd: ./bin/sync, workdir: '{tmp_path}'}}]")
    assert config.warnings == ()


def test_a_missing_workdir_is_named(tmp_path: Path) -> None:
    missing = tmp_path / "gone"
    config = parse(f"commands: [{{name: a, cmd: /bin/true, workdir: '{missing}'}}]")
    assert config.warnings == (
        f"commands[0].workdir: {missing} is not a directory on this machine",
    )


def test_check_prints_the_missing_binary_and_still_exits_0(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("commands: [{name: a, cmd: /nonexistent/mc}]\n", encoding="utf-8")
    assert main(["check", "--config", str(path)]) == 0
    out, err = capsys.readouterr()
    assert out.splitlines()[0] == f"{path}: OK, 1 command, 1 warning"
    assert f"{path}: warning: commands[0].cmd: /nonexistent/mc does not exist" in err


# --- small truths -----------------------------------------------------------------------


def test_the_summary_shows_a_defaulted_listen() -> None:
    lines = summarise(parse("commands: [{name: a, cmd: /bin/true}]")).splitlines()
    assert "  listen: localhost:9999 (default)" in lines


def test_a_port_out_of_range_says_so() -> None:
    with pytest.raises(ListenError, match=r"port 99999 is out of range \(0-65535\)"):
        parse_listen("localhost:99999")
    assert errors_of('listen: "localhost:99999"\ncommands: [{name: a, cmd: /bin/true}]') == [
        "listen: listen address 'localhost:99999': port 99999 is out of range (0-65535)"
    ]


def test_a_command_without_events_lists_no_formats() -> None:
    config = parse(
        """\
        commands:
          - {name: nightly, cmd: /bin/true, runAt: "0 3 * * *", events: []}
          - {name: push, cmd: /bin/true}
        """
    )
    lines = summarise(config).splitlines()
    assert lines.count("    formats: distribution, harbor, cloudevents") == 1
    nightly = lines.index("  nightly: /bin/true")
    assert not lines[nightly + 3].startswith("    formats:")
