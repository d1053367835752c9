"""``s3syncer run NAME``: ask a running daemon for a manual run of a command.

The daemon's address and token come from the same places ``serve`` reads them: the
flags, then the environment, then the config file. The token goes to that address and
nowhere else: a redirect is never followed (a daemon never sends one; whoever does is
not the daemon), and only the daemon's own answer, 202, counts as success.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

from .check import config_path
from .exit_codes import EXIT_FAILURE, EXIT_OK, EXIT_USAGE

if TYPE_CHECKING:
    import urllib.request

    from ..model.config import Config

ACCEPTED = 202  # what the daemon answers a manual run it took


class Target(NamedTuple):
    """Where to ask, and with which token ("" for none)."""

    base: str
    token: str


class UsageError(Exception):
    """A flag, a file or the config that stops the request before it is sent."""


def request_run(
    name: str, url: str | None, token_file: str | None, config_flag: str | None = None
) -> int:
    """``s3syncer run NAME``: POST /run/NAME to a running daemon; 0 only on its 202."""
    try:
        target = resolve_target(url, token_file, config_flag)
    except UsageError as exc:
        print(f"s3syncer: {exc}", file=sys.stderr)
        return EXIT_USAGE
    return _post(name, target)


def resolve_target(url: str | None, token_file: str | None, config_flag: str | None) -> Target:
    """The daemon's base URL and token: flags, then the environment, then the config file."""
    from ..model.config import clean_token  # noqa: PLC0415

    token = os.environ.get("S3SYNCER_TOKEN", "").strip()
    if token_file:
        try:
            token = clean_token(Path(token_file).read_text(encoding="utf-8"))
        except OSError as exc:
            raise UsageError(f"cannot read {token_file}: {exc.strerror}") from None
    listen = os.environ.get("S3SYNCER_LISTEN")
    config = None
    if not (url or listen) or not token:
        # the config is read only for what is still missing; a token found already stands
        # in for its tokenFile, which a user without root may not be allowed to read
        config = _read_config(config_flag, token)
    if config is not None:
        listen = listen or config.listen
        token = token or (config.auth.token if config.auth else "")
    return Target(url or _url_of(listen), token)


def _read_config(flag: str | None, token: str) -> Config | None:
    from ..config.file import load_config  # noqa: PLC0415
    from ..model.config import ConfigError  # noqa: PLC0415

    path = config_path(flag)
    explicit = flag is not None or "S3SYNCER_CONFIG" in os.environ
    if not explicit and not os.path.exists(path):
        return None  # no config on this machine: the defaults, as before there was one
    env = dict(os.environ)
    if token:
        env["S3SYNCER_TOKEN"] = token
    try:
        return load_config(path, env=env)
    except ConfigError as exc:
        raise UsageError("\n".join(f"{exc.source}: {e}" for e in exc.errors)) from None


def _url_of(listen: str | None) -> str:
    """The URL a client on this machine reaches a daemon listening on ``listen`` at."""
    from ..model.config import DEFAULT_LISTEN, ListenError, parse_listen  # noqa: PLC0415

    try:
        host, port = parse_listen(listen or DEFAULT_LISTEN)
    except ListenError as exc:
        raise UsageError(str(exc)) from None
    loopback = {"0.0.0.0": "127.0.0.1", "": "127.0.0.1", "::": "::1"}  # every interface
    host = loopback.get(host, host)
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def _post(name: str, target: Target) -> int:
    import urllib.error  # noqa: PLC0415
    import urllib.parse  # noqa: PLC0415
    import urllib.request  # noqa: PLC0415

    where = f"{target.base.rstrip('/')}/run/{urllib.parse.quote(name, safe='')}"
    request = urllib.request.Request(where, method="POST", data=b"")
    if target.token:
        request.add_header("Authorization", f"Bearer {target.token}")
    try:
        with _opener().open(request, timeout=10) as response:
            status = response.status
    except urllib.error.HTTPError as exc:
        print(f"s3syncer: {where}: {_describe_refusal(exc)}", file=sys.stderr)
        return EXIT_FAILURE
    except (urllib.error.URLError, OSError) as exc:
        print(f"s3syncer: {where}: {getattr(exc, 'reason', exc)}", file=sys.stderr)
        return EXIT_FAILURE
    if status != ACCEPTED:
        print(
            f"s3syncer: {where}: answered {status}, not 202: is this an s3syncer daemon?",
            file=sys.stderr,
        )
        return EXIT_FAILURE
    print(f"{name}: run requested ({status})")
    return EXIT_OK


def _opener() -> urllib.request.OpenerDirector:
    import urllib.request  # noqa: PLC0415

    class NoRedirects(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *_args: object, **_kwargs: object) -> None:
            return None  # urllib then raises the 3xx as an HTTPError

    return urllib.request.build_opener(NoRedirects)


def _describe_refusal(exc: urllib.error.HTTPError) -> str:
    if 300 <= exc.code < 400:
        location = exc.headers.get("Location", "?")
        return f"{exc.code} redirects to {location}: not followed (the token goes only to --url)"
    detail = exc.read().decode("utf-8", "replace").strip()
    return f"{exc.code} {detail}"
