"""The command line: ``serve``, ``check``, ``run`` and the original single-dash flags.

Exit codes: 0 after a clean shutdown or a good check, 2 for a bad config or
bad flags, 1 for anything else.
"""

from __future__ import annotations

import argparse
import logging
import os
import shlex
import sys
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Sequence
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING

from . import __version__
from .config import (
    DEFAULT_CONFIG_PATH,
    DEFAULT_LISTEN,
    FORMATS,
    CommandConfig,
    Config,
    ConfigError,
    EventRule,
    ListenError,
    clean_token,
    format_duration,
    load_config,
    parse_listen,
)
from .fd_budget import raise_open_files_limit
from .leftovers import become_subreaper
from .logs import LOG_FORMATS, configure_logging
from .replicate import add_arguments as add_replicate_arguments
from .replicate import add_verify_arguments, run_verify
from .replicate import run as replicate_run

if TYPE_CHECKING:
    from .service import Service
    from .signals import EarlySignals

log = logging.getLogger("s3syncer")

EXIT_OK, EXIT_FAILURE, EXIT_USAGE = 0, 1, 2
SUBCOMMANDS = frozenset({"serve", "check", "run", "replicate", "verify"})
LEGACY_FLAGS = {"-config": "--config", "-listen": "--listen"}
LOG_LEVELS = ("debug", "info", "warning", "error")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser for every subcommand."""
    parser = argparse.ArgumentParser(
        prog="s3syncer",
        description="Run a sync command when a container registry reports a change.",
    )
    parser.add_argument("--version", action="version", version=f"s3syncer {__version__}")
    sub = parser.add_subparsers(dest="subcommand", metavar="{serve,check,run,replicate,verify}")
    config_help = f"config file (env S3SYNCER_CONFIG, default {DEFAULT_CONFIG_PATH})"

    serve = sub.add_parser("serve", help="run the webhook daemon")
    serve.add_argument("--config", help=config_help)
    serve.add_argument(
        "--listen", help=f"HOST:PORT or :PORT (env S3SYNCER_LISTEN, default {DEFAULT_LISTEN})"
    )
    serve.add_argument("--log-format", choices=LOG_FORMATS, default="text")
    serve.add_argument("--log-level", choices=LOG_LEVELS, default="info", type=str.lower)

    check = sub.add_parser("check", help="validate a config file and summarise it")
    check.add_argument("--config", help=config_help)

    run = sub.add_parser("run", help="ask a running daemon for a manual run of a command")
    run.add_argument("name", help="the command's name")
    run.add_argument("--url", help="the daemon's base URL (default http://localhost:9999)")
    run.add_argument("--token-file", help="file holding the token (env S3SYNCER_TOKEN)")

    replicate = sub.add_parser(
        "replicate", help="copy what a run's registry events changed, S3 to S3 (needs boto3)"
    )
    add_replicate_arguments(replicate)
    verify = sub.add_parser(
        "verify", help="check that a mirror holds every tag of the source, completely (boto3)"
    )
    add_verify_arguments(verify)
    return parser


def normalise_argv(argv: Sequence[str]) -> list[str]:
    """Accept the original tool's ``-config``/``-listen`` and a missing subcommand (serve)."""
    args: list[str] = []
    for arg in argv:
        flag, eq, value = arg.partition("=")
        args.append(LEGACY_FLAGS[flag] + eq + value if flag in LEGACY_FLAGS else arg)
    if not args or (args[0] not in SUBCOMMANDS and args[0] not in ("-h", "--help", "--version")):
        args.insert(0, "serve")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``s3syncer`` console script."""
    args = build_parser().parse_args(normalise_argv(sys.argv[1:] if argv is None else argv))
    if args.subcommand == "check":
        return check(args.config)
    if args.subcommand == "run":
        return request_run(args.name, args.url, args.token_file)
    if args.subcommand == "replicate":
        return replicate_run(args)
    if args.subcommand == "verify":
        return run_verify(args)
    return serve(args.config, args.listen, args.log_format, args.log_level)


def _config_path(flag: str | None) -> str:
    return flag or os.environ.get("S3SYNCER_CONFIG") or DEFAULT_CONFIG_PATH


def _load(flag: str | None) -> Config | None:
    try:
        return load_config(_config_path(flag))
    except ConfigError as exc:
        for error in exc.errors:
            print(f"{exc.source}: {error}", file=sys.stderr)
        return None


def check(config_flag: str | None) -> int:
    """``s3syncer check``: print every error (exit 2) or a summary (exit 0)."""
    config = _load(config_flag)
    if config is None:
        return EXIT_USAGE
    print(summarise(config))
    for warning in config.warnings:
        print(f"{config.source}: warning: {warning}", file=sys.stderr)
    return EXIT_OK


def summarise(config: Config) -> str:
    """A human summary of a valid config. It names secrets' sources, never their values."""
    count = len(config.commands)
    lines = [f"{config.source}: OK, {count} command{'s' if count != 1 else ''}"]
    if config.listen:
        lines.append(f"  listen: {config.listen}")
    lines.append(f"  auth: {'token required' if config.auth else 'off (anyone may trigger)'}")
    if config.state_dir:
        lines.append(f"  stateDir: {config.state_dir}")
    lines.append(f"  shutdownGrace: {format_duration(config.shutdown_grace)}")
    lines.append(f"  requestTimeout: {format_duration(config.request_timeout)}")
    for command in config.commands:
        lines.extend(_summarise_command(command))
    return "\n".join(lines)


def _summarise_command(command: CommandConfig) -> list[str]:
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
        f"    formats: {', '.join(f for f in FORMATS if f in command.formats)}",
    ]
    if command.workdir:
        lines.append(f"    workdir: {command.workdir}")
    if command.env:
        lines.append(f"    env: {', '.join(sorted(command.env))}")
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


def serve(config_flag: str | None, listen_flag: str | None, fmt: str, level: str) -> int:
    """``s3syncer serve``: run until SIGTERM or SIGINT."""
    # the daemon's stack (trio, Quart, Hypercorn) loads here, not with the module: it costs
    # `replicate` and `verify`, which a command runs on every push, 1-2 s of start each
    import trio  # noqa: PLC0415

    from .service import Service  # noqa: PLC0415
    from .signals import EarlySignals  # noqa: PLC0415

    early = EarlySignals()
    early.install()
    configure_logging(fmt, level)
    config = _load(config_flag)
    if config is None:
        return EXIT_USAGE
    for warning in config.warnings:
        log.warning("%s: %s", config.source, warning)
    override = listen_flag or os.environ.get("S3SYNCER_LISTEN")
    listen = override or config.listen or DEFAULT_LISTEN
    try:
        parse_listen(listen)
    except ListenError as exc:
        print(f"s3syncer: {exc}", file=sys.stderr)
        return EXIT_USAGE
    raise_open_files_limit()
    become_subreaper()  # orphans of a run come to us, not to init: see leftovers.py
    service = Service(
        config, listen, config_path=_config_path(config_flag), listen_override=override
    )
    try:
        trio.run(partial(_serve, service, early))
    except BaseException as exc:
        return _exit_code_for(exc)
    return EXIT_OK


async def _serve(service: Service, early: EarlySignals) -> None:
    import trio  # noqa: PLC0415

    from .signals import watch_signals  # noqa: PLC0415

    async with trio.open_nursery() as nursery:
        await nursery.start(watch_signals, service, early)
        await service.run()
        nursery.cancel_scope.cancel()


def _exit_code_for(exc: BaseException) -> int:
    from .server import StartupError, leaf_errors  # noqa: PLC0415

    leaves = leaf_errors(exc)
    if all(isinstance(leaf, KeyboardInterrupt) for leaf in leaves):
        log.warning("stopped without a graceful shutdown")
        return EXIT_FAILURE
    for leaf in leaves:
        if isinstance(leaf, StartupError):
            log.error("%s", leaf.strerror)
        elif not isinstance(leaf, KeyboardInterrupt):
            log.error("s3syncer failed", exc_info=leaf)
    return EXIT_FAILURE


def request_run(name: str, url: str | None, token_file: str | None) -> int:
    """``s3syncer run NAME``: POST /run/NAME to a running daemon."""
    base = url or f"http://{os.environ.get('S3SYNCER_LISTEN', DEFAULT_LISTEN)}"
    if base.startswith("http://:"):
        base = "http://localhost:" + base[len("http://:") :]
    token = os.environ.get("S3SYNCER_TOKEN", "")
    if token_file:
        try:
            token = clean_token(Path(token_file).read_text(encoding="utf-8"))
        except OSError as exc:
            print(f"s3syncer: cannot read {token_file}: {exc.strerror}", file=sys.stderr)
            return EXIT_USAGE
    target = f"{base.rstrip('/')}/run/{urllib.parse.quote(name, safe='')}"
    request = urllib.request.Request(target, method="POST", data=b"")
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            print(f"{name}: run requested ({response.status})")
            return EXIT_OK
    except urllib.error.HTTPError as exc:
        detail = exc.read().decode("utf-8", "replace").strip()
        print(f"s3syncer: {target}: {exc.code} {detail}", file=sys.stderr)
    except (urllib.error.URLError, OSError) as exc:
        print(f"s3syncer: {target}: {getattr(exc, 'reason', exc)}", file=sys.stderr)
    return EXIT_FAILURE
