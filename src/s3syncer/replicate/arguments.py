"""The flags of ``s3syncer replicate`` and ``s3syncer verify``, checked once into frozen values.

Both tools reach the same two sides the same way: ``--source`` / ``--dest`` locations, and
per side an endpoint, region and profile (flag, then ``S3SYNCER_<SIDE>_*``, then boto3's
own chain). Keys are only ever read from the environment: a flag would show in ``ps``.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta

from .durations import DEFAULT_KEEP, parse_duration
from .sizes import (
    MIB,
    MIN_PART,
    ONE_REQUEST_MAX,
    SERVER_COPY_LIMIT,
    SERVER_PART,
    STREAM_PART,
    STREAM_PUT_LIMIT,
)

SIDES = ("source", "dest")
DEFAULT_JOBS = 8


class UsageError(Exception):
    """Bad flags or environment: exit 2."""


@dataclass(frozen=True)
class Location:
    """A bucket and the registry's ``rootdirectory`` in it."""

    bucket: str
    root: str = ""

    def __str__(self) -> str:
        return f"s3://{self.bucket}/{self.root}" if self.root else f"s3://{self.bucket}"


def parse_location(url: str) -> Location:
    """Parse ``s3://BUCKET[/ROOT]``; raise UsageError if it is not one."""
    if not url.startswith("s3://"):
        raise UsageError(f"{url!r}: expected s3://BUCKET[/ROOTDIRECTORY]")
    bucket, _, root = url[len("s3://") :].partition("/")
    if not bucket:
        raise UsageError(f"{url!r}: no bucket")
    return Location(bucket, root.strip("/"))


@dataclass(frozen=True)
class SideConfig:
    """How to reach one side: flags win over ``S3SYNCER_<SIDE>_*``, then boto3's defaults."""

    endpoint: str | None = None
    region: str | None = None
    profile: str | None = None
    access_key: str | None = None
    secret_key: str | None = None
    session_token: str | None = None
    path_style: bool = False


def add_side_arguments(parser: argparse.ArgumentParser) -> None:
    """``--source``, ``--dest``, ``--jobs`` and how to reach each side."""
    parser.add_argument("--source", required=True, help="s3://BUCKET[/ROOTDIRECTORY]")
    parser.add_argument("--dest", required=True, help="s3://BUCKET[/ROOTDIRECTORY]")
    parser.add_argument(
        "--jobs", type=int, default=DEFAULT_JOBS, help=f"parallel requests (default {DEFAULT_JOBS})"
    )
    parser.add_argument(
        "--path-style", action="store_true", help="path-style addressing on both sides"
    )
    for side in SIDES:
        env = f"S3SYNCER_{side.upper()}_"
        parser.add_argument(f"--{side}-endpoint", help=f"endpoint URL (env {env}ENDPOINT)")
        parser.add_argument(f"--{side}-region", help=f"region (env {env}REGION)")
        parser.add_argument(f"--{side}-profile", help=f"AWS profile (env {env}PROFILE)")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The flags of ``s3syncer replicate`` (used by cli.build_parser)."""
    add_side_arguments(parser)
    parser.add_argument(
        "--events", help="events file (default: $S3SYNCER_EVENTS_FILE, set by s3syncer serve)"
    )
    parser.add_argument(
        "--all",
        action="store_true",
        help="copy every tag of the source and its closure, not only what the events name",
    )
    parser.add_argument("--dry-run", action="store_true", help="print what would change")
    parser.add_argument(
        "--delete",
        action="store_true",
        help="apply tag and manifest deletes (never blobs); with --all, remove mirror tags "
        "the source no longer has",
    )
    parser.add_argument(
        "--keep-deleted",
        type=_duration,
        default=DEFAULT_KEEP,
        metavar="DURATION",
        help="with --delete, keep a deleted tag pullable from the mirror this long before "
        "removing it (7d, 36h, 30m, 0 for at once; default 7d)",
    )
    parser.add_argument(
        "--max-deletes",
        type=int,
        default=None,
        metavar="N",
        help="a run that would remove more than N tags from the mirror removes none, lists "
        "them and exits 1 (default: no limit)",
    )
    parser.add_argument(
        "--copy",
        choices=("auto", "server", "stream"),
        default="auto",
        help="server-side copy or stream through this process (default auto: server-side "
        "when both sides have the same endpoint and credentials)",
    )
    parser.add_argument(
        "--server-copy-limit",
        type=_one_request_limit,
        default=SERVER_COPY_LIMIT,
        metavar="BYTES",
        help="largest blob a server-side copy moves in one CopyObject; larger ones are copied "
        f"in {SERVER_PART // MIB} MiB parts in parallel (default {SERVER_COPY_LIMIT // MIB} MiB, "
        "at most 5 GiB)",
    )
    parser.add_argument(
        "--stream-put-limit",
        type=_one_request_limit,
        default=STREAM_PUT_LIMIT,
        metavar="BYTES",
        help="largest blob a streamed copy sends in one PutObject as it reads it; larger ones "
        f"are read and sent in {STREAM_PART // MIB} MiB parts in parallel "
        f"(default {STREAM_PUT_LIMIT // MIB} MiB, at most 5 GiB)",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="one line per object")


def _duration(text: str) -> timedelta:
    """A ``--keep-deleted`` duration."""
    try:
        return parse_duration(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _one_request_limit(text: str) -> int:
    """A ``--*-limit`` of one request: bytes, from S3's smallest part to its largest request."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of bytes") from None
    if not MIN_PART <= value <= ONE_REQUEST_MAX:
        raise argparse.ArgumentTypeError(f"must be from {MIN_PART} to {ONE_REQUEST_MAX} bytes")
    return value


def add_verify_arguments(parser: argparse.ArgumentParser) -> None:
    """The flags of ``s3syncer verify`` (used by cli.build_parser)."""
    add_side_arguments(parser)
    parser.add_argument("--deep", action="store_true", help="also check every blob's sha256")
    parser.add_argument("--json", action="store_true", help="print the result as JSON")


def side_config(args: argparse.Namespace, side: str, environ: Mapping[str, str]) -> SideConfig:
    """Resolve one side's settings from flags and ``S3SYNCER_SOURCE_*`` / ``S3SYNCER_DEST_*``."""
    prefix = f"S3SYNCER_{side.upper()}_"

    def pick(flag: str | None, name: str) -> str | None:
        return flag or environ.get(prefix + name) or None

    access = environ.get(prefix + "AWS_ACCESS_KEY_ID") or None
    secret = environ.get(prefix + "AWS_SECRET_ACCESS_KEY") or None
    if bool(access) != bool(secret):
        raise UsageError(
            f"set both {prefix}AWS_ACCESS_KEY_ID and {prefix}AWS_SECRET_ACCESS_KEY, or neither"
        )
    path_style = args.path_style or environ.get(prefix + "PATH_STYLE", "") in ("1", "true")
    return SideConfig(
        endpoint=pick(getattr(args, f"{side}_endpoint"), "ENDPOINT"),
        region=pick(getattr(args, f"{side}_region"), "REGION"),
        profile=pick(getattr(args, f"{side}_profile"), "PROFILE"),
        access_key=access,
        secret_key=secret,
        session_token=environ.get(prefix + "AWS_SESSION_TOKEN") or None,
        path_style=path_style,
    )


@dataclass(frozen=True)
class Sides:
    """Both locations and how to reach them, validated: what both tools start from."""

    source: Location
    dest: Location
    configs: Mapping[str, SideConfig]
    jobs: int


def parse_sides(args: argparse.Namespace, environ: Mapping[str, str] | None = None) -> Sides:
    """Check the flags both tools share; raise UsageError naming the first bad one."""
    env = os.environ if environ is None else environ
    if args.jobs < 1:
        raise UsageError("--jobs must be at least 1")
    return Sides(
        source=parse_location(args.source),
        dest=parse_location(args.dest),
        configs={side: side_config(args, side, env) for side in SIDES},
        jobs=args.jobs,
    )
