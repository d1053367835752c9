"""Load and validate the YAML configuration.

Validation happens once, here, at the edge: every problem in a file is
collected with its key path and reported together, so an operator fixes a
config in one pass. What comes out is a tree of frozen dataclasses that the
rest of the daemon trusts without checking again.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

import yaml
from croniter import CroniterBadCronError, CroniterBadDateError, croniter

DEFAULT_CONFIG_PATH = "/etc/s3syncer/config.yaml"
DEFAULT_LISTEN = "localhost:9999"
DEFAULT_DELAY = 5.0
MIN_DEFAULT_MAX_DELAY = 60.0
DEFAULT_SHUTDOWN_GRACE = 25.0
NAME_PATTERN = re.compile(r"[A-Za-z0-9._-]+")
ACTIONS = frozenset({"push", "pull", "mount", "delete"})
# The webhook formats a command can accept (see formats.py), in the order they are tried.
FORMATS = ("distribution", "harbor", "cloudevents")
CRON_ALIASES = frozenset(
    {"@yearly", "@annually", "@monthly", "@weekly", "@daily", "@midnight", "@hourly"}
)

_DURATION_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|μs|ms|s|m|h)")
_UNIT_SECONDS = {
    "ns": 1e-9,
    "us": 1e-6,
    "µs": 1e-6,
    "μs": 1e-6,
    "ms": 1e-3,
    "s": 1.0,
    "m": 60.0,
    "h": 3600.0,
}


class ListenError(ValueError):
    """A listen address that is not ``HOST:PORT``, ``[V6]:PORT`` or ``:PORT``."""


def parse_listen(text: str) -> tuple[str, int]:
    """Split ``HOST:PORT``, ``[V6]:PORT`` or ``:PORT`` (all interfaces) into host and port."""
    host, sep, port_text = text.strip().rpartition(":")
    if not sep or not port_text.isdigit() or int(port_text) > 65535:
        raise ListenError(f"listen address {text!r} is not HOST:PORT or :PORT")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    elif ":" in host:
        raise ListenError(f"listen address {text!r}: write an IPv6 host as [HOST]:PORT")
    return host or "0.0.0.0", int(port_text)


class ConfigError(Exception):
    """A configuration that cannot be used; ``errors`` holds every problem found."""

    def __init__(self, source: str, errors: list[str]) -> None:
        self.source = source
        self.errors = errors
        super().__init__("\n".join(f"{source}: {e}" for e in errors))


@dataclass(frozen=True)
class Retry:
    """Retry a failed run ``attempts`` times, waiting ``backoff`` seconds, doubled each time."""

    attempts: int
    backoff: float

    def delay_before(self, attempt: int) -> float:
        """Seconds to wait before retry number ``attempt`` (1-based)."""
        return self.backoff * float(2 ** (attempt - 1))


@dataclass(frozen=True)
class EventRule:
    """One ``events`` rule: it matches an event when every field it names matches.

    ``unless`` is a rule of its own that must not match: globs cannot say "not",
    and "tagged pushes, but not release candidates" is a common wish.
    """

    action: str | None = None
    tagged: bool | None = None
    repository: str | None = None
    tag: str | None = None
    media_type: str | None = None
    unless: EventRule | None = None


DEFAULT_EVENT_RULES = (EventRule(action="push", tagged=True),)


@dataclass(frozen=True)
class CommandConfig:
    """Everything the runner and the process launcher need to know about one command."""

    name: str
    cmd: str
    args: tuple[str, ...] = ()
    env: Mapping[str, str] = field(default_factory=dict)
    workdir: str | None = None
    disable: bool = False
    delay: float = DEFAULT_DELAY
    max_delay: float = max(10 * DEFAULT_DELAY, MIN_DEFAULT_MAX_DELAY)
    reconcile: float | None = None
    run_at: str | None = None
    run_on_start: bool = False
    timeout: float | None = None
    retry: Retry | None = None
    events: tuple[EventRule, ...] = DEFAULT_EVENT_RULES
    formats: frozenset[str] = frozenset(FORMATS)

    @property
    def argv(self) -> list[str]:
        """The process's argument vector: ``cmd`` followed by ``args``."""
        return [self.cmd, *self.args]


@dataclass(frozen=True)
class AuthConfig:
    """The shared secret every POST must carry. ``repr`` never shows it."""

    token: str = field(repr=False)


@dataclass(frozen=True)
class Config:
    """A whole, validated configuration file."""

    commands: tuple[CommandConfig, ...]
    listen: str | None = None
    auth: AuthConfig | None = None
    state_dir: str | None = None
    shutdown_grace: float = DEFAULT_SHUTDOWN_GRACE
    source: str = "<config>"

    def command(self, name: str) -> CommandConfig | None:
        """The command called ``name``, if there is one."""
        for command in self.commands:
            if command.name == name:
                return command
        return None


def parse_duration(value: object) -> float:
    """Seconds in a Go-style duration (``300ms``, ``1m30s``) or a bare number of seconds.

    Raises ValueError for anything else, including negative values.
    """
    if isinstance(value, bool):
        raise ValueError
    if isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str):
        seconds = _parse_duration_text(value.strip())
    else:
        raise ValueError
    if not math.isfinite(seconds) or seconds < 0:
        raise ValueError
    return seconds


def format_duration(seconds: float) -> str:
    """Seconds as a Go-style duration: ``300ms``, ``3s``, ``1m30s``, ``2h``."""
    if seconds < 1:
        return f"{seconds * 1000:g}ms"
    whole = int(seconds)
    if whole != seconds:
        return f"{seconds:g}s"
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    parts = [
        f"{hours}h" if hours else "",
        f"{minutes}m" if minutes else "",
        f"{secs}s" if secs else "",
    ]
    return "".join(parts)


def _parse_duration_text(text: str) -> float:
    if text in ("", "-"):
        raise ValueError
    try:
        return float(text)
    except ValueError:
        pass
    position, total = 0, 0.0
    while position < len(text):
        match = _DURATION_PART.match(text, position)
        if match is None:
            raise ValueError
        total += float(match.group(1)) * _UNIT_SECONDS[match.group(2)]
        position = match.end()
    return total


def validate_cron(expression: str) -> str | None:
    """Why ``expression`` is not a usable 5-field schedule, or None when it is."""
    text = expression.strip()
    if text.startswith("@"):
        if text not in CRON_ALIASES:
            return f"unknown schedule {text!r} (use one of {', '.join(sorted(CRON_ALIASES))})"
    elif len(text.split()) != 5:
        return "needs 5 fields: minute hour day-of-month month day-of-week"
    try:
        croniter(text, datetime.now().astimezone()).get_next(datetime)
    except CroniterBadDateError:
        return "never fires"
    except (CroniterBadCronError, ValueError, KeyError) as exc:
        return str(exc) or "not a cron expression"
    return None


T = TypeVar("T")


class _Checker:
    """Collects errors with their key paths while reading an untyped YAML tree."""

    def __init__(self) -> None:
        self.errors: list[str] = []

    def error(self, path: str, message: str) -> None:
        # The document itself has the empty path; name it so no line starts with ": ".
        self.errors.append(f"{path or 'top level'}: {message}")

    def mapping(self, path: str, value: object, known: frozenset[str]) -> dict[str, Any] | None:
        if not isinstance(value, dict):
            self.error(path, f"must be a mapping, not {_describe(value)}")
            return None
        for key in value:
            if not isinstance(key, str):
                self.error(path, f"key {key!r} is not a string")
            elif key not in known:
                self.error(_join(path, key), f"unknown key (known: {', '.join(sorted(known))})")
        return {k: v for k, v in value.items() if isinstance(k, str)}

    def typed(self, path: str, value: object, kind: type[T], what: str) -> T | None:
        if kind is not bool and isinstance(value, bool):
            self.error(path, f"must be {what}, not a boolean")
            return None
        if not isinstance(value, kind):
            self.error(path, f"must be {what}, not {_describe(value)}")
            return None
        return value

    def duration(self, path: str, value: object) -> float | None:
        try:
            return parse_duration(value)
        except ValueError:
            self.error(path, f"{_show(value)} is not a duration (use e.g. 300ms, 3s, 1m30s, 2h)")
            return None

    def optional(
        self, data: dict[str, Any], key: str, path: str, read: Callable[[str, object], T | None]
    ) -> T | None:
        if key not in data or data[key] is None:
            return None
        return read(_join(path, key), data[key])


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _describe(value: object) -> str:
    if value is None:
        return "empty"
    names = {dict: "a mapping", list: "a list", str: "a string", bool: "a boolean"}
    for kind, name in names.items():
        if isinstance(value, kind):
            return name
    if isinstance(value, int | float):
        return "a number"
    return type(value).__name__


def _show(value: object) -> str:
    # Echo values as they were written in YAML (`true`, not Python's `True`).
    if isinstance(value, bool):
        return "true" if value else "false"
    return f'"{value}"' if isinstance(value, str) else repr(value)


_TOP_KEYS = frozenset({"listen", "auth", "stateDir", "shutdownGrace", "commands"})
_COMMAND_KEYS = frozenset(
    {
        "name",
        "cmd",
        "args",
        "env",
        "workdir",
        "disable",
        "delay",
        "maxDelay",
        "reconcile",
        "runAt",
        "runOnStart",
        "timeout",
        "retry",
        "events",
        "formats",
    }
)
_RETRY_KEYS = frozenset({"attempts", "backoff"})
_RULE_KEYS = frozenset({"action", "tagged", "repository", "tag", "mediaType", "unless"})
_AUTH_KEYS = frozenset({"token", "tokenFile"})


def load_config(path: str | os.PathLike[str], *, env: Mapping[str, str] | None = None) -> Config:
    """Read, parse and validate the file at ``path``; raise ConfigError listing every problem."""
    source = os.fspath(path)
    try:
        text = Path(source).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise ConfigError(source, [f"cannot read: {reason}"]) from None
    return parse_config(text, source=source, env=env)


def parse_config(
    text: str, *, source: str = "<config>", env: Mapping[str, str] | None = None
) -> Config:
    """Validate YAML ``text``; ``env`` supplies S3SYNCER_TOKEN (default: os.environ)."""
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}: " if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError(source, [f"{where}not valid YAML: {problem}"]) from None
    checker = _Checker()
    config = _read_config(checker, data, source, os.environ if env is None else env)
    if checker.errors or config is None:
        raise ConfigError(source, checker.errors or ["empty configuration"])
    return config


def _read_config(
    checker: _Checker, data: object, source: str, env: Mapping[str, str]
) -> Config | None:
    top = checker.mapping("", data if data is not None else {}, _TOP_KEYS)
    if top is None:
        return None
    listen = checker.optional(top, "listen", "", lambda p, v: _read_listen(checker, p, v))
    state_dir = checker.optional(
        top, "stateDir", "", lambda p, v: checker.typed(p, v, str, "a string")
    )
    grace = checker.optional(top, "shutdownGrace", "", checker.duration)
    # A bare `auth:` (its settings commented out) must not silently turn auth off:
    # read it as an empty mapping, which asks for a token.
    auth_value = {} if "auth" in top and top["auth"] is None else top.get("auth")
    auth = _read_auth(checker, auth_value, env)
    commands = _read_commands(checker, top.get("commands"))
    return Config(
        commands=commands,
        listen=listen,
        auth=auth,
        state_dir=state_dir,
        shutdown_grace=DEFAULT_SHUTDOWN_GRACE if grace is None else grace,
        source=source,
    )


def _read_listen(checker: _Checker, path: str, value: object) -> str | None:
    listen = checker.typed(path, value, str, "a string")
    if listen is None:
        return None
    try:
        parse_listen(listen)
    except ListenError as exc:
        checker.error(path, str(exc))
        return None
    return listen


def _read_auth(checker: _Checker, value: object, env: Mapping[str, str]) -> AuthConfig | None:
    from_env = env.get("S3SYNCER_TOKEN", "").strip()
    if value is None:
        return AuthConfig(from_env) if from_env else None
    data = checker.mapping("auth", value, _AUTH_KEYS)
    if data is None:
        return None
    if "token" in data and "tokenFile" in data:
        checker.error("auth", "set token or tokenFile, not both")
        return None
    token = checker.optional(
        data, "token", "auth", lambda p, v: checker.typed(p, v, str, "a string")
    )
    token_file = checker.optional(
        data, "tokenFile", "auth", lambda p, v: checker.typed(p, v, str, "a string")
    )
    if token_file is not None and not from_env:
        token = _read_token_file(checker, token_file)
    if from_env:
        return AuthConfig(from_env)
    if token is None or not token.strip():
        if token is not None:
            checker.error("auth.token", "is empty")
        elif "token" not in data and "tokenFile" not in data:
            # When a key is present but unusable, its own error already says why.
            checker.error("auth", "needs token or tokenFile")
        return None
    return AuthConfig(token.strip())


def _read_token_file(checker: _Checker, path: str) -> str | None:
    try:
        token = Path(path).read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        checker.error("auth.tokenFile", f"cannot read {path}: {reason}")
        return None
    if not token:
        checker.error("auth.tokenFile", f"{path} is empty")
        return None
    return token


def _read_commands(checker: _Checker, value: object) -> tuple[CommandConfig, ...]:
    if value is None:
        checker.error("commands", "is missing: configure at least one command")
        return ()
    items = checker.typed("commands", value, list, "a list")
    if items is None:
        return ()
    if not items:
        checker.error("commands", "is empty: configure at least one command")
    commands: list[CommandConfig] = []
    seen: dict[str, int] = {}
    for index, item in enumerate(items):
        path = f"commands[{index}]"
        name = item.get("name") if isinstance(item, dict) else None
        duplicate = False
        if isinstance(name, str):
            duplicate = name in seen
            if duplicate:
                checker.error(f"{path}.name", f'"{name}" is already used by commands[{seen[name]}]')
            else:
                seen[name] = index
        # A duplicate is still validated: every error in the file is reported at once.
        command = _read_command(checker, path, item)
        if command is not None and not duplicate:
            commands.append(command)
    return tuple(commands)


def _read_command(checker: _Checker, path: str, value: object) -> CommandConfig | None:
    data = checker.mapping(path, value, _COMMAND_KEYS)
    if data is None:
        return None
    errors_before = len(checker.errors)
    name = _read_name(checker, path, data.get("name"))
    cmd = _read_cmd(checker, path, data.get("cmd"))
    args = _read_args(checker, f"{path}.args", data.get("args"))
    env = _read_env(checker, f"{path}.env", data.get("env"))
    text = lambda p, v: checker.typed(p, v, str, "a string")  # noqa: E731
    flag = lambda p, v: checker.typed(p, v, bool, "true or false")  # noqa: E731
    workdir = checker.optional(data, "workdir", path, text)
    disable = checker.optional(data, "disable", path, flag)
    delay = checker.optional(data, "delay", path, checker.duration)
    max_delay = checker.optional(data, "maxDelay", path, checker.duration)
    reconcile = checker.optional(data, "reconcile", path, checker.duration)
    run_at = checker.optional(data, "runAt", path, lambda p, v: _read_cron(checker, p, v))
    run_on_start = checker.optional(data, "runOnStart", path, flag)
    timeout = checker.optional(data, "timeout", path, checker.duration)
    retry = checker.optional(data, "retry", path, lambda p, v: _read_retry(checker, p, v))
    events = _read_rules(checker, f"{path}.events", data.get("events"))
    formats = _read_formats(checker, f"{path}.formats", data.get("formats", list(FORMATS)))
    delay = DEFAULT_DELAY if delay is None else delay
    if max_delay is None:
        max_delay = max(10 * delay, MIN_DEFAULT_MAX_DELAY)
    elif max_delay < delay:
        checker.error(f"{path}.maxDelay", "must not be shorter than delay")
    if reconcile == 0:
        checker.error(f"{path}.reconcile", "must be longer than 0 (leave it out to turn it off)")
    if timeout == 0:
        checker.error(f"{path}.timeout", "must be longer than 0 (leave it out for no timeout)")
    if len(checker.errors) > errors_before or name is None or cmd is None:
        return None
    return CommandConfig(
        name=name,
        cmd=cmd,
        args=args,
        env=env,
        workdir=workdir,
        disable=bool(disable),
        delay=delay,
        max_delay=max_delay,
        reconcile=reconcile,
        run_at=run_at,
        run_on_start=bool(run_on_start),
        timeout=timeout,
        retry=retry,
        events=events,
        formats=formats,
    )


def _read_formats(checker: _Checker, path: str, value: object) -> frozenset[str]:
    if not isinstance(value, list) or not value:
        checker.error(path, f"must be a non-empty list of {', '.join(FORMATS)}")
        return frozenset(FORMATS)
    for index, item in enumerate(value):
        if item not in FORMATS:
            checker.error(
                f"{path}[{index}]", f"{_show(item)} is not a format ({', '.join(FORMATS)})"
            )
    return frozenset(item for item in value if item in FORMATS)


def _read_name(checker: _Checker, path: str, value: object) -> str | None:
    if value is None:
        checker.error(f"{path}.name", "is missing")
        return None
    name = checker.typed(f"{path}.name", value, str, "a string")
    if name is not None and not NAME_PATTERN.fullmatch(name):
        checker.error(f"{path}.name", f'"{name}" may only use letters, digits, ".", "_" and "-"')
        return None
    return name


def _read_cmd(checker: _Checker, path: str, value: object) -> str | None:
    if value is None:
        checker.error(f"{path}.cmd", "is missing: the program to run")
        return None
    cmd = checker.typed(f"{path}.cmd", value, str, "a string")
    if cmd is not None and not cmd.strip():
        checker.error(f"{path}.cmd", "is empty")
        return None
    return cmd


def _read_args(checker: _Checker, path: str, value: object) -> tuple[str, ...]:
    if value is None:
        return ()
    items = checker.typed(path, value, list, "a list of strings")
    if items is None:
        return ()
    args: list[str] = []
    for index, item in enumerate(items):
        # Numbers are common in argument lists (--jobs 4); YAML makes them ints.
        if isinstance(item, int | float) and not isinstance(item, bool):
            args.append(str(item))
        elif isinstance(item, str):
            args.append(item)
        else:
            checker.error(f"{path}[{index}]", f"must be a string, not {_describe(item)}")
    return tuple(args)


def _read_env(checker: _Checker, path: str, value: object) -> dict[str, str]:
    if value is None:
        return {}
    data = checker.typed(path, value, dict, "a mapping of names to values")
    if data is None:
        return {}
    env: dict[str, str] = {}
    for key, item in data.items():
        if not isinstance(key, str) or not key or "=" in key:
            checker.error(path, f"{key!r} is not a valid variable name")
        elif isinstance(item, str | int | float) and not isinstance(item, bool):
            env[key] = str(item)
        else:
            checker.error(f"{path}.{key}", f"must be a string, not {_describe(item)}")
    return env


def _read_cron(checker: _Checker, path: str, value: object) -> str | None:
    expression = checker.typed(path, value, str, "a cron expression")
    if expression is None:
        return None
    problem = validate_cron(expression)
    if problem is not None:
        checker.error(path, f'"{expression}" is not a valid cron schedule: {problem}')
        return None
    return expression.strip()


def _read_retry(checker: _Checker, path: str, value: object) -> Retry | None:
    data = checker.mapping(path, value, _RETRY_KEYS)
    if data is None:
        return None
    attempts = checker.typed(f"{path}.attempts", data.get("attempts", 3), int, "a whole number")
    backoff = checker.duration(f"{path}.backoff", data.get("backoff", "10s"))
    if attempts is not None and attempts < 1:
        checker.error(f"{path}.attempts", "must be at least 1")
        return None
    if attempts is None or backoff is None:
        return None
    return Retry(attempts=attempts, backoff=backoff)


def _read_rules(checker: _Checker, path: str, value: object) -> tuple[EventRule, ...]:
    if value is None:
        return DEFAULT_EVENT_RULES
    items = checker.typed(path, value, list, "a list of rules")
    if items is None:
        return DEFAULT_EVENT_RULES
    rules: list[EventRule] = []
    for index, item in enumerate(items):
        rule = _read_rule(checker, f"{path}[{index}]", item)
        if rule is not None:
            rules.append(rule)
    return tuple(rules)


def _read_rule(checker: _Checker, path: str, value: object) -> EventRule | None:
    data = checker.mapping(path, value, _RULE_KEYS)
    if data is None:
        return None
    text = lambda p, v: checker.typed(p, v, str, "a string")  # noqa: E731
    action = checker.optional(data, "action", path, text)
    if action is not None and action not in ACTIONS:
        checker.error(f"{path}.action", f'"{action}" is not one of {", ".join(sorted(ACTIONS))}')
    tagged = checker.optional(
        data, "tagged", path, lambda p, v: checker.typed(p, v, bool, "true or false")
    )
    return EventRule(
        action=action,
        tagged=tagged,
        repository=checker.optional(data, "repository", path, text),
        tag=checker.optional(data, "tag", path, text),
        media_type=checker.optional(data, "mediaType", path, text),
        unless=checker.optional(data, "unless", path, lambda p, v: _read_rule(checker, p, v)),
    )
