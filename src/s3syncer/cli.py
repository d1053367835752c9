"""The command line: every subcommand, and the original tool's single-dash flags.

Exit codes: 0 after a clean shutdown or a good check, 2 for a bad config or
bad flags, 1 for anything else.

A command runs ``replicate`` (or ``verify``) on every push, so those two must not pay for the
daemon: only the chosen subcommand's flags are set up, and the daemon's modules (config, logs,
trio, Quart, Hypercorn) are imported inside the functions that use them.
"""

from __future__ import annotations

import argparse
import logging
import os
import shlex
import sys
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn

from . import __version__

if TYPE_CHECKING:
    from .config import CommandConfig, Config, EventRule
    from .service import Service
    from .signals import EarlySignals

log = logging.getLogger("s3syncer")

EXIT_OK, EXIT_FAILURE, EXIT_USAGE = 0, 1, 2
SUBCOMMAND_HELP = {
    "serve": "run the webhook daemon",
    "check": "validate a config file and summarise it",
    "run": "ask a running daemon for a manual run of a command",
    "replicate": "copy what a run's registry events changed, S3 to S3 (needs boto3)",
    "verify": "check that a mirror holds every tag of the source, completely (boto3)",
}
SUBCOMMANDS = frozenset(SUBCOMMAND_HELP)
TOOLS = frozenset({"replicate", "verify"})  # the subcommands a command runs, on every push
LEGACY_FLAGS = {"-config": "--config", "-listen": "--listen"}
LOG_LEVELS = ("debug", "info", "warning", "error")


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The argument parser for every subcommand; with ``only``, just that one's flags.

    Setting up a subcommand's flags imports what its help names (the daemon's config for
    ``serve``, the replicate package for ``replicate``): ``main`` sets up only the one chosen.
    """
    parser = argparse.ArgumentParser(
        prog="s3syncer",
        description="Run a sync command when a container registry reports a change.",
    )
    parser.add_argument("--version", action="version", version=f"s3syncer {__version__}")
    sub = parser.add_subparsers(dest="subcommand", metavar="{serve,check,run,replicate,verify}")
    for name, help_text in SUBCOMMAND_HELP.items():
        subparser = sub.add_parser(name, help=help_text)
        if only in (None, name):
            ADD_FLAGS[name](subparser)
    return parser


def _config_help() -> str:
    from .config import DEFAULT_CONFIG_PATH  # noqa: PLC0415 - the daemon's, see the docstring

    return f"config file (env S3SYNCER_CONFIG, default {DEFAULT_CONFIG_PATH})"


def _serve_flags(serve: argparse.ArgumentParser) -> None:
    from .config import DEFAULT_LISTEN  # noqa: PLC0415
    from .logs import LOG_FORMATS  # noqa: PLC0415

    serve.add_argument("--config", help=_config_help())
    serve.add_argument(
        "--listen", help=f"HOST:PORT or :PORT (env S3SYNCER_LISTEN, default {DEFAULT_LISTEN})"
    )
    serve.add_argument("--log-format", choices=LOG_FORMATS, default="text")
    serve.add_argument("--log-level", choices=LOG_LEVELS, default="info", type=str.lower)


def _check_flags(check: argparse.ArgumentParser) -> None:
    check.add_argument("--config", help=_config_help())


def _run_flags(run: argparse.ArgumentParser) -> None:
    run.add_argument("name", help="the command's name")
    run.add_argument("--url", help="the daemon's base URL (default http://localhost:9999)")
    run.add_argument("--token-file", help="file holding the token (env S3SYNCER_TOKEN)")


def _replicate_flags(replicate: argparse.ArgumentParser) -> None:
    from .replicate.arguments import add_arguments  # noqa: PLC0415

    add_arguments(replicate)


def _verify_flags(verify: argparse.ArgumentParser) -> None:
    from .replicate.arguments import add_verify_arguments  # noqa: PLC0415

    add_verify_arguments(verify)


ADD_FLAGS: dict[str, Callable[[argparse.ArgumentParser], None]] = {
    "serve": _serve_flags,
    "check": _check_flags,
    "run": _run_flags,
    "replicate": _replicate_flags,
    "verify": _verify_flags,
}


def normalise_argv(argv: Sequence[str]) -> list[str]:
    """Accept the original tool's ``-config``/``-listen`` and a missing subcommand (serve)."""
    args: list[str] = []
    for arg in argv:
        flag, eq, value = arg.partition("=")
        args.append(LEGACY_FLAGS[flag] + eq + value if flag in LEGACY_FLAGS else arg)
    if not args or (args[0] not in SUBCOMMANDS and args[0] not in ("-h", "--help", "--version")):
        args.insert(0, "serve")
    return args


def entry() -> NoReturn:
    """The ``s3syncer`` command and ``python -m s3syncer``: :func:`main`, then exit.

    After ``replicate`` or ``verify``, it exits without tearing the interpreter down: that
    frees, one by one, every object botocore loaded (its endpoint table, the S3 model), about
    0.1 s on every run, and a command runs them on every push. By then their output is
    written and their threads joined; the output is flushed here. The others exit as usual.
    """
    argv = normalise_argv(sys.argv[1:])
    code = main(argv)
    if argv[0] in TOOLS:
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        except (OSError, ValueError):
            sys.exit(code)  # a closed pipe: let the usual exit report it
        os._exit(code)
    sys.exit(code)


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command line (``sys.argv`` by default); return its exit code."""
    argv = normalise_argv(sys.argv[1:] if argv is None else argv)
    args = build_parser(only=argv[0]).parse_args(argv)
    if args.subcommand == "check":
        return check(args.config)
    if args.subcommand == "run":
        return request_run(args.name, args.url, args.token_file)
    if args.subcommand == "replicate":
        from .replicate.command import run as replicate  # noqa: PLC0415

        return replicate(args)
    if args.subcommand == "verify":
        from .replicate.verify import run as verify  # noqa: PLC0415

        return verify(args)
    return serve(args.config, args.listen, args.log_format, args.log_level)


def _config_path(flag: str | None) -> str:
    from .config import DEFAULT_CONFIG_PATH  # noqa: PLC0415

    return flag or os.environ.get("S3SYNCER_CONFIG") or DEFAULT_CONFIG_PATH


def _load(flag: str | None) -> Config | None:
    from .config import ConfigError  # noqa: PLC0415
    from .config_file import load_config  # noqa: PLC0415

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
    from .config import format_duration  # noqa: PLC0415

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
    from .config import FORMATS, format_duration  # noqa: PLC0415

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

    from .config import DEFAULT_LISTEN, ListenError, parse_listen  # noqa: PLC0415
    from .fd_budget import raise_open_files_limit  # noqa: PLC0415
    from .leftovers import become_subreaper  # noqa: PLC0415
    from .logs import configure_logging  # noqa: PLC0415
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
    import urllib.error  # noqa: PLC0415
    import urllib.parse  # noqa: PLC0415
    import urllib.request  # noqa: PLC0415

    from .config import DEFAULT_LISTEN, clean_token  # noqa: PLC0415

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
