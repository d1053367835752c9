"""The environment a command runs in (issue 28): the daemon's own secrets stay out of it,
``env:`` can unset an inherited variable, and ``inheritEnv: false`` starts it clean.

A command that prints its environment (``env``, a debug ``set -x``) puts what it got into
the log and onto ``/status``: the webhook token must never be among it. An inherited
``AWS_CA_BUNDLE`` that breaks rclone must be removable without a wrapper script.
"""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path

import pytest
import trio

from s3syncer.cli.check import summarise
from s3syncer.config.file import parse_config
from s3syncer.exec.environment import command_environment
from s3syncer.exec.process import ProcessLauncher
from s3syncer.model.config import CommandConfig, ConfigError
from s3syncer.model.event_log import EventLog
from s3syncer.model.run import RunRequest

TOKEN = "Zq8-webhook-secret-4471"
RUN_VARS = {"S3SYNCER_COMMAND": "job", "S3SYNCER_REASON": "manual", "S3SYNCER_EVENTS_FILE": "/f"}


def read(text: str) -> CommandConfig:
    """The one command of a config file."""
    return parse_config(textwrap.dedent(text), source="c.yaml", env={}).commands[0]


# --- the config keys ---------------------------------------------------------------------


def test_env_null_unsets_and_inherit_env_is_read() -> None:
    command = read(
        """\
        commands:
          - name: job
            cmd: /bin/true
            inheritEnv: false
            env: {AWS_CA_BUNDLE: null, REGION: eu-1}
        """
    )
    assert command.unset_env == frozenset({"AWS_CA_BUNDLE"})
    assert dict(command.env) == {"REGION": "eu-1"}
    assert command.inherit_env is False
    assert read("commands: [{name: job, cmd: /bin/true}]").inherit_env is True


def test_inherit_env_must_be_a_boolean() -> None:
    with pytest.raises(ConfigError) as info:
        read("commands: [{name: job, cmd: /bin/true, inheritEnv: 'no'}]")
    assert info.value.errors == ["commands[0].inheritEnv: must be true or false, not a string"]


# --- the environment itself (pure) -------------------------------------------------------


def test_the_daemons_token_never_reaches_a_command() -> None:
    daemon = {"PATH": "/bin", "S3SYNCER_TOKEN": TOKEN, "HOOK": f"Bearer {TOKEN}", "HOME": "/h"}
    env = command_environment(daemon, CommandConfig("job", "/bin/env"), RUN_VARS, (TOKEN,))
    assert env == {"PATH": "/bin", "HOME": "/h", **RUN_VARS}


def test_a_value_written_in_env_is_kept_even_if_it_looks_secret() -> None:
    command = CommandConfig("job", "/bin/env", env={"MC_HOST": "x", "S3SYNCER_TOKEN": "mine"})
    env = command_environment({"S3SYNCER_TOKEN": TOKEN}, command, RUN_VARS, (TOKEN,))
    assert env["S3SYNCER_TOKEN"] == "mine"  # the operator asked for it by name


def test_unset_and_clean_environment() -> None:
    daemon = {"PATH": "/bin", "AWS_CA_BUNDLE": "/etc/ca.pem", "HOME": "/h"}
    unset = CommandConfig("job", "/bin/env", unset_env=frozenset({"AWS_CA_BUNDLE", "NOT_SET"}))
    assert command_environment(daemon, unset, RUN_VARS, ()) == {
        "PATH": "/bin",
        "HOME": "/h",
        **RUN_VARS,
    }
    clean = CommandConfig("job", "/bin/env", env={"PATH": "/usr/bin"}, inherit_env=False)
    assert command_environment(daemon, clean, RUN_VARS, ()) == {"PATH": "/usr/bin", **RUN_VARS}


# --- a real process printing its environment ----------------------------------------------


@pytest.mark.integration
async def test_a_command_printing_its_environment_never_shows_the_token(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("S3SYNCER_TOKEN", TOKEN)
    monkeypatch.setenv("COPIED_TOKEN", TOKEN)
    monkeypatch.setenv("AWS_CA_BUNDLE", "/etc/broken.pem")
    monkeypatch.setenv("KEPT", "kept-value")
    config = parse_config(
        textwrap.dedent(
            f"""\
            auth: {{tokenFile: /nonexistent}}
            commands:
              - {{name: job, cmd: {sys.executable}, args: [-c, "import os; print(os.environ)"],
                  env: {{AWS_CA_BUNDLE: null}}}}
              - {{name: clean, cmd: {sys.executable}, args: [-c, "import os; print(os.environ)"],
                  inheritEnv: false}}
            """
        ),
        source="c.yaml",
    )
    assert config.auth is not None
    launcher = ProcessLauncher(events_dir=str(tmp_path), secrets=(config.auth.token,))
    with trio.fail_after(10):
        inherited = await launcher(config.commands[0], _request())
        clean = await launcher(config.commands[1], _request())
    assert inherited.ok and clean.ok, (inherited, clean)
    assert TOKEN not in inherited.output_tail + clean.output_tail
    assert "kept-value" in inherited.output_tail
    assert "AWS_CA_BUNDLE" not in inherited.output_tail
    assert "KEPT" not in clean.output_tail
    assert "S3SYNCER_COMMAND" in clean.output_tail


def _request() -> RunRequest:
    return RunRequest(run_id=1, reason="manual", events=EventLog(), triggers=1)


def test_a_short_token_hides_only_an_exact_copy() -> None:
    # a token "ab" inside PATH or HOME is a coincidence, not a leak: only long ones are sought
    daemon = {"PATH": "/usr/lab/bin", "COPY": "ab", "LONG": f"x{TOKEN}x"}
    env = command_environment(daemon, CommandConfig("job", "/bin/env"), {}, ("ab", TOKEN))
    assert env == {"PATH": "/usr/lab/bin"}


def test_check_summarises_unset_and_clean_environments() -> None:
    config = parse_config(
        textwrap.dedent(
            """\
            commands:
              - {name: job, cmd: /bin/true, inheritEnv: false, env: {A: "1", B: null}}
            """
        ),
        source="c.yaml",
        env={},
    )
    lines = summarise(config).splitlines()
    assert "    environment: clean (inheritEnv: false)" in lines
    assert "    env: A" in lines
    assert "    unset: B" in lines


def test_check_looks_a_clean_commands_program_up_without_the_daemons_path(
    tmp_path: Path,
) -> None:
    program = tmp_path / "only-here"
    program.write_text("#!/bin/sh\n", encoding="utf-8")
    program.chmod(0o755)
    text = "commands: [{name: job, cmd: only-here, inheritEnv: false}]"
    config = parse_config(text, source="c.yaml", env={"PATH": str(tmp_path)})
    assert config.warnings == ("commands[0].cmd: only-here is not found on PATH on this machine",)
    inherited = parse_config(
        text.replace("false", "true"), source="c.yaml", env={"PATH": str(tmp_path)}
    )
    assert inherited.warnings == ()
