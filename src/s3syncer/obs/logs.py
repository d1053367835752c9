"""Log output: one line a record, as text for people or as JSON for log pipelines."""

from __future__ import annotations

import json
import logging
import sys
import time
from typing import Any, TextIO

LOG_FORMATS = ("text", "json")
# Fields that s3syncer's records carry as ``extra``; JSON lines include those present.
EVENT_FIELDS = (
    "command",
    "run_id",
    "reason",
    "exit_code",
    "signal",
    "duration",
    "triggers",
    "events",
    "stream",
    "timed_out",
    "pending",
)


def _timestamp(record: logging.LogRecord) -> str:
    seconds = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
    return f"{seconds}.{int(record.msecs):03d}Z"


class TextFormatter(logging.Formatter):
    """``2026-11-29T08:41:54.123Z INFO push: run 3 started (reason event)``."""

    def format(self, record: logging.LogRecord) -> str:
        line = f"{_timestamp(record)} {record.levelname:<7} {record.getMessage()}"
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line


class JSONFormatter(logging.Formatter):
    """One JSON object a line: time, level, message, and the record's event fields."""

    def format(self, record: logging.LogRecord) -> str:
        document: dict[str, Any] = {
            "time": _timestamp(record),
            "level": record.levelname.lower(),
            "message": record.getMessage(),
            "logger": record.name,
        }
        for name in EVENT_FIELDS:
            # A field the record carries is kept even when None: a finish line always has
            # ``exit_code`` (null after a signal, a timeout or no start), so a pipeline can
            # tell "no exit code" from "not a finish line".
            if name in record.__dict__:
                document[name] = record.__dict__[name]
        if record.exc_info:
            document["exception"] = self.formatException(record.exc_info)
        return json.dumps(document, ensure_ascii=False, default=str)


def configure_logging(fmt: str = "text", level: str = "info", stream: TextIO | None = None) -> None:
    """Send every record at ``level`` and above to ``stream`` (stderr) in ``fmt``."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JSONFormatter() if fmt == "json" else TextFormatter())
    root = logging.getLogger()
    root.handlers = [handler]
    root.setLevel(level.upper())
    # Hypercorn repeats what we log ourselves ("Running on ..."); keep its warnings only.
    logging.getLogger("hypercorn.error").setLevel(max(root.level, logging.WARNING))
    logging.getLogger("hypercorn.access").disabled = True
