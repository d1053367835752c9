"""The run's result for the daemon: a small JSON file at ``$S3SYNCER_RESULT_FILE``, if set.

The daemon reads it after the run to show what a pass found (``/metrics``, ``/status``, the
page): tags checked, repaired, deleted and kept. A full pass that repaired anything means a
notification was lost. Written whole or not at all (a temporary file, then a rename), so a
reader never sees half a document; a failure to write it is said and changes no exit code.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

ENV = "S3SYNCER_RESULT_FILE"


def write_result(environ: Mapping[str, str], document: Mapping[str, Any], prog: str) -> None:
    """Write ``document`` to ``$S3SYNCER_RESULT_FILE`` when it is set."""
    path = environ.get(ENV)
    if not path:
        return
    target = Path(path)
    temporary = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    try:
        temporary.write_text(json.dumps(dict(document), indent=1) + "\n", encoding="utf-8")
        os.replace(temporary, target)
    except OSError as exc:
        print(f"{prog}: cannot write the result file {path}: {exc}", file=sys.stderr)
        temporary.unlink(missing_ok=True)
