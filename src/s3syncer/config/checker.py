"""Reading an untyped YAML tree while collecting every error with its key path.

The config file's reader (config/file.py) checks each value through a ``Checker``
instead of raising at the first problem, so every error in a file is reported at once.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from ..model.config import parse_duration

T = TypeVar("T")


class Checker:
    """Collects errors with their key paths while reading an untyped YAML tree."""

    def __init__(self) -> None:
        self.errors: list[str] = []
        self.warnings: list[str] = []

    def error(self, path: str, message: str) -> None:
        """Record a problem at ``path``; the file is refused."""
        # The document itself has the empty path; name it so no line starts with ": ".
        self.errors.append(f"{path or 'top level'}: {message}")

    def warning(self, path: str, message: str) -> None:
        """Record what is accepted at ``path`` but looks like a mistake."""
        self.warnings.append(f"{path}: {message}")

    def mapping(self, path: str, value: object, known: frozenset[str]) -> dict[str, Any] | None:
        """``value`` as a mapping of its string keys; each key not in ``known`` is an error."""
        if not isinstance(value, dict):
            self.error(path, f"must be a mapping, not {describe(value)}")
            return None
        for key in value:
            if not isinstance(key, str):
                self.error(path, f"key {key!r} is not a string")
            elif key not in known:
                self.error(_join(path, key), f"unknown key (known: {', '.join(sorted(known))})")
        return {k: v for k, v in value.items() if isinstance(k, str)}

    def typed(self, path: str, value: object, kind: type[T], what: str) -> T | None:
        """``value`` when it is a ``kind`` (a boolean only when asked for), else None."""
        if kind is not bool and isinstance(value, bool):
            self.error(path, f"must be {what}, not a boolean")
            return None
        if not isinstance(value, kind):
            self.error(path, f"must be {what}, not {describe(value)}")
            return None
        return value

    def duration(self, path: str, value: object) -> float | None:
        """``value`` as seconds (see ``parse_duration``), else None."""
        try:
            return parse_duration(value)
        except ValueError:
            self.error(path, f"{show(value)} is not a duration (use e.g. 300ms, 3s, 1m30s, 2h)")
            return None

    def optional(
        self, data: dict[str, Any], key: str, path: str, read: Callable[[str, object], T | None]
    ) -> T | None:
        """``data[key]`` through ``read`` at its own path; None when absent or empty."""
        if key not in data or data[key] is None:
            return None
        return read(_join(path, key), data[key])


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def describe(value: object) -> str:
    """What kind of YAML value ``value`` is, as an error message names it."""
    if value is None:
        return "empty"
    names = {dict: "a mapping", list: "a list", str: "a string", bool: "a boolean"}
    for kind, name in names.items():
        if isinstance(value, kind):
            return name
    if isinstance(value, int | float):
        return "a number"
    return type(value).__name__


def show(value: object) -> str:
    """``value`` quoted for an error message."""
    # Echo values as they were written in YAML (`true`, not Python's `True`).
    if isinstance(value, bool):
        return "true" if value else "false"
    return f'"{value}"' if isinstance(value, str) else repr(value)
