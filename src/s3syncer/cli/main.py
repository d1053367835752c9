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
import sys
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, NoReturn

from .check import check
from .run_client import request_run
from .serve import catch_signals_early, serve

if TYPE_CHECKING:
    pass

log = logging.getLogger("s3syncer")

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
    from .. import __version__  # noqa: PLC0415 - looked up when asked for: see __init__

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
    from ..model.config import DEFAULT_CONFIG_PATH  # noqa: PLC0415 - the daemon's, see the docstring

    return f"config file (env S3SYNCER_CONFIG, default {DEFAULT_CONFIG_PATH})"


def _serve_flags(serve: argparse.ArgumentParser) -> None:
    from ..model.config import DEFAULT_LISTEN  # noqa: PLC0415
    from ..obs.logs import LOG_FORMATS  # noqa: PLC0415

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
    run.add_argument("--config", help=_config_help() + "; its listen and auth are used")
    run.add_argument(
        "--url", help="the daemon's base URL (default: from S3SYNCER_LISTEN or the config's listen)"
    )
    run.add_argument(
        "--token-file", help="file holding the token (default: S3SYNCER_TOKEN or the config's auth)"
    )


def _replicate_flags(replicate: argparse.ArgumentParser) -> None:
    from ..replicate.arguments import add_arguments  # noqa: PLC0415

    add_arguments(replicate)


def _verify_flags(verify: argparse.ArgumentParser) -> None:
    from ..replicate.arguments import add_verify_arguments  # noqa: PLC0415

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
    # before the parser: setting up serve's flags imports the daemon's config
    early = catch_signals_early() if argv[0] == "serve" else None
    args = build_parser(only=argv[0]).parse_args(argv)
    if args.subcommand == "check":
        return check(args.config)
    if args.subcommand == "run":
        return request_run(args.name, args.url, args.token_file, args.config)
    if args.subcommand == "replicate":
        from ..replicate.command import run as replicate  # noqa: PLC0415

        return replicate(args)
    if args.subcommand == "verify":
        from ..replicate.verify import run as verify  # noqa: PLC0415

        return verify(args)
    return serve(args.config, args.listen, args.log_format, args.log_level, early)
