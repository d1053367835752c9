"""``s3syncer run NAME``: ask a running daemon for a manual run of a command."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from .exit_codes import EXIT_FAILURE, EXIT_OK, EXIT_USAGE

if TYPE_CHECKING:
    pass


def request_run(name: str, url: str | None, token_file: str | None) -> int:
    """``s3syncer run NAME``: POST /run/NAME to a running daemon."""
    import urllib.error  # noqa: PLC0415
    import urllib.parse  # noqa: PLC0415
    import urllib.request  # noqa: PLC0415

    from ..model.config import DEFAULT_LISTEN, clean_token  # noqa: PLC0415

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
