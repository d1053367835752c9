"""The YAML configuration: what a valid file means, and how a bad one is reported.

Every error must name the key path and say what is wrong, and all errors in a
file come out at once, so an operator fixes a config in one pass.
"""

from __future__ import annotations

import math
import textwrap
from pathlib import Path

import pytest

from s3syncer.config.file import load_config, parse_config
from s3syncer.model.config import (
    DEFAULT_EVENT_RULES,
    CommandConfig,
    Config,
    ConfigError,
    EventRule,
    Retry,
    format_duration,
    parse_duration,
)

NO_ENV: dict[str, str] = {}
MINIMAL = "commands:\n  - {name: push, cmd: /bin/true}\n"


def parse(text: str, env: dict[str, str] | None = None) -> Config:
    """Parse dedented YAML with an empty environment (S3SYNCER_TOKEN unset)."""
    return parse_config(
        textwrap.dedent(text), source="cfg.yaml", env=NO_ENV if env is None else env
    )


def errors_of(text: str, env: dict[str, str] | None = None) -> list[str]:
    """The errors a file produces; fails the test when it is accepted."""
    with pytest.raises(ConfigError) as info:
        parse(text, env)
    return info.value.errors


def one_command(extra: str) -> str:
    """A config with one command ``push`` whose mapping also holds ``extra``."""
    return f"commands:\n  - {{name: push, cmd: /bin/true, {extra}}}\n"


def command(text: str) -> CommandConfig:
    config = parse(text)
    assert len(config.commands) == 1
    return config.commands[0]


# --- durations -------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("300ms", 0.3),
        ("3s", 3.0),
        ("1m30s", 90.0),
        ("2h", 7200.0),
        ("1.5h", 5400.0),
        ("1h2m3s", 3723.0),
        (".5s", 0.5),
        ("1500us", 0.0015),
        ("0s", 0.0),
        ("30", 30.0),
        ("2.5", 2.5),
        (" 3s ", 3.0),
    ],
)
def test_go_durations_and_bare_number_strings(text: str, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize(("value", "seconds"), [(30, 30.0), (0, 0.0), (1.5, 1.5)])
def test_bare_numbers_are_seconds(value: float, seconds: float) -> None:
    assert parse_duration(value) == seconds


@pytest.mark.parametrize(
    "value",
    ["3x", "-1s", "", "   ", "-", "s", "3 s", "1h-2m", "nan", "inf", "-5", True, False, [1], {}],
)
def test_parse_duration_rejects(value: object) -> None:
    with pytest.raises(ValueError):
        parse_duration(value)


@pytest.mark.parametrize("value", [math.nan, math.inf, -1, -0.5])
def test_parse_duration_rejects_non_finite_and_negative_numbers(value: float) -> None:
    with pytest.raises(ValueError):
        parse_duration(value)


@pytest.mark.parametrize(
    ("yaml_value", "shown"),
    [
        ('"3x"', '"3x"'),
        ('"-1s"', '"-1s"'),
        ('""', '""'),
        ("true", "true"),
        ("[1, 2]", "[1, 2]"),
        (".nan", "nan"),
        (".inf", "inf"),
        ('"inf"', '"inf"'),
        ("-3", "-3"),
    ],
)
def test_bad_duration_names_key_path_and_value(yaml_value: str, shown: str) -> None:
    text = f"""\
        commands:
          - {{name: first, cmd: /bin/true}}
          - {{name: second, cmd: /bin/true, delay: {yaml_value}}}
        """
    assert errors_of(text) == [
        f"commands[1].delay: {shown} is not a duration (use e.g. 300ms, 3s, 1m30s, 2h)"
    ]


def test_brief_example_error_text() -> None:
    text = """\
        commands:
          - {name: a, cmd: /bin/true}
          - {name: b, cmd: /bin/true, delay: 3x}
        """
    with pytest.raises(ConfigError) as info:
        parse(text)
    assert str(info.value).startswith('cfg.yaml: commands[1].delay: "3x" is not a duration')


@pytest.mark.parametrize("key", ["delay", "maxDelay", "reconcile", "timeout"])
def test_every_duration_key_is_validated(key: str) -> None:
    assert errors_of(one_command(f"{key}: soon")) == [
        f'commands[0].{key}: "soon" is not a duration (use e.g. 300ms, 3s, 1m30s, 2h)'
    ]


def test_duration_keys_accept_go_syntax() -> None:
    cmd = command(one_command("delay: 300ms, maxDelay: 1m30s, reconcile: 2h, timeout: 1h2m3s"))
    assert (cmd.delay, cmd.max_delay, cmd.reconcile, cmd.timeout) == (0.3, 90.0, 7200.0, 3723.0)


def test_duration_keys_accept_bare_numbers() -> None:
    cmd = command(one_command('delay: 3, maxDelay: 90.5, reconcile: "60"'))
    assert (cmd.delay, cmd.max_delay, cmd.reconcile) == (3.0, 90.5, 60.0)


def test_shutdown_grace_is_a_duration() -> None:
    assert parse("shutdownGrace: 40s\n" + MINIMAL).shutdown_grace == 40.0
    assert errors_of("shutdownGrace: later\n" + MINIMAL) == [
        'shutdownGrace: "later" is not a duration (use e.g. 300ms, 3s, 1m30s, 2h)'
    ]


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0.3, "300ms"),
        (3.0, "3s"),
        (90.0, "1m30s"),
        (7200.0, "2h"),
        (3723.0, "1h2m3s"),
        (60.0, "1m"),
    ],
)
def test_format_duration_round_trips(seconds: float, text: str) -> None:
    assert format_duration(seconds) == text
    assert parse_duration(format_duration(seconds)) == pytest.approx(seconds)


# --- defaults --------------------------------------------------------------


def test_defaults_of_a_minimal_command() -> None:
    config = parse(MINIMAL)
    assert config.listen is None
    assert config.auth is None
    assert config.state_dir is None
    assert config.shutdown_grace == 25.0
    assert config.source == "cfg.yaml"
    cmd = config.commands[0]
    assert cmd.name == "push"
    assert cmd.argv == ["/bin/true"]
    assert cmd.args == ()
    assert dict(cmd.env) == {}
    assert cmd.workdir is None
    assert cmd.disable is False
    assert cmd.delay == 5.0
    assert cmd.max_delay == 60.0
    assert cmd.reconcile is None
    assert cmd.run_at is None
    assert cmd.run_on_start is False
    assert cmd.timeout is None
    assert cmd.retry is None
    assert cmd.events == (EventRule(action="push", tagged=True),)
    assert cmd.events == DEFAULT_EVENT_RULES
    assert cmd.formats == {"distribution", "harbor", "cloudevents"}


def test_formats_pin_what_a_command_accepts() -> None:
    assert command(one_command("formats: [harbor]")).formats == {"harbor"}
    both = command(one_command("formats: [cloudevents, distribution]"))
    assert both.formats == {"cloudevents", "distribution"}


@pytest.mark.parametrize(
    ("value", "error"),
    [
        (
            "[]",
            "commands[0].formats: must be a non-empty list of distribution, harbor, cloudevents",
        ),
        (
            "harbor",
            "commands[0].formats: must be a non-empty list of distribution, harbor, cloudevents",
        ),
        (
            "[harbor, zot]",
            'commands[0].formats[1]: "zot" is not a format (distribution, harbor, cloudevents)',
        ),
        ("[1]", "commands[0].formats[0]: 1 is not a format (distribution, harbor, cloudevents)"),
    ],
)
def test_bad_formats_are_errors_with_their_key_path(value: str, error: str) -> None:
    assert errors_of(one_command(f"formats: {value}")) == [error]


@pytest.mark.parametrize(
    ("delay", "max_delay"),
    [("3s", 60.0), ("6s", 60.0), ("0s", 60.0), ("30s", 300.0), ("2m", 1200.0)],
)
def test_default_max_delay_is_ten_delays_but_at_least_a_minute(
    delay: str, max_delay: float
) -> None:
    assert command(one_command(f"delay: {delay}")).max_delay == max_delay


def test_explicit_max_delay_wins() -> None:
    assert command(one_command("delay: 30s, maxDelay: 45s")).max_delay == 45.0


def test_max_delay_shorter_than_delay_is_an_error() -> None:
    assert errors_of(one_command("delay: 30s, maxDelay: 10s")) == [
        "commands[0].maxDelay: must not be shorter than delay"
    ]


@pytest.mark.parametrize("key", ["reconcile", "timeout"])
def test_zero_reconcile_or_timeout_is_an_error_not_off(key: str) -> None:
    (error,) = errors_of(one_command(f"{key}: 0s"))
    assert error.startswith(f"commands[0].{key}: must be longer than 0")


def test_all_command_settings_are_read() -> None:
    cmd = command(
        """\
        commands:
          - name: push
            cmd: /usr/local/bin/mc
            args: [mirror, local-minio/registry, remote-minio/registry]
            env: {MC_CONFIG_DIR: /etc/mc}
            workdir: /tmp
            disable: true
            delay: 3s
            maxDelay: 5m
            reconcile: 60s
            runAt: "0 3 * * *"
            runOnStart: true
            timeout: 1h
            retry: {attempts: 3, backoff: 10s}
            events:
              - {action: push, tagged: true}
              - {action: delete, repository: "team/*", tag: "v*", mediaType: "*manifest*"}
        """
    )
    assert cmd.argv == [
        "/usr/local/bin/mc",
        "mirror",
        "local-minio/registry",
        "remote-minio/registry",
    ]
    assert dict(cmd.env) == {"MC_CONFIG_DIR": "/etc/mc"}
    assert cmd.workdir == "/tmp"
    assert cmd.disable is True
    assert (cmd.delay, cmd.max_delay, cmd.reconcile, cmd.timeout) == (3.0, 300.0, 60.0, 3600.0)
    assert cmd.run_at == "0 3 * * *"
    assert cmd.run_on_start is True
    assert cmd.retry == Retry(attempts=3, backoff=10.0)
    assert cmd.events == (
        EventRule(action="push", tagged=True),
        EventRule(action="delete", repository="team/*", tag="v*", media_type="*manifest*"),
    )


def test_top_level_settings_are_read() -> None:
    config = parse(
        """\
        listen: "0.0.0.0:9999"
        stateDir: /var/lib/s3syncer
        shutdownGrace: 10s
        commands:
          - {name: a, cmd: /bin/true}
          - {name: b, cmd: /bin/false}
        """
    )
    assert config.listen == "0.0.0.0:9999"
    assert config.state_dir == "/var/lib/s3syncer"
    assert config.shutdown_grace == 10.0
    assert [c.name for c in config.commands] == ["a", "b"]
    assert config.command("b") is config.commands[1]
    assert config.command("c") is None


def test_retry_defaults_and_doubling_backoff() -> None:
    retry = command(one_command("retry: {}")).retry
    assert retry == Retry(attempts=3, backoff=10.0)
    assert [retry.delay_before(n) for n in (1, 2, 3)] == [10.0, 20.0, 40.0]


@pytest.mark.parametrize(
    ("retry", "error"),
    [
        ("{attempts: 0}", "commands[0].retry.attempts: must be at least 1"),
        ("{attempts: two}", "commands[0].retry.attempts: must be a whole number, not a string"),
        ("{attempts: true}", "commands[0].retry.attempts: must be a whole number, not a boolean"),
        ("{attempts: 1.5}", "commands[0].retry.attempts: must be a whole number, not a number"),
        ("{backoff: 3x}", 'commands[0].retry.backoff: "3x" is not a duration'),
        ("[3, 10s]", "commands[0].retry: must be a mapping, not a list"),
    ],
)
def test_bad_retry(retry: str, error: str) -> None:
    (message,) = errors_of(one_command(f"retry: {retry}"))
    assert message.startswith(error)


def test_original_tool_config_keeps_its_meaning() -> None:
    # The original tool's keys: name disable delay reconcile runAt runOnStart workdir cmd args env.
    cmd = command(
        """\
        commands:
          - name: sync
            disable: false
            delay: 10
            reconcile: 3600
            runAt: "@daily"
            runOnStart: false
            workdir: /data
            cmd: rclone
            args: [sync, a, b]
            env: {RCLONE_CONFIG: /etc/rclone.conf}
        """
    )
    assert (cmd.delay, cmd.max_delay, cmd.reconcile) == (10.0, 100.0, 3600.0)
    assert cmd.run_at == "@daily"
    assert cmd.argv == ["rclone", "sync", "a", "b"]


# --- args and env ------------------------------------------------------------


def test_numbers_in_args_and_env_become_strings() -> None:
    cmd = command(
        one_command("args: [--jobs, 4, --ratio, 0.5], env: {JOBS: 4, RATIO: 0.5, NAME: x}")
    )
    assert cmd.argv == ["/bin/true", "--jobs", "4", "--ratio", "0.5"]
    assert dict(cmd.env) == {"JOBS": "4", "RATIO": "0.5", "NAME": "x"}


@pytest.mark.parametrize(
    ("extra", "error"),
    [
        ("args: mirror a b", "commands[0].args: must be a list of strings, not a string"),
        ("args: [a, true]", "commands[0].args[1]: must be a string, not a boolean"),
        ("args: [a, [b]]", "commands[0].args[1]: must be a string, not a list"),
        ("args: [a, {b: c}]", "commands[0].args[1]: must be a string, not a mapping"),
        ("env: [A=1]", "commands[0].env: must be a mapping of names to values, not a list"),
        ("env: {A: true}", "commands[0].env.A: must be a string, not a boolean"),
        ("env: {A: [1]}", "commands[0].env.A: must be a string, not a list"),
        ("env: {'A=B': x}", "commands[0].env: 'A=B' is not a valid variable name"),
        ("env: {1: x}", "commands[0].env: 1 is not a valid variable name"),
    ],
)
def test_bad_args_and_env(extra: str, error: str) -> None:
    assert errors_of(one_command(extra)) == [error]


def test_env_error_never_shows_the_value() -> None:
    with pytest.raises(ConfigError) as info:
        parse(one_command("env: {SECRET: [hunter2-password]}"))
    assert "hunter2" not in str(info.value)


# --- names -------------------------------------------------------------------


@pytest.mark.parametrize("name", ["push", "a.b_c-D9", "X"])
def test_valid_names(name: str) -> None:
    assert command(f"commands:\n  - {{name: {name}, cmd: x}}\n").name == name


@pytest.mark.parametrize(
    ("yaml_name", "name"), [('"a b"', "a b"), ("a/b", "a/b"), ('""', ""), ("é", "é")]
)
def test_invalid_names(yaml_name: str, name: str) -> None:
    assert errors_of(f"commands:\n  - {{name: {yaml_name}, cmd: x}}\n") == [
        f'commands[0].name: "{name}" may only use letters, digits, ".", "_" and "-"'
    ]


def test_name_must_be_a_string() -> None:
    assert errors_of("commands:\n  - {name: [a], cmd: x}\n") == [
        "commands[0].name: must be a string, not a list"
    ]


def test_missing_name_and_cmd() -> None:
    assert errors_of("commands:\n  - {args: [a]}\n") == [
        "commands[0].name: is missing",
        "commands[0].cmd: is missing: the program to run",
    ]


def test_empty_cmd() -> None:
    assert errors_of('commands:\n  - {name: a, cmd: "  "}\n') == ["commands[0].cmd: is empty"]


def test_duplicate_names() -> None:
    text = """\
        commands:
          - {name: a, cmd: x}
          - {name: b, cmd: x}
          - {name: a, cmd: y}
          - {name: b, cmd: y}
        """
    assert errors_of(text) == [
        'commands[2].name: "a" is already used by commands[0]',
        'commands[3].name: "b" is already used by commands[1]',
    ]


def test_a_duplicate_command_is_still_validated() -> None:
    text = """\
        commands:
          - {name: a, cmd: x}
          - {name: a, cmd: y, delay: 3x, colour: red}
        """
    errors = errors_of(text)
    assert errors[0] == 'commands[1].name: "a" is already used by commands[0]'
    assert any(e.startswith('commands[1].delay: "3x" is not a duration') for e in errors)
    assert any(e.startswith("commands[1].colour: unknown key") for e in errors)
    assert len(errors) == 3


# --- cron --------------------------------------------------------------------


@pytest.mark.parametrize(
    "schedule",
    ["@hourly", "@daily", "@weekly", "@monthly", "@yearly", "0 3 * * *", "*/5 * * * 1-5"],
)
def test_cron_accepted(schedule: str) -> None:
    assert command(one_command(f'runAt: "{schedule}"')).run_at == schedule


@pytest.mark.parametrize(
    ("schedule", "reason"),
    [
        ("61 * * * *", ""),
        ("* * * * * *", "needs 5 fields"),
        ("* * * *", "needs 5 fields"),
        ("@reboot", "unknown schedule '@reboot'"),
        ("0 0 31 2 *", "never fires"),
        ("every day", "needs 5 fields"),
        ("a b c d e", ""),
    ],
)
def test_cron_rejected(schedule: str, reason: str) -> None:
    (error,) = errors_of(one_command(f'runAt: "{schedule}"'))
    assert error.startswith(f'commands[0].runAt: "{schedule}" is not a valid cron schedule: ')
    assert reason in error


def test_cron_must_be_a_string() -> None:
    assert errors_of(one_command("runAt: 3")) == [
        "commands[0].runAt: must be a cron expression, not a number"
    ]


# --- structure and types -----------------------------------------------------


def test_unknown_keys_everywhere_are_all_reported() -> None:
    text = """\
        listen: ":9999"
        colour: blue
        auth: {token: t, tokn: t}
        commands:
          - name: a
            cmd: x
            dealy: 3s
            retry: {attempts: 2, backof: 1s}
            events:
              - {action: push, tagd: true}
        """
    errors = errors_of(text)
    assert [e.split(":")[0] for e in errors] == [
        "colour",
        "auth.tokn",
        "commands[0].dealy",
        "commands[0].retry.backof",
        "commands[0].events[0].tagd",
    ]
    assert all("unknown key (known: " in e for e in errors)
    assert "commands[0].dealy: unknown key (known: args, cmd, delay," in errors[2]


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ("listen: 9999\n" + MINIMAL, "listen: must be a string, not a number"),
        ("stateDir: [a]\n" + MINIMAL, "stateDir: must be a string, not a list"),
        (one_command("workdir: 3"), "commands[0].workdir: must be a string, not a number"),
        (
            one_command("disable: yes please"),
            "commands[0].disable: must be true or false, not a string",
        ),
        (
            one_command("runOnStart: 1"),
            "commands[0].runOnStart: must be true or false, not a number",
        ),
        (
            one_command("cmd: [a, b]").replace("cmd: /bin/true, ", ""),
            "commands[0].cmd: must be a string, not a list",
        ),
        ("commands: x\n", "commands: must be a list, not a string"),
        ("commands: {a: b}\n", "commands: must be a list, not a mapping"),
        ("commands: []\n", "commands: is empty: configure at least one command"),
        ('listen: ":9999"\n', "commands: is missing: configure at least one command"),
        ("", "commands: is missing: configure at least one command"),
        ("commands: [3]\n", "commands[0]: must be a mapping, not a number"),
        ("- a\n- b\n", "top level: must be a mapping, not a list"),
        ("just text\n", "top level: must be a mapping, not a string"),
    ],
)
def test_wrong_types_and_shapes(text: str, error: str) -> None:
    assert errors_of(text) == [error]


def test_no_error_line_has_an_empty_key_path() -> None:
    with pytest.raises(ConfigError) as info:
        parse("- a\n")
    assert not str(info.value).startswith("cfg.yaml: :")


def test_every_error_is_reported_at_once_with_its_key_path() -> None:
    text = """\
        shutdownGrace: soon
        auth: {token: t, tokenFile: /f}
        commands:
          - {name: "a b", cmd: x}
          - {name: ok, delay: 3x, runAt: "61 * * * *"}
          - {name: ok, cmd: y}
          - {name: z, cmd: x, events: [{action: fetch}]}
        """
    errors = errors_of(text)
    paths = [e.split(": ")[0] for e in errors]
    assert paths == [
        "shutdownGrace",
        "auth",
        "commands[0].name",
        "commands[1].cmd",
        "commands[1].delay",
        "commands[1].runAt",
        "commands[2].name",
        "commands[3].events[0].action",
    ]
    with pytest.raises(ConfigError) as info:
        parse(text)
    lines = str(info.value).splitlines()
    assert len(lines) == len(errors)
    assert all(line.startswith("cfg.yaml: ") for line in lines)


def test_invalid_yaml_names_the_line() -> None:
    (error,) = errors_of(MINIMAL + "  bad: : :\n")
    assert error.startswith("line 3: not valid YAML: ")
    (error,) = errors_of("listen: [\n\n\n")
    assert error.startswith("line 4: not valid YAML: ")


def test_load_config_reads_a_file(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(MINIMAL)
    config = load_config(path, env=NO_ENV)
    assert config.source == str(path)
    assert config.commands[0].name == "push"


def test_load_config_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nope.yaml"
    with pytest.raises(ConfigError) as info:
        load_config(path, env=NO_ENV)
    assert info.value.errors == ["cannot read: No such file or directory"]
    assert str(info.value) == f"{path}: cannot read: No such file or directory"


def test_load_config_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "latin1.yaml"
    path.write_bytes(b"listen: caf\xe9\n")
    with pytest.raises(ConfigError) as info:
        load_config(path, env=NO_ENV)
    assert info.value.errors[0].startswith("cannot read: ")


def test_load_config_errors_name_the_file(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(one_command("delay: 3x"))
    with pytest.raises(ConfigError) as info:
        load_config(path, env=NO_ENV)
    assert str(info.value).startswith(f'{path}: commands[0].delay: "3x" is not a duration')
    assert info.value.source == str(path)


# --- events rules --------------------------------------------------------------


def test_event_rules() -> None:
    cmd = command(
        one_command(
            'events: [{action: push, tagged: true}, {action: delete}, {repository: "team/*"},'
            ' {tag: "v[0-9]*", mediaType: "application/vnd.oci.*"}, {tagged: false}]'
        )
    )
    assert cmd.events == (
        EventRule(action="push", tagged=True),
        EventRule(action="delete"),
        EventRule(repository="team/*"),
        EventRule(tag="v[0-9]*", media_type="application/vnd.oci.*"),
        EventRule(tagged=False),
    )


@pytest.mark.parametrize(
    ("events", "error"),
    [
        ("{action: push}", "commands[0].events: must be a list of rules, not a mapping"),
        ("[push]", "commands[0].events[0]: must be a mapping, not a string"),
        (
            "[{action: fetch}]",
            'commands[0].events[0].action: "fetch" is not one of delete, mount, pull, push',
        ),
        (
            "[{tagged: yes please}]",
            "commands[0].events[0].tagged: must be true or false, not a string",
        ),
        ("[{repository: 3}]", "commands[0].events[0].repository: must be a string, not a number"),
        ("[{tag: [v1]}]", "commands[0].events[0].tag: must be a string, not a list"),
        ("[{mediaType: 1}]", "commands[0].events[0].mediaType: must be a string, not a number"),
    ],
)
def test_bad_event_rules(events: str, error: str) -> None:
    assert errors_of(one_command(f"events: {events}")) == [error]


# --- auth ----------------------------------------------------------------------

SECRET = "s3cr3t-T0ken-value"


def test_auth_token() -> None:
    config = parse(f"auth: {{token: {SECRET}}}\n" + MINIMAL)
    assert config.auth is not None
    assert config.auth.token == SECRET


def test_auth_token_file_is_read_and_stripped(tmp_path: Path) -> None:
    token_file = tmp_path / "token"
    token_file.write_text(f"  {SECRET}\n\n")
    config = parse(f"auth: {{tokenFile: {token_file}}}\n" + MINIMAL)
    assert config.auth is not None
    assert config.auth.token == SECRET


def test_token_file_with_a_byte_order_mark_is_read_without_it(tmp_path: Path) -> None:
    token_file = tmp_path / "token"
    token_file.write_bytes(b"\xef\xbb\xbf" + SECRET.encode() + b"\r\n")
    config = parse(f"auth: {{tokenFile: {token_file}}}\n" + MINIMAL)
    assert config.auth is not None
    assert config.auth.token == SECRET
    assert config.warnings == (
        f"auth.tokenFile: {token_file} starts with a UTF-8 byte order mark; ignored",
    )


def test_token_file_with_one_final_newline_gives_no_warning(tmp_path: Path) -> None:
    token_file = tmp_path / "token"
    token_file.write_text(SECRET + "\n")
    assert parse(f"auth: {{tokenFile: {token_file}}}\n" + MINIMAL).warnings == ()
    token_file.write_text(f" {SECRET}\n\n")
    assert parse(f"auth: {{tokenFile: {token_file}}}\n" + MINIMAL).warnings == (
        f"auth.tokenFile: {token_file} has whitespace around the token; ignored",
    )


def test_env_token_wins_over_token_and_token_file(tmp_path: Path) -> None:
    env = {"S3SYNCER_TOKEN": " from-env\n"}
    token_file = tmp_path / "token"
    token_file.write_text("from-file")
    for auth in ("{token: from-config}", f"{{tokenFile: {token_file}}}", "{}"):
        config = parse(f"auth: {auth}\n" + MINIMAL, env=env)
        assert config.auth is not None
        assert config.auth.token == "from-env"


def test_env_token_alone_turns_auth_on() -> None:
    config = parse(MINIMAL, env={"S3SYNCER_TOKEN": "from-env"})
    assert config.auth is not None
    assert config.auth.token == "from-env"


def test_empty_env_token_does_not_turn_auth_on() -> None:
    assert parse(MINIMAL, env={"S3SYNCER_TOKEN": "  "}).auth is None


def test_parse_config_reads_os_environ_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("S3SYNCER_TOKEN", "from-os-env")
    config = parse_config(MINIMAL)
    assert config.auth is not None
    assert config.auth.token == "from-os-env"


def test_missing_token_file_is_an_error_not_an_open_door(tmp_path: Path) -> None:
    missing = tmp_path / "no-token"
    assert errors_of(f"auth: {{tokenFile: {missing}}}\n" + MINIMAL) == [
        f"auth.tokenFile: cannot read {missing}: No such file or directory"
    ]


def test_empty_token_file_is_an_error(tmp_path: Path) -> None:
    empty = tmp_path / "token"
    empty.write_text(" \n")
    assert errors_of(f"auth: {{tokenFile: {empty}}}\n" + MINIMAL) == [
        f"auth.tokenFile: {empty} is empty"
    ]


@pytest.mark.parametrize(
    ("auth", "errors"),
    [
        ('{token: ""}', ["auth.token: is empty"]),
        ("{token: a, tokenFile: /b}", ["auth: set token or tokenFile, not both"]),
        ("{}", ["auth: needs token or tokenFile"]),
        ("", ["auth: needs token or tokenFile"]),
        ("{token: 123}", ["auth.token: must be a string, not a number"]),
        ("{tokenFile: [a]}", ["auth.tokenFile: must be a string, not a list"]),
        ("on", ["auth: must be a mapping, not a boolean"]),
    ],
)
def test_bad_auth(auth: str, errors: list[str]) -> None:
    assert errors_of(f"auth: {auth}\n" + MINIMAL) == errors


def test_bare_auth_key_does_not_silently_disable_auth() -> None:
    # `auth:` with its settings commented out must not leave the webhook open.
    text = "auth:\n  # tokenFile: /etc/s3syncer/token\n" + MINIMAL
    assert errors_of(text) == ["auth: needs token or tokenFile"]


def test_token_never_in_repr_or_str() -> None:
    config = parse(f"auth: {{token: {SECRET}}}\n" + MINIMAL)
    assert SECRET not in repr(config)
    assert SECRET not in str(config)
    assert SECRET not in repr(config.auth)


def test_token_never_in_config_errors(tmp_path: Path) -> None:
    token_file = tmp_path / "token"
    token_file.write_text(SECRET)
    texts = [
        f"auth: {{token: {SECRET}, tokenFile: {token_file}}}\n" + MINIMAL,
        f"auth: {{token: {SECRET}, extra: 1}}\n" + MINIMAL,
        f"auth: {{tokenFile: {token_file}}}\ncommands: []\n",
        f"auth: {SECRET}\n" + MINIMAL,
        f"auth: [{SECRET}]\n" + MINIMAL,
    ]
    for text in texts:
        with pytest.raises(ConfigError) as info:
            parse(text)
        assert SECRET not in str(info.value), text
        assert SECRET not in repr(info.value), text


def test_config_is_frozen() -> None:
    config = parse(MINIMAL)
    with pytest.raises(AttributeError):
        config.listen = "x"  # type: ignore[misc]
    with pytest.raises(AttributeError):
        config.commands[0].delay = 1.0  # type: ignore[misc]


def test_no_event_rules_is_how_a_reconcile_only_command_says_so() -> None:
    config = parse_config("commands:\n  - {name: full, cmd: rclone, events: [], reconcile: 1h}\n")
    assert config.commands[0].events == ()
