"""Load and validate the YAML configuration file into the model of config.py.

Validation happens once, here, at the edge: every problem in a file is
collected with its key path and reported together, so an operator fixes a
config in one pass. What comes out is a tree of frozen dataclasses that the
rest of the daemon trusts without checking again.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

import yaml

from ..model.config import (
    BOM,
    DEFAULT_REQUEST_TIMEOUT,
    DEFAULT_SHUTDOWN_GRACE,
    AuthConfig,
    Config,
    ConfigError,
    ListenError,
    clean_token,
    parse_listen,
)
from .checker import Checker
from .commands import read_commands
from .duplicates import duplicate_keys

_TOP_KEYS = frozenset({"listen", "auth", "stateDir", "shutdownGrace", "requestTimeout", "commands"})
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
        loader = yaml.SafeLoader(text)
        try:
            root = loader.get_single_node()
            duplicates = duplicate_keys(root)
            data = None if root is None else loader.construct_document(root)
        finally:
            loader.dispose()
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}: " if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError(source, [f"{where}not valid YAML: {problem}"]) from None
    except RecursionError:
        # PyYAML recurses once a level: a file nested thousands deep must be refused, not
        # end `check`, the start, or (worse) a running daemon's reload with a traceback
        raise ConfigError(source, ["not valid YAML: nested too deeply"]) from None
    checker = Checker()
    # reported with the rest: the file is read as YAML reads it, the last of each key kept
    checker.errors.extend(duplicates)
    config = _read_config(checker, data, source, os.environ if env is None else env)
    if checker.errors or config is None:
        raise ConfigError(source, checker.errors or ["empty configuration"])
    return config


def _read_config(
    checker: Checker, data: object, source: str, env: Mapping[str, str]
) -> Config | None:
    top = checker.mapping("", data if data is not None else {}, _TOP_KEYS)
    if top is None:
        return None
    listen = checker.optional(top, "listen", "", lambda p, v: _read_listen(checker, p, v))
    state_dir = checker.optional(
        top, "stateDir", "", lambda p, v: checker.typed(p, v, str, "a string")
    )
    grace = checker.optional(top, "shutdownGrace", "", checker.duration)
    request_timeout = checker.optional(top, "requestTimeout", "", checker.duration)
    if request_timeout == 0:
        checker.error("requestTimeout", "must be more than 0s")
    # A bare `auth:` (its settings commented out) must not silently turn auth off:
    # read it as an empty mapping, which asks for a token.
    auth_value = {} if "auth" in top and top["auth"] is None else top.get("auth")
    auth = _read_auth(checker, auth_value, env)
    commands = read_commands(checker, top.get("commands"), env)
    return Config(
        commands=commands,
        listen=listen,
        auth=auth,
        state_dir=state_dir,
        shutdown_grace=DEFAULT_SHUTDOWN_GRACE if grace is None else grace,
        request_timeout=request_timeout or DEFAULT_REQUEST_TIMEOUT,
        source=source,
        warnings=tuple(checker.warnings),
    )


def _read_listen(checker: Checker, path: str, value: object) -> str | None:
    listen = checker.typed(path, value, str, "a string")
    if listen is None:
        return None
    try:
        parse_listen(listen)
    except ListenError as exc:
        checker.error(path, str(exc))
        return None
    return listen


def _read_auth(checker: Checker, value: object, env: Mapping[str, str]) -> AuthConfig | None:
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


def _read_token_file(checker: Checker, path: str) -> str | None:
    try:
        raw = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        checker.error("auth.tokenFile", f"cannot read {path}: {reason}")
        return None
    token = clean_token(raw)
    if not token:
        checker.error("auth.tokenFile", f"{path} is empty")
        return None
    if raw.startswith(BOM):
        # Editors on Windows add one; a registry never sends it, so the token would never match.
        checker.warning("auth.tokenFile", f"{path} starts with a UTF-8 byte order mark; ignored")
    if raw.lstrip(BOM) not in (token, token + "\n", token + "\r\n"):
        checker.warning("auth.tokenFile", f"{path} has whitespace around the token; ignored")
    return token
