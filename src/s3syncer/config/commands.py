"""Read the ``commands`` list of a configuration file: what each key of a command means.

config/file.py reads the rest of the file and hands this the list; the ``Checker`` it
passes collects every problem, so a bad entry never hides the errors of the next.
"""

from __future__ import annotations

from collections.abc import Mapping

from ..model.config import (
    ACTIONS,
    DEFAULT_DELAY,
    DEFAULT_EVENT_RULES,
    FORMATS,
    MIN_DEFAULT_MAX_DELAY,
    NAME_PATTERN,
    CommandConfig,
    EventRule,
    Retry,
    validate_cron,
)
from .checker import Checker, describe, show
from .presence import check_presence, search_path_of

_COMMAND_KEYS = frozenset(
    {
        "name",
        "cmd",
        "args",
        "env",
        "inheritEnv",
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


def read_commands(
    checker: Checker, value: object, daemon_env: Mapping[str, str]
) -> tuple[CommandConfig, ...]:
    """The valid entries of ``commands``; each problem, duplicate names too, goes to ``checker``.

    ``daemon_env`` is the environment a command inherits: its PATH finds a bare ``cmd``.
    """
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
        if command is not None:
            search_path = search_path_of(
                command.env, command.unset_env, command.inherit_env, daemon_env
            )
            check_presence(checker, path, command.cmd, command.workdir, search_path)
        if command is not None and not duplicate:
            commands.append(command)
    return tuple(commands)


def _read_command(checker: Checker, path: str, value: object) -> CommandConfig | None:
    data = checker.mapping(path, value, _COMMAND_KEYS)
    if data is None:
        return None
    errors_before = len(checker.errors)
    name = _read_name(checker, path, data.get("name"))
    cmd = _read_cmd(checker, path, data.get("cmd"))
    args = _read_args(checker, f"{path}.args", data.get("args"))
    env, unset_env = _read_env(checker, f"{path}.env", data.get("env"))
    text = lambda p, v: checker.typed(p, v, str, "a string")  # noqa: E731
    flag = lambda p, v: checker.typed(p, v, bool, "true or false")  # noqa: E731
    workdir = checker.optional(data, "workdir", path, text)
    inherit_env = checker.optional(data, "inheritEnv", path, flag)
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
        unset_env=unset_env,
        inherit_env=inherit_env is not False,
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


def _read_formats(checker: Checker, path: str, value: object) -> frozenset[str]:
    if not isinstance(value, list) or not value:
        checker.error(path, f"must be a non-empty list of {', '.join(FORMATS)}")
        return frozenset(FORMATS)
    for index, item in enumerate(value):
        if item not in FORMATS:
            checker.error(
                f"{path}[{index}]", f"{show(item)} is not a format ({', '.join(FORMATS)})"
            )
    return frozenset(item for item in value if item in FORMATS)


def _read_name(checker: Checker, path: str, value: object) -> str | None:
    if value is None:
        checker.error(f"{path}.name", "is missing")
        return None
    name = checker.typed(f"{path}.name", value, str, "a string")
    if name is not None and not NAME_PATTERN.fullmatch(name):
        checker.error(f"{path}.name", f'"{name}" may only use letters, digits, ".", "_" and "-"')
        return None
    return name


def _read_cmd(checker: Checker, path: str, value: object) -> str | None:
    if value is None:
        checker.error(f"{path}.cmd", "is missing: the program to run")
        return None
    cmd = checker.typed(f"{path}.cmd", value, str, "a string")
    if cmd is not None and not cmd.strip():
        checker.error(f"{path}.cmd", "is empty")
        return None
    return cmd


def _read_args(checker: Checker, path: str, value: object) -> tuple[str, ...]:
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
            checker.error(f"{path}[{index}]", f"must be a string, not {describe(item)}")
    return tuple(args)


def _read_env(checker: Checker, path: str, value: object) -> tuple[dict[str, str], frozenset[str]]:
    """The variables ``env`` sets, and those it unsets (written with an empty value)."""
    if value is None:
        return {}, frozenset()
    data = checker.typed(path, value, dict, "a mapping of names to values")
    if data is None:
        return {}, frozenset()
    env: dict[str, str] = {}
    unset: set[str] = set()
    for key, item in data.items():
        if not isinstance(key, str) or not key or "=" in key:
            checker.error(path, f"{key!r} is not a valid variable name")
        elif item is None:
            unset.add(key)  # `VAR: null` or `VAR:`: removed from what the command inherits
        elif isinstance(item, str | int | float) and not isinstance(item, bool):
            env[key] = str(item)
        else:
            checker.error(f"{path}.{key}", f"must be a string, not {describe(item)}")
    return env, frozenset(unset)


def _read_cron(checker: Checker, path: str, value: object) -> str | None:
    expression = checker.typed(path, value, str, "a cron expression")
    if expression is None:
        return None
    problem = validate_cron(expression)
    if problem is not None:
        checker.error(path, f'"{expression}" is not a valid cron schedule: {problem}')
        return None
    return expression.strip()


def _read_retry(checker: Checker, path: str, value: object) -> Retry | None:
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


def _read_rules(checker: Checker, path: str, value: object) -> tuple[EventRule, ...]:
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


def _read_rule(checker: Checker, path: str, value: object) -> EventRule | None:
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
