"""``s3syncer check``: load a config file, print every error or a summary of it."""

from __future__ import annotations

import os
import shlex
import sys
from typing import TYPE_CHECKING

from .exit_codes import EXIT_OK, EXIT_USAGE

if TYPE_CHECKING:
    from ..model.config import CommandConfig, Config, EventRule


def config_path(flag: str | None) -> str:
    from ..model.config import DEFAULT_CONFIG_PATH  # noqa: PLC0415

    return flag or os.environ.get("S3SYNCER_CONFIG") or DEFAULT_CONFIG_PATH


def load_file(flag: str | None) -> Config | None:
    from ..config.file import load_config  # noqa: PLC0415
    from ..model.config import ConfigError  # noqa: PLC0415

    try:
        return load_config(config_path(flag))
    except ConfigError as exc:
        for error in exc.errors:
            print(f"{exc.source}: {error}", file=sys.stderr)
        return None


def check(config_flag: str | None) -> int:
    """``s3syncer check``: print every error (exit 2) or a summary (exit 0)."""
    config = load_file(config_flag)
    if config is None:
        return EXIT_USAGE
    print(summarise(config))
    for warning in config.warnings:
        print(f"{config.source}: warning: {warning}", file=sys.stderr)
    return EXIT_OK


def summarise(config: Config) -> str:
    """A human summary of a valid config. It names secrets' sources, never their values."""
    from ..model.config import DEFAULT_LISTEN, format_duration  # noqa: PLC0415

    count = len(config.commands)
    headline = f"{config.source}: OK, {count} command{'s' if count != 1 else ''}"
    warnings = len(config.warnings)
    if warnings:  # printed on stderr; an OK alone would hide them
        headline += f", {warnings} warning{'s' if warnings != 1 else ''}"
    lines = [headline]
    # S3SYNCER_LISTEN or --listen may still win when the daemon starts
    lines.append(
        f"  listen: {config.listen}" if config.listen else f"  listen: {DEFAULT_LISTEN} (default)"
    )
    lines.append(f"  auth: {'token required' if config.auth else 'off (anyone may trigger)'}")
    if config.state_dir:
        lines.append(f"  stateDir: {config.state_dir}")
    lines.append(f"  shutdownGrace: {format_duration(config.shutdown_grace)}")
    lines.append(f"  requestTimeout: {format_duration(config.request_timeout)}")
    for command in config.commands:
        lines.extend(_summarise_command(command))
    return "\n".join(lines)


def _summarise_command(command: CommandConfig) -> list[str]:
    from ..model.config import FORMATS, format_duration  # noqa: PLC0415

    timing = [f"delay {format_duration(command.delay)}"]
    timing.append(f"maxDelay {format_duration(command.max_delay)}")
    if command.reconcile is not None:
        timing.append(f"reconcile {format_duration(command.reconcile)}")
    if command.run_at:
        timing.append(f"runAt {command.run_at!r}")
    if command.run_on_start:
        timing.append("runOnStart")
    if command.timeout is not None:
        timing.append(f"timeout {format_duration(command.timeout)}")
    if command.retry is not None:
        backoff = format_duration(command.retry.backoff)
        timing.append(f"retry {command.retry.attempts}x from {backoff}")
    lines = [
        f"  {command.name}{' (disabled)' if command.disable else ''}: {shlex.join(command.argv)}",
        f"    {', '.join(timing)}",
        f"    on: {_describe_starts(command)}",
    ]
    if command.events:  # without a rule no webhook starts it: its formats mean nothing
        lines.append(f"    formats: {', '.join(f for f in FORMATS if f in command.formats)}")
    if command.workdir:
        lines.append(f"    workdir: {command.workdir}")
    lines.extend(_describe_environment(command))
    return lines


def _describe_environment(command: CommandConfig) -> list[str]:
    # names only: a value may be a secret
    lines = [] if command.inherit_env else ["    environment: clean (inheritEnv: false)"]
    if command.env:
        lines.append(f"    env: {', '.join(sorted(command.env))}")
    if command.unset_env:
        lines.append(f"    unset: {', '.join(sorted(command.unset_env))}")
    return lines


def _describe_starts(command: CommandConfig) -> str:
    if command.events:
        return "; ".join(_describe_rule(r) for r in command.events)
    if command.reconcile is not None or command.run_at or command.run_on_start:
        return "no events"
    return f"no events; manual runs only (s3syncer run {shlex.quote(command.name)})"


def _describe_rule(rule: EventRule) -> str:
    parts = [rule.action or "any action"]
    if rule.tagged is not None:
        parts.append("tagged" if rule.tagged else "untagged")
    for label, value in (("repository", rule.repository), ("tag", rule.tag)):
        if value is not None:
            parts.append(f"{label} {value}")
    if rule.media_type is not None:
        parts.append(f"mediaType {rule.media_type}")
    if rule.unless is not None:
        parts.append(f"unless ({_describe_rule(rule.unless)})")
    return " ".join(parts)
