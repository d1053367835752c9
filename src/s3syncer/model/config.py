"""The configuration model: the frozen dataclasses the daemon runs on, and its value parsers.

A ``Config`` is what a configuration file means once it has been checked (reading the
YAML is config/file.py's work): the rest of the daemon trusts it without checking again.
The parsers here (durations, cron schedules, listen addresses, tokens) are shared by
that reader and by the command line, so a value means the same wherever it is written.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime

from croniter import CroniterBadCronError, CroniterBadDateError, croniter

BOM = "\ufeff"  # the UTF-8 byte order mark, as text
DEFAULT_CONFIG_PATH = "/etc/s3syncer/config.yaml"
DEFAULT_LISTEN = "localhost:9999"
MAX_PORT = 65535
DEFAULT_DELAY = 5.0
MIN_DEFAULT_MAX_DELAY = 60.0
DEFAULT_SHUTDOWN_GRACE = 25.0
DEFAULT_REQUEST_TIMEOUT = 10.0  # for a request's headers and body to arrive
NAME_PATTERN = re.compile(r"[A-Za-z0-9._-]+")
ACTIONS = frozenset({"push", "pull", "mount", "delete"})
# The webhook formats a command can accept (see formats/detect.py), in the order they are tried.
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
    """Split ``HOST:PORT``, ``[V6]:PORT`` or ``:PORT`` (every IPv4 interface) into host and port."""
    host, sep, port_text = text.strip().rpartition(":")
    if not sep or not port_text.isdigit():
        raise ListenError(f"listen address {text!r} is not HOST:PORT or :PORT")
    if int(port_text) > MAX_PORT:
        raise ListenError(
            f"listen address {text!r}: port {int(port_text)} is out of range (0-{MAX_PORT})"
        )
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
    # `env: {VAR: null}`: removed from what the command inherits
    unset_env: frozenset[str] = frozenset()
    # `inheritEnv: false`: the command starts from an empty environment, not the daemon's
    inherit_env: bool = True
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
    request_timeout: float = DEFAULT_REQUEST_TIMEOUT
    source: str = "<config>"
    # What was accepted but looks like a mistake; `check` prints it, `serve` logs it.
    warnings: tuple[str, ...] = field(default=(), compare=False)

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


def clean_token(text: str) -> str:
    """A token as read from a file: without a UTF-8 byte order mark or surrounding whitespace."""
    return text.lstrip(BOM).strip()
