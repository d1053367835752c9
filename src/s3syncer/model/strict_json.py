"""JSON read strictly: UTF-8, finite numbers, no NaN or Infinity, nesting bounded.

Webhook bodies and the state files are read with it, so what we write back is JSON again.
"""

from __future__ import annotations

import json
import math
from typing import Any

from .event import EnvelopeError


def load_json(body: bytes) -> object:
    """Decode a webhook body as strict JSON (UTF-8, finite numbers), or raise EnvelopeError."""
    try:
        # Decode ourselves: json.loads(bytes) would also guess UTF-16 and UTF-32,
        # and registries send UTF-8 (RFC 8259). A leading BOM is tolerated.
        text = body.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise EnvelopeError("body is not UTF-8 text") from None
    try:
        data = strict_json(text)
    except ValueError as exc:
        raise EnvelopeError(f"body is not JSON: {exc}") from None
    return data


def strict_json(text: str) -> Any:
    """Parse ``text`` as RFC 8259 JSON, or raise ValueError with a one-line reason.

    Stricter than ``json.loads``: no NaN or Infinity, no number too large for a float,
    and nesting too deep for the parser is a ValueError too, not a RecursionError.
    Whatever it returns, ``json.dump`` writes back as JSON that strict parsers accept.
    """
    try:
        return json.loads(text, parse_float=_finite_float, parse_constant=_no_constant)
    except RecursionError:
        raise ValueError("nested too deeply") from None
    except ValueError as exc:
        # JSONDecodeError, or e.g. an integer longer than Python's digit limit.
        reason = exc.msg if isinstance(exc, json.JSONDecodeError) else str(exc).splitlines()[0]
        raise ValueError(reason) from None


def _finite_float(text: str) -> float:
    # 1e400 is valid JSON but becomes float("inf"), which json.dump writes as Infinity:
    # the events file would no longer be JSON, for the command or for any later run the
    # event is carried into. Refuse it here, where the sender hears why.
    value = float(text)
    if not math.isfinite(value):
        raise ValueError("a number is out of range")
    return value


def _no_constant(name: str) -> float:
    # Python's json reads NaN, Infinity and -Infinity, which are not JSON (RFC 8259) and
    # would be written back into the events file as such.
    raise ValueError(f"{name} is not a JSON value")
